"""Issue 13, "Missed bad deploys seen" (items 4-12), "Bad input" 14 and 15, "Speed" 18, issue
22's flapping release, and the stories of real hosts that end in one: a bad release must be
rolled back to the right release (or, where the watcher cannot know, a human must be told at
critical priority), and a dead release must never become known-good. Real processes
throughout (lab.py); no fakes."""

from __future__ import annotations

import fcntl
import json
import os
import re
import sys
import time

import pytest
from lab import (
    GOOD,
    HERE,
    Lab,
    assert_no_rollback,
    assert_rolled_back,
    decision,
    messages,
    poll_until,
    prepare,
    priority,
    shipped_rules,
)

from support import Outcome, wait_for

pytestmark = pytest.mark.decisions

BAD = {"error_ratio": 0.30}
ROLLBACK_WAIT = 150.0  # seconds; a rollback takes ~15 s on an idle machine (`for: 10s`)


def wait_current(st, rid: str, timeout: float = ROLLBACK_WAIT) -> bool:
    return poll_until(lambda: st.current_id() == rid and st.events("rollback_verified"), timeout)


def criticals(st, since: float = 0.0) -> list[str]:
    return [str(m.get("title")) for m in messages(st) if priority(m) >= 5 and m["received_at"] >= since]


def without_health_probe(st) -> dict:
    """The shipped table without its health probe: Prometheus rules only, as many hosts have."""
    return {"rules": shipped_rules(st.instance, st.health_url(), drop=("health-endpoint",))}


def command_backend(st) -> dict:
    ctl = [sys.executable, str(HERE / "cmdbackend.py")]
    return {"type": "command", "current": [*ctl, "current", str(st.root)], "releases": [*ctl, "releases", str(st.root)],
            "switch": [*ctl, "switch", str(st.root), "{target}"], "timeout": "30s"}


# ---------------------------------------------------------------------------------------------
# 3. A release that fails on and off (issue 22): `for` runs on the deploy window


@decision("flapping-5xx")
def run_flapping(lab: Lab) -> Outcome:
    # 30% of requests fail for 5 s, none for 5 s, and so on: 15% on average. The 4 s trailing
    # window of `for: 10s` is clean every other period; it may only gate the moment of firing
    # (the warm-up burst of test_false_rollbacks.py is the other side of that decision).
    st = prepare(lab, "flapping-5xx", {"r1": GOOD, "r2": {"error_ratio": 0.30, "flap_s": 5}})
    onset = st.deploy("r2")
    wait_current(st, "r1", timeout=90)
    st.watch_quietly(3)
    return Outcome(st, onset)


@pytest.mark.decision("flapping-5xx")
def test_a_release_failing_30_percent_every_other_5_seconds_is_rolled_back(outcome):
    assert_rolled_back(outcome, "r2", "r1")


# ---------------------------------------------------------------------------------------------
# 4. Release order comes from the deploy timeline, not from names


SHA_OLD, SHA_GOOD, SHA_BAD = "e3b0c44", "9f86d08", "2c26b46"  # deployed in this order


@decision("git-sha-release-names")
def run_sha_names(lab: Lab) -> Outcome:
    st = prepare(lab, "git-sha-release-names", {SHA_OLD: dict(age_s=3600, **GOOD), SHA_GOOD: dict(age_s=1800, **GOOD),
                                                SHA_BAD: dict(age_s=600, **BAD)}, first=SHA_OLD)
    st.deploy(SHA_GOOD)
    st.wait_event("deploy", 60, release=SHA_GOOD)
    st.mark_good(SHA_GOOD)  # the pipeline's smoke test passed
    onset = st.deploy(SHA_BAD)
    wait_current(st, SHA_GOOD)
    st.watch_quietly(3)
    return Outcome(st, onset)


@pytest.mark.decision("git-sha-release-names")
def test_git_sha_names_roll_back_to_the_previous_known_good_by_deploy_order(outcome):
    assert_rolled_back(outcome, SHA_BAD, SHA_GOOD)
    assert [e["target"] for e in outcome.stage.events("rollback_intent")] == [SHA_GOOD]


# ---------------------------------------------------------------------------------------------
# 5. A dead release is not "healthy": no evidence is not good evidence


