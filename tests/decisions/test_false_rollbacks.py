"""Issue 13, "False rollbacks seen" (items 1, 2, 3, 3b) and the stories of real hosts that end in
one: a healthy release must stay, unmarked-bad, with no rollback page. Real Prometheus, real
demo app under a supervisor, real symlink host, the watcher as a subprocess (lab.py).

The one fake: the host OOM counter of `host: oom_kills` reads a file written by the test in
place of /proc/vmstat (the kernel's counter cannot be made to grow on purpose in a sandbox)."""

from __future__ import annotations

import time

import pytest
from lab import (
    GOOD,
    Lab,
    assert_no_rollback,
    decision,
    is_sight,
    messages,
    poll_until,
    prepare,
    priority,
    quiet_titles_after,
)

from support import Outcome
from support.rigs import wait_for

pytestmark = pytest.mark.decisions

QUIET_FOR = 30.0  # seconds a "does not roll back" scenario watches (> for 10s + a window's worth)


def phases(st, rule: str, release: str | None = None) -> list[str]:
    return [e["after"] for e in st.events("rule", rule=rule, transition="phase")
            if release is None or e.get("release") == release]


# ---------------------------------------------------------------------------------------------
# 1. A counter that grew before the deploy


@decision("oom-before-deploy")
def run_oom_before_deploy(lab: Lab) -> Outcome:
    st = prepare(lab, "oom-before-deploy", {"r1": GOOD, "r2": GOOD})
    # One OOM kill on r1 (after the counter's first scrape, so increase() sees it) ...
    st.app.control(oom_kills=1, oom_delay_s=0.5)
    st.prometheus.wait_for_series(f'demo_oom_kills_total{{instance="{st.instance}"}} >= 1', timeout=60)
    time.sleep(5)
    # ... then the deploy of a healthy release: the memory-leak fix ships.
    onset = st.deploy("r2")
    st.watch_quietly(QUIET_FOR, onset)
    return Outcome(st, onset)


@pytest.mark.decision("oom-before-deploy")
def test_an_oom_kill_before_the_deploy_does_not_roll_the_new_release_back(outcome):
    assert_no_rollback(outcome, "r2")
    assert "firing" not in phases(outcome.stage, "oom-kills", "r2")


HOST_OOM_RULE = {"name": "host-oom-kills", "host": "oom_kills", "window": "5m", "action": "rollback"}


@decision("host-oom-before-deploy")
def run_host_oom_before_deploy(lab: Lab) -> Outcome:
    def vmstat_rule(st) -> dict:
        (st.root / "vmstat").write_text("nr_free_pages 1000\noom_kill 7\n")
        return {"rules": [dict(HOST_OOM_RULE, path=str(st.root / "vmstat"))]}

    st = prepare(lab, "host-oom-before-deploy", {"r1": GOOD, "r2": GOOD}, data_s=None, configure=vmstat_rule)
    vmstat = st.root / "vmstat"
    st.watch_quietly(3)
    vmstat.write_text("nr_free_pages 1000\noom_kill 8\n")  # the kernel killed r1's process
    st.watch_quietly(3)
    onset = st.deploy("r2")
    st.watch_quietly(QUIET_FOR / 2, onset)
    return Outcome(st, onset)


@pytest.mark.decision("host-oom-before-deploy")
def test_a_host_oom_kill_before_the_deploy_does_not_roll_the_new_release_back(outcome):
    assert_no_rollback(outcome, "r2")
    assert "firing" not in phases(outcome.stage, "host-oom-kills", "r2")


# ---------------------------------------------------------------------------------------------
# 2. Wall-clock steps (libfaketime under the watcher; Prometheus keeps the true time)

# A probe rule with `for`: the clock bugs are about durations, and a probe is the signal
# whose reading does not depend on the watcher's clock agreeing with Prometheus'.
HEALTH_FOR = [{"name": "health-endpoint", "http": "HEALTH", "expect_status": 200, "timeout": "2s",
               "for": "10s", "action": "rollback"}]


def health_rules(st) -> list[dict]:
    return [dict(r, http=st.health_url()) for r in HEALTH_FOR]


def clock_events(st) -> list[dict]:
    """Journal events about the wall clock, however an implementation names them."""
    return [e for e in st.journal() if "clock" in e["kind"] or "time_step" in e["kind"] or e["kind"] == "step"]


def prepare_clock(lab: Lab, name: str, bad: dict, **config) -> object:
    """The watcher under a FakeClock at offset 0, on health_rules alone (no Prometheus)."""
    return prepare(lab, name, {"r1": GOOD, "r2": bad}, data_s=None, clock_offset=0, drop=("prometheus",),
                   configure=lambda st: {"rules": health_rules(st)}, **config)


