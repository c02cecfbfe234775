"""The mission end to end: real Prometheus, real demo app, real symlink host, the watcher as a
subprocess, notifications received over ntfy. See conftest.py for how a scenario runs and why
they run concurrently. Each scenario below is a function that drives the host and returns an
Outcome; the test with the same marker asserts on it.

Bounds on times are generous on purpose (2 cores shared with other test runs): the measured
values are printed at the end of the run and kept in pytest's cache under e2e/timings.
"""

from __future__ import annotations

import time

import pytest
from harness import Lab, Outcome, ScriptedHealth, Stage, scenario

pytestmark = pytest.mark.e2e

GOOD = {"error_ratio": 0.0, "latency_s": 0.005}
ROLLBACK_BOUND = 90.0  # seconds from onset to verified rollback; measured ~15 s for `for: 10s`
QUIET_FOR = 25.0  # seconds a "does not roll back" scenario watches after the onset (> for + window)


def prepare(lab: Lab, name: str, releases: dict[str, dict], data_s: int = 5, own_prometheus: bool = False,
            **config) -> Stage:
    """A host with `releases` (r1 current and running, marked known-good), the watcher watching,
    and `data_s` seconds of this app in Prometheus (baselines want ~25)."""
    st = lab.stage(name, own_prometheus=own_prometheus)
    for rid, settings in releases.items():
        st.add_release(rid, **settings)
    st.start_app("r1")
    st.write_config(**config)
    st.start_watcher()
    st.mark_good("r1")
    st.wait_series(data_s)
    return st


def rollback_timings(st: Stage, onset: float, rule: str) -> dict:
    """Split fault onset -> verified rollback into its parts, from the watcher's own journal."""
    verified = st.wait_event("rollback_verified", ROLLBACK_BOUND + 30)
    deploy = st.events("deploy", release=verified["release"])[-1]
    rule_events = [e for e in st.events("rule", rule=rule, transition="phase") if e["time"] >= deploy["time"]]
    first = next(e for e in rule_events if e["after"] in ("pending", "firing"))
    firing = next(e for e in rule_events if e["after"] == "firing")
    intent = st.events("rollback_intent")[0]
    switched = st.events("rollback_switched")[0]
    return {
        "total": verified["time"] - onset,
        "deploy_seen": deploy["time"] - onset,
        "first_breach": first["time"] - onset,  # scrape delay + query window + tick
        # Between the two ticks' moments: each line is written after its tick's reads, a
        # second later on a loaded machine, so their `time`s would not measure `for`.
        "for": firing["at"] - first["at"],
        "tick": intent["time"] - firing["time"],
        "switch": switched["seconds"],
        "verify": verified["seconds"],
    }


def assert_rolled_back(out: Outcome, rule: str, bad: str, good: str = "r1") -> None:
    st = out.stage
    assert st.current_id() == good
    assert out.timings["total"] < ROLLBACK_BOUND, out.timings
    [incident] = [i for i in out.incidents() if i["resolution"] == "rolled_back"]
    assert incident["release"] == bad and rule in incident["rules"], incident
    assert st.state()["releases"][bad]["mark"] == "bad"
    # The app really runs the good release again: its settings came back with the switch.
    assert st.serving.get("release") == good, st.serving
    st.wait_title(f"rolled back {bad} → {good}")
    titles = out.titles()
    assert any(f"rolling back {bad} → {good}" in t for t in titles), titles
    assert any(f"deployed {bad}" in t for t in titles), titles


def assert_not_rolled_back(out: Outcome, release: str = "r2") -> None:
    st = out.stage
    assert st.current_id() == release
    assert "rollback_intent" not in out.kinds()
    assert not any("roll" in t for t in out.titles()), out.titles()
    assert not [i for i in out.incidents() if i.get("resolution") == "rolled_back"]


def phases(st: Stage, rule: str) -> list[str]:
    return [e["after"] for e in st.events("rule", rule=rule, transition="phase")]


# ---------------------------------------------------------------------------------------------
# 5xx ratio


