"""The pure parts of issue 13's decision fixes: steady time, the trailing window, counters from
the deploy, `no_data: vanished`, the skew guard and the learned scrape interval. The end-to-end
proof is tests/decisions; these pin the rules one by one."""

from __future__ import annotations

from collections import deque
from types import SimpleNamespace

import pytest

from watcher.base.clock import Timebase, shift_state_times
from watcher.base.errors import SourceError
from watcher.core.evaluate import both_windows, evaluate, watch_window
from watcher.core.model import ReleaseRecord
from watcher.core.rules import (
    HostCheck,
    Observation,
    Outcome,
    Phase,
    PromQuery,
    Rule,
    RuleState,
    Sample,
    classify,
    trailing_seconds,
)
from watcher.signals.host import HostSignals
from watcher.signals.promtime import ClockGuard, learn_scrape_interval, skew_limit
from watcher.store.state import State


class Clocks:
    def __init__(self):
        self.wall_t = 1_800_000_000.0
        self.mono_t = 500.0

    def wall(self):
        return self.wall_t

    def mono(self):
        return self.mono_t

    def tick(self, seconds):
        self.wall_t += seconds
        self.mono_t += seconds


def test_steady_time_ignores_wall_clock_steps_and_reports_each_step_once():
    c = Clocks()
    tb = Timebase(c.wall, c.mono)
    start = tb.now()
    c.tick(10)
    assert tb.step(1.0) is None
    c.wall_t += 300  # NTP steps the clock 5 minutes forward
    c.tick(1)
    assert tb.now() - start == pytest.approx(11)
    step = tb.step(1.0)
    assert step is not None and step.seconds == pytest.approx(300)
    c.tick(1)
    assert tb.step(1.0) is None, "a step is said once"
    assert tb.to_wall(tb.now()) == pytest.approx(c.wall())
    c.wall_t -= 3600
    assert tb.step(1.0).seconds == pytest.approx(-3600)


def test_saved_times_move_by_the_saved_offset_once():
    s = State(current="r2", deployed_at=100.0, window_ends=400.0, changed_at=100.0, clock_offset=300.0)
    s.releases["r2"] = ReleaseRecord("r2", deployed_at=100.0)
    s.rules["r"] = RuleState(active_since=150.0)
    shift_state_times(s, s.clock_offset)
    assert (s.deployed_at, s.window_ends, s.changed_at) == (400.0, 700.0, 400.0)
    assert s.releases["r2"].deployed_at == 400.0 and s.rules["r"].active_since == 450.0
    assert s.clock_offset == 0.0


def rule(query="sum(rate(x[$window]))", **kw):
    return Rule(name="r", signal=PromQuery(query), action="rollback", above=0.1, **kw)


def test_trailing_window_defaults_to_a_third_of_for_bounded_by_scrapes_and_a_minute():
    assert trailing_seconds(rule(for_=10.0), 1.0, 60) == 4
    assert trailing_seconds(rule(for_=120.0), 15.0, 60) == 45
    assert trailing_seconds(rule(for_=600.0), 1.0, 120) == 60
    assert trailing_seconds(rule(), 1.0, 60) == 3
    assert trailing_seconds(rule(for_=10.0), 1.0, 4) is None, "never as long as [$window] itself"
    assert trailing_seconds(rule(for_=10.0, trailing=0.0), 1.0, 60) is None
    assert trailing_seconds(rule(for_=10.0, trailing=8.0), 1.0, 60) == 8
    assert trailing_seconds(rule(query="sum(rate(x[1m]))", for_=10.0), 1.0, 60) is None


def test_a_healthy_trailing_window_holds_the_firing_back_and_a_silent_one_holds_nothing():
    breach = Observation(Outcome.BREACH, value=0.3)
    ok = Observation(Outcome.OK, value=0.01)
    assert both_windows(breach, breach, 4) is breach
    held = both_windows(breach, ok, 4)
    assert held.outcome is Outcome.BREACH and held.held and "last 4s" in held.detail
    assert both_windows(breach, Observation(Outcome.NO_DATA), 4) is breach
    assert both_windows(ok, breach, 4) is ok
    assert both_windows(breach, Observation.error("timeout"), 4).outcome is Outcome.ERROR


class Breaching:
    """A reader answering every query, `[$window]` and trailing window alike, with 20%."""

    def read_all(self, rules, now, window_s, at=None, since=None):
        return {r.name: ([Sample({}, 0.2)], 0.0) for r in rules}


