"""One tick at a time, in-process, with a fake clock: a real symlink host (release dirs, the
`current` link) and a real health endpoint that follows it; only time is simulated, so the
watch window, cooldown and pause can pass in milliseconds."""

import fcntl
import os
import time

import pytest

from support.ticking import Clock, make, ticks
from watcher.base.errors import RollbackError


@pytest.fixture
def host(symlink_host):
    symlink_host.add_release("r1")
    symlink_host.add_release("r2", health=503)
    symlink_host.add_release("r3", health=503)
    symlink_host.deploy("r1")
    return symlink_host


def watching_known_good_r1(host, clock, **extra):
    """A watcher on r1, marked known-good, after its first tick: the start of most scenarios."""
    w = make(host, clock, **extra)
    w.apply_request("mark", {"release": "r1", "mark": "good"}, clock())
    ticks(w, clock, 1)
    return w


def test_first_start_gives_the_current_release_a_window_and_it_becomes_known_good(host):
    clock = Clock()
    w = make(host, clock)
    ticks(w, clock, 2)
    assert w.state.current == "r1" and w.state.in_watch_window(clock())
    ticks(w, clock, 600)  # watched through its window (time without ticks is no evidence)
    assert w.state.releases["r1"].mark == "good"
    assert "window_passed" in host.kinds()


def test_bad_deploy_rolls_back_to_known_good_once_and_marks_it_bad(host):
    clock = Clock()
    w = watching_known_good_r1(host, clock)
    host.deploy("r2")
    reports = ticks(w, clock, 4)
    assert [r.acted for r in reports] == [None, "rolled_back", None, None]
    assert host.current_id() == "r1"
    assert w.state.releases["r2"].mark == "bad" and w.state.releases["r2"].auto_rollbacks == 1
    assert host.kinds().count("rollback_switched") == 1
    incident = [e for e in host.journal() if e["kind"] == "incident"][-1]
    assert incident["resolution"] == "rolled_back" and incident["release"] == "r2"
    assert any("health breached" in t["what"] for t in incident["timeline"])


def test_two_bad_deploys_in_a_row_roll_back_to_the_last_known_good_not_the_first_bad(host):
    clock = Clock()
    w = watching_known_good_r1(host, clock, safety={"cooldown": "0s", "max_auto_rollbacks": 1})
    host.deploy("r2")
    ticks(w, clock, 3)
    host.deploy("r3")
    reports = ticks(w, clock, 3)
    assert "rolled_back" in [r.acted for r in reports]
    assert host.current_id() == "r1"
    targets = [e["target"] for e in host.journal() if e["kind"] == "rollback_intent"]
    assert targets == ["r1", "r1"]


def test_failing_outside_the_watch_window_notifies_and_never_acts(host):
    clock = Clock()
    w = make(host, clock)
    ticks(w, clock, 602)  # r1 survives its window, watched: known-good
    (host.releases / "r1" / "health_status").write_text("503")
    reports = ticks(w, clock, 3)
    assert {r.verdict.kind for r in reports if r.verdict} >= {"outside_window"}
    assert all(r.acted is None for r in reports)
    assert host.current_id() == "r1" and "rollback_intent" not in host.kinds()


def test_shadow_mode_reports_would_roll_back_and_changes_nothing(host):
    clock = Clock()
    w = watching_known_good_r1(host, clock, mode="shadow")
    host.deploy("r2")
    ticks(w, clock, 5)
    assert host.current_id() == "r2"
    verdicts = [e for e in host.journal() if e["kind"] == "verdict"]
    assert len(verdicts) == 1 and verdicts[0]["check"] == "shadow" and verdicts[0]["target"] == "r1"
    assert "rollback_intent" not in host.kinds()


def test_unhealthy_target_fails_verification_and_the_watcher_stops_acting_until_resolved(host):
    clock = Clock()
    w = watching_known_good_r1(host, clock, safety={"cooldown": "0s", "max_auto_rollbacks": 5})
    host.deploy("r2")
    (host.releases / "r1" / "health_status").write_text("503")  # the target broke meanwhile
    reports = ticks(w, clock, 1)
    assert w.state.deploy_seen_late, "r2 was seen by the tick after its deploy"
    reports += ticks(w, clock, 2)
    assert "verify_failed" in [r.acted for r in reports]
    assert w.state.halted and "did not verify" in w.state.halted
    assert not w.state.deploy_seen_late, "the switch is the watcher's own: its moment is known"
    switched = host.kinds().count("rollback_switched")
    ticks(w, clock, 5)
    assert host.kinds().count("rollback_switched") == switched == 1  # halted: no more acting
    assert w.apply_request("resolve", {}, clock()) == "resolved"
    assert w.state.halted is None