@decision("crash-metrics-vanish")
def run_crash(lab: Lab) -> Outcome:
    # A table without a health probe (Prometheus rules only, as many hosts have): r2 crashes on
    # start, its scrape target goes down, every series of it vanishes.
    st = prepare(lab, "crash-metrics-vanish", {"r1": GOOD, "r2": {"crash": True}}, data_s=10, watch_window="40s",
                 configure=without_health_probe)
    onset = st.deploy("r2")
    poll_until(lambda: st.events("rollback_verified") or st.mark_of("r2") == "good", 120)
    st.watch_quietly(3)
    return Outcome(st, onset)


@pytest.mark.decision("crash-metrics-vanish")
def test_a_crashed_release_whose_metrics_vanish_is_never_known_good_and_is_rolled_back(outcome):
    st = outcome.stage
    assert st.mark_of("r2") != "good", "the crashed release was marked known-good"
    assert not st.events("window_passed", release="r2")
    assert_rolled_back(outcome, "r2", "r1")


# ---------------------------------------------------------------------------------------------
# 6. Cooldown is per release


@decision("second-bad-release-after-rollback")
def run_second_bad(lab: Lab) -> Outcome:
    st = prepare(lab, "second-bad-release-after-rollback", {"r1": GOOD, "r2": BAD, "r3": BAD})
    st.deploy("r2")
    assert wait_current(st, "r1"), "the first bad release was not rolled back"
    st.watch_quietly(3)
    onset = st.deploy("r3")  # a different bad release, a minute later
    poll_until(lambda: len(st.events("rollback_verified")) >= 2, ROLLBACK_WAIT)
    st.watch_quietly(3)
    return Outcome(st, onset)


@pytest.mark.decision("second-bad-release-after-rollback")
def test_a_different_bad_release_after_a_rollback_is_rolled_back_too(outcome):
    st = outcome.stage
    assert st.current_id() == "r1", "r3 stayed live: the cooldown was host-wide"
    assert st.mark_of("r3") == "bad"
    assert [(e["release"], e["target"]) for e in st.events("rollback_verified")] == [("r2", "r1"), ("r3", "r1")]


# ---------------------------------------------------------------------------------------------
# 7. "Verified" means the rules that fired clear on the restored release


@decision("restart-does-nothing")
def run_restart_noop(lab: Lab) -> Outcome:
    def restart_nothing(st) -> dict:
        backend = {"type": "symlink", "releases": str(st.releases), "current": str(st.current),
                   "restart": ["true"], "restart_timeout": "10s"}  # a restart that restarts nothing
        return {**without_health_probe(st), "backend": backend}

    st = prepare(lab, "restart-does-nothing", {"r1": GOOD, "r2": BAD}, drop=("verify",), configure=restart_nothing)
    onset = st.deploy("r2")
    intent = st.wait_event("rollback_intent", ROLLBACK_WAIT)
    poll_until(lambda: criticals(st) or st.events("rollback_verified"), 120)
    st.watch_quietly(10)
    return Outcome(st, onset, data={"intent": intent, "serving": st.app.control()["release"]})


@pytest.mark.decision("restart-does-nothing")
def test_a_rollback_whose_restart_did_nothing_is_not_verified_and_stops_acting(outcome):
    st = outcome.stage
    assert outcome.data["serving"] == "r2", "the sandbox's premise: the app still runs r2's code"
    assert not st.events("rollback_verified"), "reported verified while the app served the bad code"
    assert not any("rolled back" in t for t in outcome.titles()), outcome.titles()
    assert criticals(st), f"no critical message: {outcome.titles()}"
    assert st.state().get("halted"), "the watcher must stop acting until a human resolves"
    assert len(st.events("rollback_intent")) == 1


# ---------------------------------------------------------------------------------------------
# 8. A held deploy lock does not use up the watch window