def fired_after(r: Rule, offset: float, every: float, scrape: float, settle: float = 0.0) -> float | None:
    """Seconds from a change to the tick at which `r`, breaching all along (Breaching), fires:
    ticks every `every` seconds from `offset` after the change (`settle`: evaluate's)."""
    changed = 1_800_000_000.0
    state = SimpleNamespace(changed_at=changed, deployed_at=changed, confirming=None, in_watch_window=lambda t: True)
    limits = SimpleNamespace(min_window=3.0, max_window=120.0)
    states: dict[str, RuleState] = {}
    for i in range(30):
        now = changed + offset + every * i
        ev = evaluate([r], Breaching(), now, watch_window(now, state, limits), states, {}, 4, scrape_interval=scrape,
                      since=changed, interval=every, settle=settle)
        states = ev.states
        if states[r.name].phase is Phase.FIRING:
            return now - changed
    return None


@pytest.mark.parametrize("offset, for_, fires_at", [
    (0.0, 20.0, 20.0),  # ticks on the grid of the tick that saw the deploy
    (0.5, 20.0, 20.5),  # a restart moved the ticks half a second off it (sim seed 1000226)
    (0.004, 20.0, 20.004),  # the daemon's ticks: never a whole number of seconds after it
    (0.5, 0.0, 2.5),  # `for: 0`: held while clamped up to min_window (3 s), not longer
])
def test_a_breach_fires_once_its_range_no_longer_reaches_before_the_deploy(offset, for_, fires_at):
    """`[$window]` is the time since the change rounded up to whole seconds: a breach held while
    the range reaches before the change (held_before_change) is compared with that range rounded
    up too. Compared exactly, a tick a fraction of a second off the change's grid found it
    "still before the change" until max_window (here 120 s) clamped it."""
    # a tick every 2 s, scrapes every second
    assert fired_after(rule(for_=for_), offset, every=2.0, scrape=1.0) == pytest.approx(fires_at)


@pytest.mark.parametrize("query, settle, fires_at", [
    ("up{job='app'}", 15.0, 15.0),  # a deploy seen late: held one scrape (sim seed 15000520)
    ('sum(up{code=~"5[0-9][0-9]"})', 15.0, 15.0),  # a character class is no range
    ("up{job='app'}", 0.0, 0.0),  # a first start or a rollback's switch: not held (settle 0)
    ("max_over_time(x[5m])", 15.0, 0.0),  # a fixed range is not held (its own story, confirm.clear_bound)
])
def test_an_instant_query_is_held_for_a_scrape_after_a_deploy_seen_late(query, settle, fires_at):
    """`up < 1` right after a deploy seen by a tick reads the newest scrape, which may have been
    taken during the deploy's restart, before the tick saw it: a `for: 0` rule rolled a healthy
    release back on it."""
    # a tick every 5 s, scrapes every 15 s
    assert fired_after(rule(query=query), 0.0, every=5.0, scrape=15.0, settle=settle) == pytest.approx(fires_at)


class OneKill:
    """`increase(oom_kills[$window])` of a counter that went 0 -> 1 right after the deploy, scraped
    every second, the last sample before the kill 0.8 s before the deploy: 1 while the range
    still holds that sample, 0 once it starts after it."""

    def __init__(self, changed: float):
        self.before = changed - 0.8

    def read_all(self, rules, now, window_s, at=None, since=None):
        reaches_back = now - window_s <= self.before
        return {r.name: ([Sample({}, 1.0 if reaches_back else 0.0)], 0.0) for r in rules}


@pytest.mark.parametrize("trailing, fires", [(0.0, True), (None, False)])
def test_an_event_counter_without_a_trailing_window_fires_on_a_kill_right_after_the_deploy(trailing, fires):
    """An OOM kill a second after a deploy: `increase(...[$window])` sees it only while the range
    reaches back to the sample before the deploy. A `trailing: off` rule (an event counter, as
    rules/default.yaml's oom-kills) is not held for reaching back, so it fires on the first
    tick; held, it read 0 once the range began after the deploy, and the bad release stayed
    (the e2e oom scenario). With a trailing window the kill is not seen by it after a few
    seconds: such a rule must say `trailing: off` (the shipped one does)."""
    changed = 1_800_000_000.0
    state = SimpleNamespace(changed_at=changed, deployed_at=changed, confirming=None, in_watch_window=lambda t: True)
    limits = SimpleNamespace(min_window=3.0, max_window=120.0)
    r = Rule(name="r", signal=PromQuery("increase(oom_kills[$window])"), action="rollback", above=0.0,
             trailing=trailing)
    states: dict[str, RuleState] = {}
    fired = False
    for i in range(1, 30):  # a tick every second
        now = changed + 0.3 + i
        ev = evaluate([r], OneKill(changed), now, watch_window(now, state, limits), states, {}, 4,
                      scrape_interval=1.0, since=changed, interval=1.0)
        states = ev.states
        fired = fired or states["r"].phase is Phase.FIRING
    assert fired is fires