def test_pause_holds_the_rollback_until_it_ends(host):
    clock = Clock()
    w = make(host, clock)
    w.apply_request("mark", {"release": "r1", "mark": "good"}, clock())
    w.apply_request("pause", {"seconds": 30}, clock())
    ticks(w, clock, 1)
    host.deploy("r2")
    ticks(w, clock, 5)
    assert host.current_id() == "r2"
    clock.advance(30)
    reports = ticks(w, clock, 2)
    assert "rolled_back" in [r.acted for r in reports] and host.current_id() == "r1"


def test_deploy_lock_makes_the_watcher_wait(host, tmp_path):
    clock = Clock()
    lock = tmp_path / "deploy.lock"
    w = watching_known_good_r1(host, clock, deploy_lock=str(lock))
    fd = os.open(lock, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # what `flock deploy.lock ./deploy.sh` holds
    host.deploy("r2")
    reports = ticks(w, clock, 4)
    assert {r.verdict.kind for r in reports if r.verdict.action != "nothing"} == {"deploy_lock"}
    assert host.current_id() == "r2"
    os.close(fd)
    reports = ticks(w, clock, 2)
    assert "rolled_back" in [r.acted for r in reports] and host.current_id() == "r1"


def test_second_rollback_of_the_same_release_needs_a_human(host):
    clock = Clock()
    w = watching_known_good_r1(host, clock, safety={"cooldown": "0s", "max_auto_rollbacks": 1})
    host.deploy("r2")
    ticks(w, clock, 3)
    host.deploy("r2")  # someone deploys the same broken release again
    reports = ticks(w, clock, 4)
    assert host.current_id() == "r2"
    assert any(r.verdict.kind == "limit" for r in reports)


def test_manual_rollback_with_no_known_good_target_refuses_and_changes_nothing(host):
    clock = Clock()
    w = make(host, clock)
    host.deploy("r2")
    ticks(w, clock, 1)
    with pytest.raises(RollbackError, match="no known-good release older than r2"):
        w.manual_rollback(None, "manual")
    assert host.current_id() == "r2" and "rollback_intent" not in host.kinds()


def test_keep_prunes_old_releases_after_a_rollback_but_never_known_good_ones(host):
    for age, rid in ((3000, "r0a"), (2000, "r0b")):  # older than r1 by creation time, unmarked
        old = time.time() - 86400 - age
        os.utime(host.add_release(rid), (old, old))
    # r3: built after everything this test deploys (release order is the timeline, then creation
    # time, never the name), so it is among the `keep` newest
    os.utime(host.releases / "r3", (1_900_000_000, 1_900_000_000))
    clock = Clock()
    cfg_backend = {"type": "symlink", "releases": str(host.releases), "current": str(host.current), "keep": 2}
    w = watching_known_good_r1(host, clock, backend=cfg_backend)
    host.deploy("r2")
    ticks(w, clock, 3)
    assert host.current_id() == "r1"
    left = sorted(p.name for p in host.releases.iterdir() if not p.name.startswith("."))
    assert left == ["r1", "r2", "r3"]  # r0a, r0b pruned; r1 known-good and r2 (the incident) kept
    assert [e["releases"] for e in host.journal() if e["kind"] == "pruned"] == [["r0b", "r0a"]]


class _LockTakenAfterTheCheck:
    """A deploy that takes the deploy lock between the decider's check and the watcher's own
    flock. Real processes cannot hit that window on demand, so this stands in for the lock:
    the check says free, the first hold finds it busy, later holds succeed."""

    def __init__(self):
        self.holds = 0

    def held_by_other(self):
        return False

    def hold(self):
        from contextlib import contextmanager

        from watcher.store.locks import LockBusy

        @contextmanager
        def held():
            self.holds += 1
            if self.holds == 1:
                raise LockBusy("a deploy holds the lock")
            yield

        return held()


def test_a_rollback_that_lost_the_lock_race_is_tried_again_next_tick(host):
    clock = Clock()
    w = watching_known_good_r1(host, clock)
    w.deploy_lock = _LockTakenAfterTheCheck()
    host.deploy("r2")
    reports = ticks(w, clock, 4)
    assert [r.acted for r in reports if r.acted] == ["deploy_lock", "rolled_back"]
    assert host.current_id() == "r1"