@scenario("5xx-30")
def run_5xx_30(lab: Lab) -> Outcome:
    st = prepare(lab, "5xx-30", {"r1": GOOD, "r2": {"error_ratio": 0.30}})
    onset = st.deploy("r2")
    return Outcome(st, onset, rollback_timings(st, onset, "http-5xx-ratio"))


@pytest.mark.scenario("5xx-30")
def test_30_percent_5xx_is_rolled_back_to_the_known_good_release(outcome):
    assert_rolled_back(outcome, "http-5xx-ratio", "r2")
    t = outcome.timings
    assert t["for"] >= 9.9, t  # the `for: 10s` held before it fired
    assert t["first_breach"] < 30, t


@scenario("5xx-5")
def run_5xx_5(lab: Lab) -> Outcome:
    st = prepare(lab, "5xx-5", {"r1": GOOD, "r2": {"error_ratio": 0.05}})
    onset = st.deploy("r2")
    st.watch_quietly(QUIET_FOR, onset)
    return Outcome(st, onset)


@pytest.mark.scenario("5xx-5")
def test_5_percent_5xx_is_not_rolled_back(outcome):
    assert_not_rolled_back(outcome)
    assert "pending" not in phases(outcome.stage, "http-5xx-ratio")


# ---------------------------------------------------------------------------------------------
# p95 latency against the pre-deploy baseline


def run_latency(lab: Lab, name: str, before: float, after: float, quiet: bool) -> Outcome:
    st = prepare(lab, name, {"r1": {"latency_s": before}, "r2": {"latency_s": after}}, data_s=25)
    onset = st.deploy("r2")
    if quiet:
        st.watch_quietly(QUIET_FOR, onset)
        return Outcome(st, onset)
    return Outcome(st, onset, rollback_timings(st, onset, "p95-latency-regression"))


@scenario("p95-8x")
def run_p95_8x(lab: Lab) -> Outcome:
    return run_latency(lab, "p95-8x", 0.05, 0.40, quiet=False)


@scenario("p95-3x")
def run_p95_3x(lab: Lab) -> Outcome:
    return run_latency(lab, "p95-3x", 0.05, 0.15, quiet=True)


@scenario("p95-floor")
def run_p95_floor(lab: Lab) -> Outcome:
    return run_latency(lab, "p95-floor", 0.001, 0.008, quiet=True)


def baseline(out: Outcome) -> float:
    [event] = [e for e in out.stage.events("baseline", rule="p95-latency-regression", release="r2")]
    return event["value"]


@pytest.mark.scenario("p95-8x")
def test_p95_latency_8x_the_baseline_is_rolled_back(outcome):
    assert 0.03 < baseline(outcome) < 0.08
    assert_rolled_back(outcome, "p95-latency-regression", "r2")
    assert outcome.timings["for"] >= 9.9


@pytest.mark.scenario("p95-3x")
def test_p95_latency_3x_the_baseline_is_not_rolled_back(outcome):
    assert 0.03 < baseline(outcome) < 0.08
    assert_not_rolled_back(outcome)
    assert "firing" not in phases(outcome.stage, "p95-latency-regression")


@pytest.mark.scenario("p95-floor")
def test_p95_from_1ms_to_8ms_is_under_the_floor_and_not_rolled_back(outcome):
    assert baseline(outcome) < 0.002
    last = outcome.stage.state()["rules"]["p95-latency-regression"]["last_value"]
    assert last > 5 * baseline(outcome), "the ratio alone would breach: the floor is what holds"
    assert_not_rolled_back(outcome)
    assert "pending" not in phases(outcome.stage, "p95-latency-regression")


# ---------------------------------------------------------------------------------------------
# OOM kills and health probes


@scenario("oom")
def run_oom(lab: Lab) -> Outcome:
    st = prepare(lab, "oom", {"r1": GOOD, "r2": {"oom_kills": 1, "oom_delay_s": 1.0}})
    onset = st.deploy("r2") + 1.0  # the kill happens oom_delay_s after the reload
    return Outcome(st, onset, rollback_timings(st, onset, "oom-kills"))


@pytest.mark.scenario("oom")
def test_an_oom_kill_counter_increase_is_rolled_back(outcome):
    assert_rolled_back(outcome, "oom-kills", "r2")