def test_a_host_counter_never_counts_growth_from_before_the_change(tmp_path):
    vmstat = tmp_path / "vmstat"
    r = Rule(name="oom", signal=HostCheck("oom_kills", 300.0, path=str(vmstat)), action="rollback", above=0.0)
    host = HostSignals()
    vmstat.write_text("oom_kill 7\n")
    host.read(r, 100.0)
    vmstat.write_text("oom_kill 8\n")  # a kill of the previous release
    host.read(r, 101.0)
    host.read(r, 102.0)
    [grown] = host.read(r, 103.0, since=103.0)  # deployed at 103
    assert grown.value == 0
    vmstat.write_text("oom_kill 9\n")
    [grown] = host.read(r, 104.0, since=103.0)
    assert grown.value == 1


def test_no_data_vanished_breaches_only_when_there_was_data_before_the_deploy():
    r = Rule(name="v", signal=PromQuery("count(up)"), action="rollback", below=1.0, no_data="vanished")
    assert classify(r, [], baseline=3.0).outcome is Outcome.BREACH
    assert classify(r, [], baseline=None).outcome is Outcome.NO_DATA
    assert classify(r, [Sample({}, 3.0)], baseline=3.0).outcome is Outcome.OK


class FakePrometheus:
    def __init__(self, server_offset=0.0, targets=None, fail=False):
        self.server_offset = server_offset
        self.targets = targets or []
        self.fail = fail

    def server_time(self):
        if self.fail:
            raise SourceError("down")
        import time

        return time.time() + self.server_offset

    def active_targets(self):
        if self.fail:
            raise SourceError("down")
        return self.targets


def test_a_clock_minutes_off_prometheus_is_blind_and_a_small_skew_is_not():
    assert ClockGuard(FakePrometheus(-600), 1.0).blind_reason() is not None  # we are 10 min ahead
    guard = ClockGuard(FakePrometheus(-600), 1.0)
    assert "10m ahead" in guard.blind_reason()
    assert [n.skewed for n in guard.take_news()] == [True]
    assert ClockGuard(FakePrometheus(-2), 1.0).blind_reason() is None
    assert ClockGuard(FakePrometheus(fail=True), 1.0).blind_reason() is None, "a failed look changes nothing"
    assert skew_limit(15.0) == 45.0 and skew_limit(1.0) == 10.0


def test_the_scrape_interval_learned_is_the_longest_of_the_active_targets():
    targets = [{"scrapeInterval": "1s", "labels": {"job": "app"}}, {"scrapeInterval": "15s", "labels": {"job": "node"}},
               {"scrapeInterval": "bogus", "labels": {"job": "x"}}]
    learned = learn_scrape_interval(FakePrometheus(targets=targets))
    assert learned.seconds == 15.0 and "app 1s" in learned.detail and "node 15s" in learned.detail
    assert learn_scrape_interval(FakePrometheus(fail=True)) is None
    assert learn_scrape_interval(FakePrometheus(targets=[])) is None


def test_counter_helper_is_unchanged_for_a_plain_window():
    from watcher.signals.host import counter_increase

    h = deque([(0.0, 1.0), (10.0, 2.0), (20.0, 0.0), (30.0, 3.0)])  # a reset at 20
    assert counter_increase(h, 30.0, 60.0) == 1.0 + 0.0 + 3.0


class EmptyReader:
    """Every PromQL read answers no data: a release whose metrics vanished."""

    def __init__(self, answer):
        self.answer = answer

    def read_all(self, rules, now, window_s, at=None, since=None):
        return {r.name: (self.answer, 0.0) for r in rules}

    def keep_host_counters(self, history):
        pass

    def close(self):
        pass


