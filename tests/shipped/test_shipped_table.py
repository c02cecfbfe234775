"""Issue 21's must-show: the SHIPPED rule table on a real prometheus_client app with lazy labels,
1 request per second (rig.py). Each scenario names the decision it holds, and what the code
before issue 21 did instead:

    healthy-becomes-known-good      a healthy release is known-good at its window's end
                                    (before: "saw data on 0% of its ticks": no 5xx series,
                                    no node_exporter, so no release ever became known-good)
    quiet-deploy-left-alone         a restart, then no request for 2 minutes: not rolled back
                                    (before: metrics-vanished, a fresh process has no request
                                    series, rolled it back after its 1m `for`)
    bad-release-rolled-back         40% 5xx: rolled back, verified on the restored release
    crash-rolled-back               the process exits: rolled back (the health probe sees it)
    crash-without-probe             the same with no health probe in the table: target-down
                                    (`up`) sees it, not a counter's presence
    quiet-after-rollback            a correct rollback, then no request reaches the restored
                                    release: "rolled back, unconfirmed (no traffic)", no halt
                                    (before: a halt, "the release was probably not the cause")
    shared-prometheus               three hosts on one Prometheus, one bad at 1 req/s, two
                                    healthy at 10: the bad host alone is rolled back (before:
                                    every host read the fleet's ~2% and none was)
    init-config-rolls-back          `rollback-watcher init` against the shared Prometheus and the
                                    app writes the config; with only the backend's `restart`
                                    added (which init cannot know), a bad deploy is rolled back
"""

from __future__ import annotations

import time

import httpx
import pytest
import yaml
from rig import RELEASE_BASE, TRAFFIC, AppHost, ShippedLab, no_rollback, prepare, rolled_back, scenario

from support import Outcome, run_cli, wait_for
from watcher.demo.rig import SandboxError

ROLLBACK_WAIT = 240.0  # seconds: the 5xx ratio's shipped `for: 2m`, confirmation, a loaded machine