@scenario("health-3")
def run_health_3(lab: Lab) -> Outcome:
    st = prepare(lab, "health-3", {"r1": GOOD, "r2": {"health_status": 503}})
    onset = st.deploy("r2")
    return Outcome(st, onset, rollback_timings(st, onset, "health-endpoint"))


@pytest.mark.scenario("health-3")
def test_three_failed_health_probes_are_rolled_back(outcome):
    assert_rolled_back(outcome, "health-endpoint", "r2")
    assert outcome.stage.events("rule", rule="health-endpoint", after="firing")


@scenario("health-2-1")
def run_health_2_1(lab: Lab) -> Outcome:
    health = ScriptedHealth([503, 503, 200])
    st = prepare(lab, "health-2-1", {"r1": GOOD, "r2": GOOD}, health_url=health.url)
    st.on_close(health.close)
    onset = st.deploy("r2")
    counted = set()  # the rule's consecutive-failure count, as the watcher saves it each tick
    while time.time() < onset + QUIET_FOR:
        counted.add(st.state()["rules"].get("health-endpoint", {}).get("failures", 0))
        time.sleep(0.2)
    st.watch_quietly(0, time.time())
    return Outcome(st, onset, data={"answered": list(health.answered), "counted": counted})


@pytest.mark.scenario("health-2-1")
def test_two_failed_probes_then_a_success_are_not_rolled_back(outcome):
    assert len(outcome.data["answered"]) >= 15  # five or more fail-fail-ok cycles were probed
    assert_not_rolled_back(outcome)
    assert outcome.data["counted"] == {0, 1, 2}, outcome.data["counted"]  # two in a row, never three
    assert "firing" not in phases(outcome.stage, "health-endpoint")


# ---------------------------------------------------------------------------------------------
# Prometheus down: blind, never a rollback


@scenario("prometheus-down")
def run_prometheus_down(lab: Lab) -> Outcome:
    st = prepare(lab, "prometheus-down", {"r1": GOOD, "r2": GOOD}, own_prometheus=True)
    onset = st.deploy("r2")
    st.wait_event("deploy", 30, release="r2")
    st.prometheus.stop()
    stopped = time.time()
    st.wait_title("blind:", timeout=60)
    st.watch_quietly(4, time.time())  # blind for a while longer: still no second message
    st.prometheus.start()
    st.wait_title("recovered:", timeout=60)
    st.watch_quietly(5, time.time())
    return Outcome(st, onset, data={"stopped": stopped})


@pytest.mark.scenario("prometheus-down")
def test_prometheus_down_is_blind_once_then_recovered_and_never_rolls_back(outcome):
    assert_not_rolled_back(outcome)
    titles = outcome.titles()
    assert sum("blind:" in t for t in titles) == 1, titles
    assert sum("recovered:" in t for t in titles) == 1, titles
    transitions = [e["transition"] for e in outcome.stage.events("rule") if e["time"] >= outcome.data["stopped"]]
    assert "blind" in transitions and "recovered" in transitions


# ---------------------------------------------------------------------------------------------
# Flapping around the threshold


@scenario("flapping")
def run_flapping(lab: Lab) -> Outcome:
    # A 6 s window (max_window) makes the measured ratio follow the flapping: 30% for 3 s,
    # 0% for 5 s puts the windowed ratio above 10% for ~5 s of every 8, never the 10 s of `for`.
    # (With the default 1m max_window, the since-deploy ratio would average the flapping out.)
    st = prepare(lab, "flapping", {"r1": GOOD, "r2": {"error_ratio": 0.30}}, max_window="6s")
    onset = st.deploy("r2")
    deadline = onset + 32
    while time.time() < deadline:
        st.app.control(error_ratio=0.30)
        time.sleep(3)
        st.app.control(error_ratio=0.0)
        time.sleep(5)
    st.watch_quietly(3, time.time())
    return Outcome(st, onset)