@pytest.mark.parametrize("answer, known_good", [([], False), ([Sample({}, 0.0)], True)])
def test_a_release_becomes_known_good_only_with_evidence(tmp_path, answer, known_good):
    from watcher.config.load import load_config
    from watcher.service.tick import Watcher
    from watcher.store.state import StateStore

    (tmp_path / "rules.yaml").write_text(
        "rules:\n  - name: errors\n    query: sum(rate(x[$window]))\n    above: 0.1\n    action: rollback\n")
    (tmp_path / "watcher.yaml").write_text(
        f"service: s\ninterval: 1s\nrules: [rules.yaml]\nwatch_window: 20s\nstate_dir: {tmp_path / 'state'}\n"
        "prometheus: {url: 'http://127.0.0.1:9', scrape_interval: 1s}\ntelemetry: false\n")
    cfg = load_config(tmp_path / "watcher.yaml", environ={})
    clock = {"now": 1_800_000_000.0}
    store = StateStore(cfg.state_dir, clock=lambda: clock["now"])
    w = Watcher(cfg, None, EmptyReader(answer), None, store, clock=lambda: clock["now"])
    w.start()
    w.state.current, w.state.deployed_at, w.state.window_ends = "r2", clock["now"], clock["now"] + 20
    for _ in range(25):
        w.tick()
        clock["now"] += 1
    assert (w.state.releases["r2"].mark == "good") is known_good
    ended = [e for e in store.events() if e["kind"] == "window_ended"]
    assert bool(ended) is not known_good
    if ended:
        assert "0% of its" in ended[0]["reason"], ended


@pytest.mark.parametrize("offset", ["abc", None, float("nan"), float("inf"), True])
def test_a_damaged_saved_offset_moves_nothing(offset):
    s = State(current="r2", deployed_at=100.0, clock_offset=offset)
    shift_state_times(s, s.clock_offset)
    assert s.deployed_at == 100.0 and s.clock_offset == 0.0


class Phased:
    """A reader answering `[$window]` with `long(now)` and the trailing window with `short(now)`:
    what a release flapping in step with the ticks reads, each tick in the same phase."""

    def __init__(self, long, short):
        self.long, self.short = long, short

    def read_all(self, rules, now, window_s, at=None, since=None):
        return {r.name: ([Sample({}, (self.short if r.name.endswith("[trailing]") else self.long)(now))], 0.0)
                for r in rules}


def rule_run(r: Rule, reader, every: float, ticks: int, max_window: float = 60.0,
             offset: float = 5.0) -> list[tuple[float, Phase, bool]]:
    """(seconds from the deploy, phase, held) of `r` on each of `ticks` ticks every `every` s
    from `offset` after the deploy plus one interval (the first with a trailing window)."""
    changed = 1_800_000_000.0
    state = SimpleNamespace(changed_at=changed, deployed_at=changed, confirming=None, in_watch_window=lambda t: True)
    limits = SimpleNamespace(min_window=3.0, max_window=max_window)
    states: dict[str, RuleState] = {}
    out = []
    for i in range(1, ticks + 1):
        now = changed + offset + every * i
        ev = evaluate([r], reader, now, watch_window(now, state, limits), states, {}, 4, scrape_interval=5.0,
                      since=changed, interval=every)
        states = ev.states
        out.append((now - changed, states[r.name].phase, ev.rules[0].observation.held))
    return out


def test_a_breach_the_trailing_window_holds_for_longer_than_the_window_spans_fires():
    """Sim seed 20002129: ticks every 15 s, scrapes every 5 s, a release failing 50% for 5 s in
    every 15: `[$window]` reads 17% on every tick, the trailing window (three scrapes) always the
    same quiet phase. Held "until both breach", it was pending until its window ended and never
    fired. Once held for longer than `[$window]` (60 s here) spans, it fires."""
    run = rule_run(rule(for_=0.0), Phased(lambda now: 0.17, lambda now: 0.013), every=15.0, ticks=10)
    fired = [t for t, phase, _ in run if phase is Phase.FIRING]
    assert fired and fired[0] == 95.0, run  # held from 20 s; at 80 s for 60 s, not longer
    assert all(held for t, _, held in run if t < 95.0)


def test_a_finished_warm_up_burst_is_still_never_fired_by_the_long_gate():
    """The deploy window averages a burst long after it ended; the trailing window reads clean
    from the burst's end, and `[$window]` reads clean before the gate has held for its span."""
    burst_end = 30.0

    def left(seconds):  # 50% errors from the deploy to burst_end, averaged over the last `seconds`
        def share(now):
            since = now - 1_800_000_000.0
            span = min(since, seconds)
            return 0.5 * max(0.0, burst_end - (since - span)) / span
        return share

    run = rule_run(rule(for_=45.0), Phased(left(60.0), left(15.0)), every=15.0, ticks=20)
    assert all(phase is not Phase.FIRING for _, phase, _ in run), run
    assert run[-1][1] is Phase.INACTIVE


def test_the_gate_s_start_survives_a_restart():
    assert "gated_since" in RuleState(gated_since=5.0).to_dict()
    assert RuleState.from_dict(RuleState(gated_since=5.0).to_dict()).gated_since == 5.0
    s = State(rules={"r": RuleState(gated_since=150.0)}, clock_offset=300.0)
    shift_state_times(s, s.clock_offset)
    assert s.rules["r"].gated_since == 450.0