@decision("clock-forward-5m-during-pending")
def run_clock_forward_pending(lab: Lab) -> Outcome:
    # r2 warms up: /health answers 503 for a few seconds, then 200. `for: 10s` holds it.
    st = prepare_clock(lab, "clock-forward-5m-during-pending", {"health_status": 503})
    onset = st.deploy("r2")
    st.wait_event("rule", 60, rule="health-endpoint", after="pending", release="r2")
    st.clock.set(300)  # NTP steps the clock 5 minutes forward
    time.sleep(2)
    st.app.control(health_status=200)  # warmed up
    st.watch_quietly(QUIET_FOR, onset)
    return Outcome(st, onset)


@pytest.mark.decision("clock-forward-5m-during-pending")
def test_a_5_minute_clock_step_during_pending_does_not_fire_the_rule(outcome):
    assert_no_rollback(outcome, "r2")
    assert "firing" not in phases(outcome.stage, "health-endpoint", "r2")
    steps = clock_events(outcome.stage)
    assert len(steps) == 1, f"the step is journaled once: {steps}"
    said = [t for t in outcome.titles() if "clock" in t.lower()]
    assert len(said) <= 1, said


@decision("clock-forward-1d-bad-deploy")
def run_clock_forward_day(lab: Lab) -> Outcome:
    st = prepare_clock(lab, "clock-forward-1d-bad-deploy", {"health_status": 503})
    onset = st.deploy("r2")
    st.wait_event("deploy", 60, release="r2")
    st.clock.set(86400)  # a VM resumed from a day's suspend
    poll_until(lambda: st.current_id() == "r1", 120)
    # Verified once the probe rule clears on r1 at a later tick: on a loaded machine that is
    # more than the 3 s watched below (seen once in a full run), and the CI run of 4781f89 did
    # not see it within 60 s (two idle-machine cores: 4 s; six copies at once: 18 s). The wait
    # ends at whatever ends the rollback, so the test says which one it was.
    ends = ("rollback_verified", "verify_failed", "rollback_failed", "rollback_not_cleared", "rollback_unconfirmed")
    wait_for(lambda: [e for e in st.journal() if e["kind"] in ends], 180, every=0.5,
             what="clock-forward-1d-bad-deploy: the rollback of r2 verified, failed or unconfirmed")
    st.watch_quietly(3)
    return Outcome(st, onset)


@pytest.mark.decision("clock-forward-1d-bad-deploy")
def test_a_1_day_clock_step_does_not_put_a_bad_deploy_outside_its_window(outcome):
    st = outcome.stage
    assert st.current_id() == "r1", "the bad release stayed: the clock step ended its watch window"
    assert st.mark_of("r2") == "bad"
    assert st.events("rollback_verified")
    assert not [e for e in st.events("verdict") if e.get("check") == "outside_window"]


@decision("clock-back-1h-during-for")
def run_clock_back_hour(lab: Lab) -> Outcome:
    st = prepare_clock(lab, "clock-back-1h-during-for", {"health_status": 503})
    onset = st.deploy("r2")
    st.wait_event("rule", 60, rule="health-endpoint", after="pending", release="r2")
    st.clock.set(-3600)  # NTP steps the clock an hour back
    poll_until(lambda: st.current_id() == "r1", 90)
    st.watch_quietly(3)
    return Outcome(st, onset)


@pytest.mark.decision("clock-back-1h-during-for")
def test_a_1_hour_clock_step_back_does_not_stall_for(outcome):
    st = outcome.stage
    assert st.current_id() == "r1", "`for: 10s` stalled after the clock stepped back an hour"
    assert st.mark_of("r2") == "bad"
    assert len(clock_events(st)) == 1, clock_events(st)


# ---------------------------------------------------------------------------------------------
# 3. After a rollback, the restored release is not paged for the bad release's errors


@decision("restored-release-not-paged")
def run_restored_not_paged(lab: Lab) -> Outcome:
    st = prepare(lab, "restored-release-not-paged", {"r1": GOOD, "r2": {"error_ratio": 0.30}})
    onset = st.deploy("r2")
    verified = st.wait_event("rollback_verified", 180)
    since = time.time()
    st.watch_quietly(QUIET_FOR, since)
    return Outcome(st, onset, data={"verified": verified, "since": since})


@pytest.mark.decision("restored-release-not-paged")
def test_after_a_rollback_the_known_good_release_is_not_paged_for_the_bad_ones_errors(outcome):
    st = outcome.stage
    assert st.current_id() == "r1" and st.mark_of("r2") == "bad"
    late = quiet_titles_after(outcome, outcome.data["since"])
    assert not late, f"high-priority messages after the verified rollback: {late}"
    assert not [e for e in st.events("verdict") if e.get("release") == "r1"], st.events("verdict")
    after = [e for e in st.events("rule", transition="phase") if e.get("release") == "r1" and e["after"] == "firing"]
    assert not after, after