def until(st: AppHost, predicate, timeout: float) -> bool:
    """Poll until `predicate` holds or `timeout` passes: the scenario goes on either way, and
    its test asserts the end state."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.5)
    return False


def critical_titles(out: Outcome) -> list[str]:
    return [str(m.get("title")) for m in out.stage.receiver.received()
            if str(m.get("priority")) in ("5", "max", "urgent")]


# ---------------------------------------------------------------------------------------------


@scenario("healthy-becomes-known-good")
def run_healthy(lab: ShippedLab) -> Outcome:
    st = prepare(lab, "healthy-becomes-known-good", {"r1": TRAFFIC, "r2": TRAFFIC}, watch_window="60s")
    onset = st.deploy("r2")
    until(st, lambda: st.events("window_passed", release="r2") or st.events("window_ended", release="r2"), 150)
    st.watch_quietly(2)
    return Outcome(st, onset)


@pytest.mark.shipped("healthy-becomes-known-good")
def test_a_healthy_release_becomes_known_good_at_its_windows_end(outcome):
    st = outcome.stage
    assert st.mark_of("r2") == "good", (st.events("window_ended"), st.state()["releases"].get("r2"))
    [passed] = st.events("window_passed", release="r2")
    deployed = st.events("deploy", release="r2")[0]["time"]
    assert 55 <= passed["time"] - deployed <= 90, "known-good at its 60 s window's end, not before"
    assert not no_rollback(outcome, "r2")
    st.wait_title("r2 is known-good")


@scenario("quiet-deploy-left-alone")
def run_quiet_deploy(lab: ShippedLab) -> Outcome:
    st = prepare(lab, "quiet-deploy-left-alone", {"r1": TRAFFIC, "r2": {"rps": 0}})
    onset = st.deploy("r2")  # a new process that nobody asks anything for two minutes
    st.watch_quietly(125, onset)
    return Outcome(st, onset)


@pytest.mark.shipped("quiet-deploy-left-alone")
def test_a_quiet_deploy_is_not_rolled_back(outcome):
    assert not no_rollback(outcome, "r2"), no_rollback(outcome, "r2")
    st = outcome.stage
    firing = [e for e in st.events("rule", transition="phase", release="r2") if e["after"] == "firing"]
    assert not firing, firing
    assert st.serving.get("release") == "r2" or st.serving == {}, st.serving


@scenario("bad-release-rolled-back")
def run_bad(lab: ShippedLab) -> Outcome:
    st = prepare(lab, "bad-release-rolled-back", {"r1": TRAFFIC, "r2": {**TRAFFIC, "error_ratio": 0.4}})
    onset = st.deploy("r2")
    until(st, lambda: st.events("rollback_verified") or st.state().get("halted"), ROLLBACK_WAIT)
    st.watch_quietly(2)
    return Outcome(st, onset)


@pytest.mark.shipped("bad-release-rolled-back")
def test_a_release_failing_40_percent_is_rolled_back_and_verified(outcome):
    st = outcome.stage
    assert not rolled_back(st, "r2", "r1"), rolled_back(st, "r2", "r1")
    [intent] = st.events("rollback_intent")
    assert "http-5xx-ratio" in str(intent), intent
    assert not [e for e in st.events("rule", transition="phase", release="r1") if e["after"] != "inactive"], \
        "a rule went pending on the restored release (the bad release's samples)"
    st.wait_title("rolled back r2 → r1")


@scenario("crash-rolled-back")
def run_crash(lab: ShippedLab) -> Outcome:
    st = prepare(lab, "crash-rolled-back", {"r1": TRAFFIC, "r2": {**TRAFFIC, "crash_after_s": 6}})
    onset = st.deploy("r2")  # serves for 6 s, then the process exits
    until(st, lambda: st.events("rollback_verified") or st.state().get("halted"), 120)
    st.watch_quietly(2)
    return Outcome(st, onset)


@pytest.mark.shipped("crash-rolled-back")
def test_a_crashed_release_is_rolled_back(outcome):
    st = outcome.stage
    assert not rolled_back(st, "r2", "r1"), rolled_back(st, "r2", "r1")
    assert st.mark_of("r2") != "good"


@scenario("crash-without-probe")
def run_crash_no_probe(lab: ShippedLab) -> Outcome:
    st = prepare(lab, "crash-without-probe", {"r1": TRAFFIC, "r2": {**TRAFFIC, "crash_after_s": 6}},
                 drop=("health-endpoint",))
    onset = st.deploy("r2")
    until(st, lambda: st.events("rollback_verified") or st.state().get("halted"), 180)
    st.watch_quietly(2)
    return Outcome(st, onset)


@pytest.mark.shipped("crash-without-probe")
def test_a_crash_is_seen_through_up_without_a_health_probe(outcome):
    st = outcome.stage
    assert not rolled_back(st, "r2", "r1"), rolled_back(st, "r2", "r1")
    [intent] = st.events("rollback_intent")
    assert "target-down" in str(intent), intent


@scenario("quiet-after-rollback")
def run_quiet_after_rollback(lab: ShippedLab) -> Outcome:
    # r1's release file says no traffic; its clients are switched on by hand until the deploy,
    # so that once the rollback reloads r1 nobody asks it anything (a night: the last user went
    # home during the bad release).
    st = prepare(lab, "quiet-after-rollback", {"r1": {"rps": 0}, "r2": {**TRAFFIC, "error_ratio": 0.4}},
                 ready=lambda st: st.control(rps=1))
    onset = st.deploy("r2")
    until(st, lambda: st.events("rollback_unconfirmed") or st.events("rollback_verified") or st.state().get("halted"),
          ROLLBACK_WAIT + 90)
    st.watch_quietly(2)
    return Outcome(st, onset)


@pytest.mark.shipped("quiet-after-rollback")
def test_a_correct_rollback_on_a_host_that_then_gets_no_traffic_is_not_a_halt(outcome):
    st = outcome.stage
    assert st.current_id() == "r1" and st.mark_of("r2") == "bad"
    assert not st.state().get("halted"), st.state().get("halted")
    assert not st.events("rollback_not_cleared")
    ended_as = {kind: st.events(kind) for kind in ("rollback_confirming", "rollback_verified", "rollback_unconfirmed")}
    assert len(ended_as["rollback_unconfirmed"]) == 1, ended_as
    [ended] = ended_as["rollback_unconfirmed"]
    assert ended["reason"] == "no traffic" and ended["rules"] == ["http-5xx-ratio"], ended
    assert [i["resolution"] for i in st.events("incident")] == ["rolled_back_unconfirmed"]
    st.wait_title("rolled back r2 → r1, unconfirmed (no traffic)")
    assert not critical_titles(outcome), critical_titles(outcome)
    # Judged on its own samples: before, the rule went pending at 50% on r1 (the bad release's
    # last errors in a range clamped up to min_window) and "cleared" on them.
    assert not [e for e in st.events("rule", transition="phase", release="r1") if e["after"] != "inactive"]


# ---------------------------------------------------------------------------------------------


BUSY = {"rps": 10}  # the healthy hosts: ten times the bad host's traffic
# The shipped ratio over every host on the Prometheus: what each watcher read before
# `prometheus.labels` scoped its selectors.
FLEET_RATIO = ('(sum(rate(http_requests_total{code=~"5..",instance=~"%s"}[1m])) or vector(0)) / '
               'sum(rate(http_requests_total{instance=~"%s"}[1m]))')


@scenario("shared-prometheus")
def run_shared(lab: ShippedLab) -> Outcome:
    bad = prepare(lab, "shared-bad", {"r1": TRAFFIC, "r2": {**TRAFFIC, "error_ratio": 0.4}})
    busy = [prepare(lab, f"shared-busy-{i}", {"r1": BUSY, "r2": BUSY}) for i in (1, 2)]
    onset = bad.deploy("r2")
    for st in busy:
        st.deploy("r2")
    instances = "|".join(st.instance for st in (bad, *busy))
    fleet_ratio: list[float] = []

    def ended() -> bool:
        if not bad.events("rollback_intent"):
            _sample(lab, FLEET_RATIO % (instances, instances), fleet_ratio)  # while r2 still serves there
        return rolled_back_seen(bad)

    until(bad, ended, ROLLBACK_WAIT)
    for st in busy:
        st.watch_quietly(5)
    bad.watch_quietly(2)
    return Outcome(bad, onset, data={"busy": busy, "fleet_ratio": fleet_ratio})


def rolled_back_seen(st: AppHost) -> bool:
    return bool(st.events("rollback_verified") or st.events("rollback_unconfirmed") or st.state().get("halted"))


def _sample(lab: ShippedLab, query: str, into: list[float]) -> None:
    """Keep the reading of `query` (one sample) in `into`, for the record."""
    try:
        found = lab.prometheus.query(query)
    except (httpx.HTTPError, SandboxError):
        return  # a reading missed; the others are enough
    into.extend(float(sample["value"][1]) for sample in found)


@pytest.mark.shipped("shared-prometheus")
def test_on_a_shared_prometheus_only_the_bad_host_is_rolled_back(outcome):
    assert rolled_back(outcome.stage, "r2", "r1") == []
    for st in outcome.data["busy"]:
        assert no_rollback(Outcome(st, outcome.onset), "r2") == [], st.name
        assert not st.events("verdict"), st.events("verdict")
    # What an unscoped rule read: the fleet's ratio stayed far below the 10% limit while the bad
    # host failed 40% of its requests (0.4 x 1 / 21 req/s).
    readings = [v for v in outcome.data["fleet_ratio"] if v == v]  # NaN before the first requests
    assert readings and max(readings) < 0.1, readings


@scenario("init-config-rolls-back")
def run_init(lab: ShippedLab) -> Outcome:
    st = lab.stage("init-config-rolls-back")
    for rid, settings in {"r1": TRAFFIC, "r2": {**TRAFFIC, "error_ratio": 0.4}}.items():
        st.add_release(rid, **{**RELEASE_BASE, **settings})
    config = st.root / "etc" / "watcher.yaml"
    with st.slots:
        st.start_app("r1")
        wait_for(lambda: lab.prometheus.query(f'http_requests_total{{instance="{st.instance}"}}'), 90, every=0.5,
                 what="the app's first requests in Prometheus")
        done = run_cli("init", "--prometheus", lab.prometheus.url, "--instance", st.instance, "--config", config,
                       "--state-dir", st.state_dir, "--releases", st.releases, "--current", st.current,
                       "--health-url", st.health_url(), "--telemetry", "off", timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        doc = yaml.safe_load(config.read_text())
        # What init cannot know: how this app is restarted; and where this test listens.
        doc["backend"]["restart"] = st.restart_argv()
        doc["notify"] = [{"url": st.receiver.url, "min_severity": "info"}]
        config.write_text(yaml.safe_dump(doc, sort_keys=False))
        st.config_path = config
        st.cli("mark", "good", "r1")
        st.start_watcher()
    onset = st.deploy("r2")
    until(st, lambda: rolled_back_seen(st), ROLLBACK_WAIT + 120)
    st.watch_quietly(2)
    return Outcome(st, onset, data={"init": done.stdout, "config": doc})


@pytest.mark.shipped("init-config-rolls-back")
def test_a_config_written_by_init_rolls_a_bad_deploy_back(outcome):
    doc = outcome.data["config"]
    assert doc["prometheus"]["labels"] == {"instance": outcome.stage.instance}, doc
    assert "pack python-prometheus-client" in outcome.data["init"], outcome.data["init"]
    assert rolled_back(outcome.stage, "r2", "r1") == []