@decision("deploy-lock-outlives-window")
def run_lock(lab: Lab) -> Outcome:
    st = prepare(lab, "deploy-lock-outlives-window", {"r1": GOOD, "r2": BAD}, watch_window="20s",
                 configure=lambda st: {"deploy_lock": str(st.root / "deploy.lock")})
    lock = st.root / "deploy.lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # the deploy script: flock deploy.lock cap deploy
        onset = st.deploy("r2")
        st.wait_event("rule", 60, rule="http-5xx-ratio", after="firing", release="r2")
        time.sleep(max(0.0, onset + 35 - time.time()))  # migrations run on, past the 20 s window
    finally:
        os.close(fd)
    released = time.time()
    wait_current(st, "r1", 90)
    st.watch_quietly(3)
    return Outcome(st, onset, data={"released": released})


@pytest.mark.decision("deploy-lock-outlives-window")
def test_a_bad_deploy_under_a_long_deploy_lock_is_rolled_back_once_the_lock_is_free(outcome):
    assert_rolled_back(outcome, "r2", "r1")
    st = outcome.stage
    assert all(e["time"] >= outcome.data["released"] - 1 for e in st.events("rollback_intent"))


# ---------------------------------------------------------------------------------------------
# 9. A deploy that lands during a rollback wins


@decision("deploy-during-rollback")
def run_deploy_during_rollback(lab: Lab) -> Outcome:
    st = prepare(lab, "deploy-during-rollback", {"r1": dict(age_s=300, **GOOD), "r2": dict(age_s=200, **BAD)},
                 configure=lambda st: {"backend": command_backend(st)})
    onset = st.deploy("r2")
    st.wait_event("rule", 60, rule="http-5xx-ratio", after="pending", release="r2")
    (st.root / "slow_releases").write_text("4")  # the artifact store answers slowly
    wait_for(lambda: (st.root / "listing_started").exists(), 90, every=0.2,
             what="the watcher to list releases before acting")
    st.add_release("r3", **GOOD)  # the fix, deployed while the watcher is deciding
    fixed = st.deploy("r3")
    (st.root / "slow_releases").unlink()
    st.watch_quietly(25, fixed)
    return Outcome(st, onset)


@pytest.mark.decision("deploy-during-rollback")
def test_a_deploy_landing_during_a_rollback_is_not_overwritten(outcome):
    st = outcome.stage
    assert st.current_id() == "r3", "the deploy that landed during the rollback was overwritten"
    assert st.mark_of("r3") != "bad"
    assert not st.events("rollback_switched"), st.events("rollback_switched")


# ---------------------------------------------------------------------------------------------
# 10. A broken `current` is said once, critical, and never acted on


@decision("broken-current")
def run_broken_current(lab: Lab) -> Outcome:
    st = prepare(lab, "broken-current", {"r1": GOOD, "r2": GOOD})
    st.deploy("r2")
    st.wait_event("deploy", 60, release="r2")
    broken = time.time()
    tmp = st.root / ".current.tmp"
    os.symlink("releases/r2-deleted", tmp)  # a deploy script that died half-way: dangling
    os.replace(tmp, st.current)
    st.watch_quietly(20, broken)
    return Outcome(st, broken)


@pytest.mark.decision("broken-current")
def test_a_dangling_current_is_said_once_at_critical_priority_and_never_acted_on(outcome):
    st = outcome.stage
    said = criticals(st, outcome.onset)
    assert len(said) == 1, f"expected one critical message about `current`: {outcome.titles()}"
    assert not st.events("rollback_intent")
    assert os.readlink(st.current) == "releases/r2-deleted", "the watcher changed a link it could not read"
    assert st.watcher_exit is None, f"the watcher stopped (exit {st.watcher_exit}) before the scenario ended"


# ---------------------------------------------------------------------------------------------
# 11. An unusable rollback target: the next older known-good


@decision("unusable-target-falls-back")
def run_unusable_target(lab: Lab) -> Outcome:
    st = prepare(lab, "unusable-target-falls-back", {"r1": GOOD, "r2": GOOD, "r3": BAD})
    st.deploy("r2")
    st.wait_event("deploy", 60, release="r2")
    st.mark_good("r2")
    for child in (st.releases / "r2").iterdir():  # a cleanup job emptied r2's directory
        child.unlink()
    onset = st.deploy("r3")
    wait_current(st, "r1")
    st.watch_quietly(3)
    return Outcome(st, onset)