@decision("manual-rollback-not-paged")
def run_manual_rollback(lab: Lab) -> Outcome:
    # The watcher runs in shadow mode (its first week on this host); it says "would roll back
    # r2 → r1", and a human does it by hand (`cap deploy:rollback`): current goes back to r1,
    # the app reloads. r1 must not be paged for the errors r2 left in the query range.
    st = prepare(lab, "manual-rollback-not-paged", {"r1": GOOD, "r2": {"error_ratio": 0.60}}, mode="shadow")
    onset = st.deploy("r2")
    st.wait_title("would roll back r2", timeout=120)
    time.sleep(max(0.0, onset + 20 - time.time()))  # the human reads it, logs in
    back = st.deploy("r1")
    st.watch_quietly(QUIET_FOR, back)
    return Outcome(st, onset, data={"back": back})


@pytest.mark.decision("manual-rollback-not-paged")
def test_a_manual_rollback_by_a_human_does_not_page_the_restored_release(outcome):
    st = outcome.stage
    assert st.current_id() == "r1"
    assert not st.events("rollback_intent")
    assert st.mark_of("r1") == "good"
    late = [t for t in quiet_titles_after(outcome, outcome.data["back"] + 1, min_priority=3)
            if "r1" in t and "deployed" not in t]
    assert not late, f"messages about r1 after the human's rollback to it: {late}"


# ---------------------------------------------------------------------------------------------
# 3b. A warm-up burst


@decision("warmup-burst-5xx")
def run_warmup_burst(lab: Lab) -> Outcome:
    # Cold caches: 50% errors for the first 6 s after the deploy (the app's own clock), healthy
    # afterwards.
    st = prepare(lab, "warmup-burst-5xx", {"r1": GOOD, "r2": {"warmup_s": 6, "warmup_error_ratio": 0.50}},
                 data_s=10)
    onset = st.deploy("r2")
    st.watch_quietly(40, onset)
    return Outcome(st, onset)


@pytest.mark.decision("warmup-burst-5xx")
def test_a_6_second_warm_up_burst_is_not_rolled_back(outcome):
    assert_no_rollback(outcome, "r2")
    assert "firing" not in phases(outcome.stage, "http-5xx-ratio", "r2")


@decision("warmup-slow-start")
def run_warmup_slow(lab: Lab) -> Outcome:
    # A slow start: p95 400 ms for the first 8 s (pools filling), then its usual 50 ms.
    st = prepare(lab, "warmup-slow-start", {"r1": {"latency_s": 0.05},
                                            "r2": {"latency_s": 0.05, "warmup_s": 8, "warmup_latency_s": 0.40}},
                 data_s=30)
    onset = st.deploy("r2")
    st.watch_quietly(45, onset)
    return Outcome(st, onset)


@pytest.mark.decision("warmup-slow-start")
def test_a_slow_start_that_recovers_is_not_rolled_back(outcome):
    assert_no_rollback(outcome, "r2")
    assert "firing" not in phases(outcome.stage, "p95-latency-regression", "r2")


# ---------------------------------------------------------------------------------------------
# Stories: a counter reset by the restart; traffic that drops to zero


@decision("counter-reset-by-restart")
def run_counter_reset(lab: Lab) -> Outcome:
    # r1's process counted an OOM kill a while ago; the deploy restarts the process, so the
    # counter series starts again at 0 (same labels). Nothing happened to r2. The deploy script
    # holds the deploy lock while it restarts (the port is closed meanwhile), as README asks.
    lock = lab.workdir / "counter-reset-by-restart.lock"
    st = prepare(lab, "counter-reset-by-restart", {"r1": GOOD, "r2": GOOD}, deploy_lock=str(lock))
    st.app.control(oom_kills=2, oom_delay_s=0.5)
    st.prometheus.wait_for_series(f'demo_oom_kills_total{{instance="{st.instance}"}} >= 2', timeout=60)
    time.sleep(5)
    onset = st.deploy("r2", restart=True, lock=lock)
    st.watch_quietly(QUIET_FOR, onset)
    return Outcome(st, onset)


@pytest.mark.decision("counter-reset-by-restart")
def test_a_counter_reset_by_the_deploys_restart_is_not_a_new_oom_kill(outcome):
    assert_no_rollback(outcome, "r2")
    assert "firing" not in phases(outcome.stage, "oom-kills", "r2")


@decision("traffic-drops-to-zero")
def run_zero_traffic(lab: Lab) -> Outcome:
    # A night deploy: traffic stops right after it (0/0 = NaN for the ratio and the p95).
    st = prepare(lab, "traffic-drops-to-zero", {"r1": GOOD, "r2": {"rps": 0}}, data_s=10)
    onset = st.deploy("r2")
    st.watch_quietly(QUIET_FOR, onset)
    return Outcome(st, onset)


@pytest.mark.decision("traffic-drops-to-zero")
def test_traffic_dropping_to_zero_is_neither_an_outage_nor_a_page(outcome):
    assert_no_rollback(outcome, "r2")
    st = outcome.stage
    pages = [str(m.get("title")) for m in messages(st) if priority(m) >= 4 and not is_sight(str(m.get("title")))]
    assert not pages, pages

