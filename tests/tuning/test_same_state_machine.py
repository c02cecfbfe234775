"""One implementation: the backtest's replay and the service's tick step rules through the same
rules.classify + rules.step, so identical results per step give identical transitions."""

from __future__ import annotations

from pathlib import Path

from watcher.actions.backtest import Deploy, live_window, replay_rule, trailing_reads, watch_windows
from watcher.base.errors import SourceError
from watcher.config.load import load_config
from watcher.core.rules import ProbeResult, Sample
from watcher.service.tick import Watcher
from watcher.store.state import StateStore

REPO = Path(__file__).resolve().parents[2]
T0 = 1_700_000_000.0
STEP = 15.0

# Per step, what each rule's signal returned: a breach with a held error in the middle, a
# baseline rule, and a probe that fails three times in a row.
TABLE = {
    "http-5xx-ratio": [[Sample({}, 0.01)]] * 2 + [[Sample({"code": "500"}, 0.4)]] * 5
    + [SourceError("timeout")] * 2 + [[Sample({}, 0.4)]] * 6 + [[Sample({}, 0.02)]] * 3,
    "p95-latency-regression": [[Sample({}, 0.1)]] * 4 + [[Sample({}, 0.9)]] * 14,
    "oom-kills": [[]] * 10 + [[Sample({}, 1.0)]] + [[]] * 7,
    "target-down": [[Sample({}, 1.0)]] * 12 + [[Sample({}, 0.0)]] * 6,
    "cpu-saturation": [[Sample({}, 0.5)]] * 18,
    "health-endpoint": [ProbeResult(True, "200")] * 6 + [ProbeResult(False, "status 503", 503)] * 4
    + [ProbeResult(True, "200")] * 8,
}
BASELINES = {"p95-latency-regression": 0.12}
# The trailing window's reads (evaluate.py reads it beside a `[$window]` rule; the backtest
# replays it through backtest.trailing_reads): the 5xx ratio's short window is clean for the two
# steps at which its `for` (2m) runs out, which must hold its firing back to the step after, in
# both, never reset it.
TRAILING = {name: list(values) for name, values in TABLE.items()}
TRAILING["http-5xx-ratio"][10:12] = [[Sample({}, 0.01)]] * 2


class TableReader:
    def __init__(self, table, trailing):
        self.i, self.table, self.trailing = 0, table, trailing

    def read_all(self, rules, now, window_s, at=None, since=None):
        out = {r.name: ((self.trailing if r.name.endswith("[trailing]") else self.table)
                        [r.name.removesuffix("[trailing]")][self.i], 0.0)
               for r in rules}
        self.i += 1
        return out

    def keep_host_counters(self, history):
        pass

    def close(self):
        pass


def _service_transitions(cfg, tmp_path: Path, table=TABLE, trailing=TRAILING) -> list[tuple]:
    clock = {"now": T0}
    store = StateStore(tmp_path / "state", clock=lambda: clock["now"])
    store.ensure_dir()
    w = Watcher(cfg, None, TableReader(table, trailing), None, store, clock=lambda: clock["now"])
    w.state.current, w.state.deployed_at, w.state.window_ends = "r2", T0, T0 + cfg.watch_window
    w.state.baselines = dict(BASELINES)
    for i in range(18):
        clock["now"] = T0 + i * STEP
        w.tick()
    return [(e["rule"], e["transition"], e["before"], e["after"], e["time"], e["reason"])
            for e in store.events() if e["kind"] == "rule"]


def _backtest_transitions(cfg, table=TABLE, trailing_table=TRAILING, window_at=None) -> list[tuple]:
    times = [T0 + i * STEP for i in range(18)]
    windows = watch_windows([Deploy(T0, "r2")], cfg.watch_window)
    out = []
    for rule in cfg.rules:
        trailing = trailing_reads(rule, cfg, windows, lambda t, r=rule: trailing_table[r.name][int((t - T0) / STEP)])
        replay = replay_rule(rule, times, lambda t, r=rule: table[r.name][int((t - T0) / STEP)], windows,
                             lambda d, r=rule: BASELINES.get(r.name), cfg.error_limit, trailing,
                             window_at and (lambda t: window_at(t, windows)))
        out += [(t.rule, t.kind, t.before.value, t.after.value, round(t.at, 3), t.reason) for t in replay.transitions]
    return out


def test_same_results_per_step_give_the_same_transitions_in_service_tick_and_backtest(tmp_path):
    (tmp_path / "watcher.yaml").write_text(
        f"service: shop\nprometheus: {{url: 'http://127.0.0.1:9'}}\nrules: ['{REPO / 'rules' / 'default.yaml'}']\n"
        f"state_dir: {tmp_path / 'state'}\n"
    )
    cfg = load_config(tmp_path / "watcher.yaml")
    service = sorted(_service_transitions(cfg, tmp_path), key=lambda x: (x[4], x[0]))
    replay = sorted(_backtest_transitions(cfg), key=lambda x: (x[4], x[0]))
    assert {x[0] for x in service} >= {"http-5xx-ratio", "p95-latency-regression", "oom-kills", "health-endpoint"}
    assert any(x[3] == "firing" for x in service)
    # The trailing window's hold shows in both: `for` ran out at step 10, the 5xx rule fires at 12.
    fired = [x[4] for x in service if x[0] == "http-5xx-ratio" and x[3] == "firing"]
    assert fired == [T0 + 12 * STEP], service
    assert service == replay


def test_a_gate_held_longer_than_the_window_fires_alike_in_service_tick_and_backtest(tmp_path):
    """The 5xx ratio breaches from step 2 while its trailing window reads clean on every step (a
    flap in step with the ticks, sim seed 20002129): the gate holds it from step 4 (the first
    `[$window]`, 60 s, longer than the trailing 45 s) and fires once it has held for longer than
    60 s and `for` (2m) has run, at step 10, in both."""
    (tmp_path / "watcher.yaml").write_text(
        f"service: shop\nprometheus: {{url: 'http://127.0.0.1:9'}}\nrules: ['{REPO / 'rules' / 'default.yaml'}']\n"
        f"state_dir: {tmp_path / 'state'}\n"
    )
    cfg = load_config(tmp_path / "watcher.yaml")
    table = {name: list(values) for name, values in TABLE.items()}
    table["http-5xx-ratio"] = [[Sample({}, 0.01)]] * 2 + [[Sample({}, 0.4)]] * 16
    trailing = {name: list(values) for name, values in table.items()}
    trailing["http-5xx-ratio"] = [[Sample({}, 0.01)]] * 18
    service = sorted(_service_transitions(cfg, tmp_path, table, trailing), key=lambda x: (x[4], x[0]))
    replay = sorted(_backtest_transitions(cfg, table, trailing,
                                          lambda t, w: live_window(t, w, cfg.min_window, cfg.max_window)),
                    key=lambda x: (x[4], x[0]))
    fired = [x[4] for x in service if x[0] == "http-5xx-ratio" and x[3] == "firing"]
    assert fired == [T0 + 10 * STEP], service
    assert [x for x in service if x[0] == "http-5xx-ratio"] == [x for x in replay if x[0] == "http-5xx-ratio"]