@pytest.mark.decision("unusable-target-falls-back")
def test_an_unusable_known_good_target_is_skipped_for_the_next_older_one(outcome):
    assert_rolled_back(outcome, "r3", "r1")
    assert not outcome.stage.state().get("halted")


# ---------------------------------------------------------------------------------------------
# 12. A watcher 10 minutes ahead of Prometheus is blind, not healthy


@decision("clock-skew-vs-prometheus")
def run_skew(lab: Lab) -> Outcome:
    st = prepare(lab, "clock-skew-vs-prometheus", {"r1": GOOD, "r2": BAD}, clock_offset=600,
                 rules=None, watch_window="40s")
    onset = st.deploy("r2")
    st.watch_quietly(55, onset)
    return Outcome(st, onset)


@pytest.mark.decision("clock-skew-vs-prometheus")
def test_a_watcher_skewed_10_minutes_from_prometheus_says_blind_and_blesses_nothing(outcome):
    st = outcome.stage
    blind = [t for t in outcome.titles() if "blind" in t.lower()]
    assert len(blind) == 1, f"expected one 'blind' message: {outcome.titles()}"
    assert st.mark_of("r2") != "good", "a release nobody could see was marked known-good"


# ---------------------------------------------------------------------------------------------
# 14. A transient error listing releases is a wait, not a critical refusal


@decision("transient-list-error")
def run_transient_list(lab: Lab) -> Outcome:
    st = prepare(lab, "transient-list-error", {"r1": dict(age_s=300, **GOOD), "r2": dict(age_s=200, **BAD)},
                 configure=lambda st: {"backend": command_backend(st)})
    onset = st.deploy("r2")
    st.wait_event("rule", 60, rule="http-5xx-ratio", after="pending", release="r2")
    (st.root / "fail_releases_once").touch()
    wait_current(st, "r1")
    st.watch_quietly(3)
    return Outcome(st, onset)


@pytest.mark.decision("transient-list-error")
def test_one_failed_release_listing_delays_the_rollback_without_a_critical_page(outcome):
    assert not (outcome.stage.root / "fail_releases_once").exists(), "the listing never failed: no test"
    assert_rolled_back(outcome, "r2", "r1")
    assert not criticals(outcome.stage), criticals(outcome.stage)


# ---------------------------------------------------------------------------------------------
# 15. SIGHUP applies every change or refuses the reload


@decision("sighup-removes-backend")
def run_hup_backend(lab: Lab) -> Outcome:
    st = prepare(lab, "sighup-removes-backend", {"r1": GOOD, "r2": BAD})
    cfg = json.loads(st.config_path.read_text())
    del cfg["backend"]  # the operator wants the watcher to watch only, from now on
    st.config_path.write_text(json.dumps(cfg))
    st.hup_watcher()
    wait_for(lambda: st.events("config_reloaded") or st.events("reload_refused"), 60, every=0.2, what="the reload")
    onset = st.deploy("r2")
    st.watch_quietly(35, onset)
    return Outcome(st, onset)


@pytest.mark.decision("sighup-removes-backend")
def test_a_reload_without_a_backend_stops_acting_or_is_refused_with_the_reason(outcome):
    st = outcome.stage
    refused = st.events("reload_refused")
    if refused:
        assert "backend" in json.dumps(refused), refused
    else:
        assert st.events("config_reloaded")
        assert_no_rollback(outcome, "r2")


@decision("sighup-moves-state-dir")
def run_hup_state_dir(lab: Lab) -> Outcome:
    st = prepare(lab, "sighup-moves-state-dir", {"r1": GOOD, "r2": GOOD}, data_s=None, drop=("prometheus",),
                 configure=lambda st: {"rules": [{"name": "health-endpoint", "http": st.health_url(),
                                                  "action": "rollback"}]})
    new_dir = st.root / "state-new"
    cfg = json.loads(st.config_path.read_text())
    cfg["state_dir"] = str(new_dir)
    st.config_path.write_text(json.dumps(cfg))
    st.hup_watcher()
    wait_for(lambda: st.events("config_reloaded") or st.events("reload_refused"), 60, every=0.2, what="the reload")
    onset = st.deploy("r2")
    st.watch_quietly(5, onset)
    return Outcome(st, onset, data={"new": new_dir})