@pytest.mark.scenario("flapping")
def test_an_error_ratio_flapping_around_the_threshold_does_not_roll_back(outcome):
    assert_not_rolled_back(outcome)
    seen = phases(outcome.stage, "http-5xx-ratio")
    assert seen.count("pending") >= 2, seen  # it did cross the threshold, more than once
    assert "firing" not in seen, seen


# ---------------------------------------------------------------------------------------------
# Two bad deploys in a row


@scenario("two-bad")
def run_two_bad(lab: Lab) -> Outcome:
    st = prepare(lab, "two-bad", {"r1": GOOD, "r2": {"error_ratio": 0.30}, "r3": {"error_ratio": 0.30}})
    st.deploy("r2")
    st.wait_event("deploy", 30, release="r2")
    onset = st.deploy("r3")
    return Outcome(st, onset, rollback_timings(st, onset, "http-5xx-ratio"))


@pytest.mark.scenario("two-bad")
def test_second_bad_deploy_rolls_back_to_the_last_known_good_not_the_first_bad(outcome):
    assert_rolled_back(outcome, "http-5xx-ratio", "r3", good="r1")
    [intent] = outcome.stage.events("rollback_intent")
    assert (intent["release"], intent["target"]) == ("r3", "r1")
    assert outcome.stage.state()["releases"]["r2"].get("mark") != "good"


# ---------------------------------------------------------------------------------------------
# Shadow mode


@scenario("shadow")
def run_shadow(lab: Lab) -> Outcome:
    st = prepare(lab, "shadow", {"r1": GOOD, "r2": {"error_ratio": 0.30}}, mode="shadow")
    onset = st.deploy("r2")
    st.wait_title("would roll back", timeout=ROLLBACK_BOUND)
    seen = time.time()
    st.watch_quietly(5, seen)
    return Outcome(st, onset, {"total": seen - onset})


@pytest.mark.scenario("shadow")
def test_shadow_mode_says_would_roll_back_and_changes_nothing(outcome):
    st = outcome.stage
    assert st.current_id() == "r2"
    assert st.serving.get("error_ratio") == 0.30, st.serving  # the app was left as it was
    assert "rollback_intent" not in outcome.kinds() and "rollback_switched" not in outcome.kinds()
    titles = outcome.titles()
    assert sum("would roll back r2 → r1" in t for t in titles) == 1, titles
    assert not any("rolled back" in t or "rolling back" in t for t in titles), titles
    [verdict] = [e for e in st.events("verdict") if e["check"] == "shadow"]
    assert verdict["target"] == "r1" and "http-5xx-ratio" in verdict["rules"]
    assert st.state()["releases"]["r2"].get("mark") is None


# ---------------------------------------------------------------------------------------------
# The rollback target is itself unhealthy


@scenario("target-unhealthy")
def run_target_unhealthy(lab: Lab) -> Outcome:
    st = prepare(lab, "target-unhealthy", {"r1": GOOD, "r2": {"error_ratio": 0.30}},
                 verify={"attempts": 4, "every": "500ms", "timeout": "2s"})
    # r1 was good when it ran; what it would run now is not (say, a dependency it loads broke).
    st.add_release("r1", health_status=503)
    onset = st.deploy("r2")
    failed = st.wait_event("verify_failed", ROLLBACK_BOUND + 30)
    st.wait_title("did not verify")
    st.watch_quietly(8, time.time())  # the health rule fires on r1 now: the watcher must not act
    return Outcome(st, onset, {"total": failed["time"] - onset})


@pytest.mark.scenario("target-unhealthy")
def test_unhealthy_rollback_target_fails_verification_is_critical_and_halts(outcome):
    st = outcome.stage
    assert st.current_id() == "r1"
    assert [e["target"] for e in st.events("rollback_intent")] == ["r1"]  # one attempt, no other
    assert st.state()["halted"] and "did not verify" in st.state()["halted"]
    critical = [m for m in st.receiver.messages if "did not verify" in str(m.get("title"))]
    assert critical and critical[0]["x-priority"] in ("5", "max"), critical
    assert not any("rolled back" in t for t in outcome.titles())
    assert st.events("rule", rule="health-endpoint", after="firing"), "r1's health should fire, unheeded"