@pytest.mark.decision("sighup-moves-state-dir")
def test_a_reload_that_moves_state_dir_uses_it_or_is_refused_naming_it(outcome):
    st = outcome.stage
    refused = st.events("reload_refused")
    if refused:
        assert "state_dir" in json.dumps(refused), refused
    else:
        new_journal = outcome.data["new"] / "journal.jsonl"
        assert new_journal.exists() and '"r2"' in new_journal.read_text(), "the new state_dir was ignored"


# ---------------------------------------------------------------------------------------------
# 18. The scrape interval is learned from Prometheus


@decision("scrape-interval-learned")
def run_learned(lab: Lab) -> Outcome:
    # `prometheus.scrape_interval` left at its default; this Prometheus scrapes every 1 s.
    st = prepare(lab, "scrape-interval-learned", {"r1": GOOD, "r2": BAD}, data_s=20,
                 prometheus={"url": lab.prometheus.url, "timeout": "2s"})
    check = st.cli("check", "--online", check=False)
    explain = st.cli("explain", "http-5xx-ratio", check=False)
    onset = st.deploy("r2")
    wait_current(st, "r1")
    pending = [e for e in st.events("rule", rule="http-5xx-ratio", transition="phase", release="r2")
               if e["after"] in ("pending", "firing")]
    return Outcome(st, onset, timings={"first_breach": pending[0]["time"] - onset} if pending else {},
                   data={"check": check.stdout + check.stderr, "explain": explain.stdout + explain.stderr})


LEARNED = re.compile(r"scrape.?interval\D{0,60}\b1(\.0)?\s?s\b", re.IGNORECASE | re.DOTALL)


@pytest.mark.decision("scrape-interval-learned")
def test_the_scrape_interval_is_learned_from_prometheus_and_keeps_detection_fast(outcome):
    assert_rolled_back(outcome, "r2", "r1")
    # 3 x the learned 1 s: the first breach ~3 s after the deploy; with the 15 s default, ~15 s.
    assert outcome.timings.get("first_breach", 99) < 10, outcome.timings
    assert LEARNED.search(outcome.data["check"]), f"check --online does not say what it learned:\n{outcome.data['check']}"
    assert LEARNED.search(outcome.data["explain"]), f"explain does not say what it learned:\n{outcome.data['explain']}"


# ---------------------------------------------------------------------------------------------
# Stories: the same release re-deployed after its rollback; two deploys inside one tick


@decision("redeploy-after-rollback")
def run_redeploy(lab: Lab) -> Outcome:
    st = prepare(lab, "redeploy-after-rollback", {"r1": GOOD, "r2": BAD})
    st.deploy("r2")
    assert wait_current(st, "r1"), "the bad release was not rolled back"
    st.watch_quietly(3)
    again = st.deploy("r2")  # the CD pipeline re-applies what it thinks should run
    poll_until(lambda: criticals(st, again), 90)
    st.watch_quietly(10)
    return Outcome(st, again)


@pytest.mark.decision("redeploy-after-rollback")
def test_a_bad_release_redeployed_after_its_rollback_calls_a_human_instead_of_looping(outcome):
    st = outcome.stage
    assert len(st.events("rollback_intent")) == 1, "rolled back again: a loop with the CD pipeline"
    assert st.mark_of("r2") == "bad"
    said = criticals(st, outcome.onset)
    assert said and any("r2" in t for t in said), outcome.titles()


@decision("two-deploys-in-one-tick")
def run_two_in_one_tick(lab: Lab) -> Outcome:
    st = prepare(lab, "two-deploys-in-one-tick", {"r1": GOOD, "r2": GOOD, "r3": BAD})
    st.deploy("r2")
    onset = st.deploy("r3")  # a second deploy 50 ms later: the watcher never sees r2 current
    wait_current(st, "r1")
    st.watch_quietly(3)
    return Outcome(st, onset)


@pytest.mark.decision("two-deploys-in-one-tick")
def test_two_deploys_inside_one_tick_roll_back_to_the_last_known_good(outcome):
    assert_rolled_back(outcome, "r3", "r1")
    assert outcome.stage.mark_of("r2") != "good"

