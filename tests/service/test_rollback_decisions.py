"""Rollback decisions of issue 13 that live in the planner and the executor (rollback.py),
one tick at a time with a fake clock on a real symlink host (release dirs, the `current` link,
a /health endpoint that follows it), plus the `releases` and `rollback --dry-run` commands as
a user runs them. Each test failed on the code before rollback.py existed:

    git-SHA names      release order came from sorting names: "no release older than" (item 4)
    cooldown           host-wide: a different bad release a minute later was refused (item 6)
    deploy landed      a deploy between the decision and the switch was overwritten (item 9)
    unusable target    a target failing its preflight halted with an older known-good left (item 11)
    dry run            `rollback --dry-run` branched off before the deploy lock
"""

import json
from contextlib import contextmanager

from support import run_cli
from support.ticking import Clock, held_deploy_lock, make, ticks


def deploy_good(w, host, clock, rid):
    """Deploy `rid`, watch it for a tick, mark it known-good (as its window passing would)."""
    host.deploy(rid)
    ticks(w, clock, 1)
    w.apply_request("mark", {"release": rid, "mark": "good"}, clock())


def sha_host(symlink_host):
    # Deployed in the order c41e9f0, f3a9c1e, 0b7d2aa; the name sort (f3a9c1e, c41e9f0,
    # 0b7d2aa) puts the newest last.
    for rid, health in (("c41e9f0", 200), ("f3a9c1e", 200), ("0b7d2aa", 503)):
        symlink_host.add_release(rid, health=health)
    symlink_host.deploy("c41e9f0")
    return symlink_host


def test_git_sha_named_releases_roll_back_to_the_previous_deploy_not_by_name(symlink_host):
    host, clock = sha_host(symlink_host), Clock()
    w = make(host, clock)
    deploy_good(w, host, clock, "c41e9f0")
    deploy_good(w, host, clock, "f3a9c1e")
    host.deploy("0b7d2aa")
    reports = ticks(w, clock, 4)
    assert "rolled_back" in [r.acted for r in reports]
    assert host.current_id() == "f3a9c1e"
    assert [e["target"] for e in host.journal() if e["kind"] == "rollback_intent"] == ["f3a9c1e"]


def test_releases_shows_the_order_and_where_it_comes_from(symlink_host):
    host, clock = sha_host(symlink_host), Clock()
    host.add_release("aa11bb2")  # never deployed while watched: placed by its creation time
    w = make(host, clock)
    deploy_good(w, host, clock, "c41e9f0")
    deploy_good(w, host, clock, "f3a9c1e")
    w.save()
    done = run_cli("releases", "--json", "-c", str(host.root / "watcher.yaml"))
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    order = [(r["id"], r["order"]) for r in rows]
    assert order[:2] == [("f3a9c1e", "timeline"), ("c41e9f0", "timeline")]
    assert {rid for rid, source in order[2:]} == {"0b7d2aa", "aa11bb2"}
    assert {source for _, source in order[2:]} == {"created"}
    assert "timeline" in run_cli("releases", "-c", str(host.root / "watcher.yaml")).stdout


def host_r1_good(symlink_host, clock, **extra):
    for rid, health in (("r1", 200), ("r2", 503), ("r3", 503)):
        symlink_host.add_release(rid, health=health)
    symlink_host.deploy("r1")
    w = make(symlink_host, clock, **extra)
    w.apply_request("mark", {"release": "r1", "mark": "good"}, clock())
    ticks(w, clock, 1)
    return w


def test_the_cooldown_is_per_release_a_different_bad_release_a_minute_later_is_rolled_back(symlink_host):
    clock = Clock()
    w = host_r1_good(symlink_host, clock, safety={"cooldown": "30m", "max_auto_rollbacks": 1})
    host = symlink_host
    host.deploy("r2")
    assert "rolled_back" in [r.acted for r in ticks(w, clock, 3)]
    clock.advance(60)
    host.deploy("r3")
    reports = ticks(w, clock, 3)
    assert "rolled_back" in [r.acted for r in reports]
    assert host.current_id() == "r1"
    assert not any(r.verdict and r.verdict.kind == "cooldown" for r in reports)


class _DeployLandsUnderTheLock:
    """A deploy that lands between the decider's observation and the watcher's flock (real
    processes cannot hit that window on demand): the first hold points `current` at `rid`
    before the watcher holds the lock, as a deploy script finishing just then would."""

    def __init__(self, host, rid):
        self.host, self.rid, self.holds = host, rid, 0

    def held_by_other(self):
        return False

    @contextmanager
    def hold(self):
        self.holds += 1
        if self.holds == 1:
            self.host.deploy(self.rid)
        yield


def test_a_deploy_that_lands_before_the_switch_is_not_overwritten(symlink_host):
    clock = Clock()
    w = host_r1_good(symlink_host, clock)
    host = symlink_host
    w.deploy_lock = _DeployLandsUnderTheLock(host, "r3")
    host.deploy("r2")
    reports = ticks(w, clock, 3)
    assert "deploy_landed" in [r.acted for r in reports]
    assert host.current_id() == "r3"  # the deploy stands; it is now watched as one
    assert "rollback_intent" not in host.kinds() and "rollback_not_made" in host.kinds()
    assert [e["release"] for e in host.journal() if e["kind"] == "deploy"][-1] == "r3"
    assert w.state.releases["r2"].mark != "bad" and not w.state.halted


def r0_r1_good_r2_bad(host, clock, r1_barrier=False):
    """r0 and r1 deployed and known-good (r1 a barrier if asked), then r2 deployed and r1's dir
    emptied, so that r1 fails its preflight."""
    for rid, health in (("r0", 200), ("r1", 200), ("r2", 503)):
        host.add_release(rid, health=health)
    host.deploy("r0")
    w = make(host, clock)
    deploy_good(w, host, clock, "r0")
    deploy_good(w, host, clock, "r1")
    if r1_barrier:
        w.apply_request("mark", {"release": "r1", "mark": "barrier"}, clock())  # r1 migrated the schema
    host.deploy("r2")
    (host.releases / "r1" / "health_status").unlink()  # r1 is now an empty dir: preflight fails
    return w


def test_an_unusable_target_is_skipped_for_the_next_older_known_good(symlink_host):
    clock, host = Clock(), symlink_host
    w = r0_r1_good_r2_bad(host, clock)
    reports = ticks(w, clock, 4)
    assert "rolled_back" in [r.acted for r in reports]
    assert host.current_id() == "r0" and not w.state.halted
    unusable = [e for e in host.journal() if e["kind"] == "rollback_target_unusable"]
    assert [e["target"] for e in unusable] == ["r1"] and "empty" in unusable[0]["reason"]


def test_an_unusable_target_is_never_skipped_across_a_barrier(symlink_host):
    clock, host = Clock(), symlink_host
    w = r0_r1_good_r2_bad(host, clock, r1_barrier=True)
    reports = ticks(w, clock, 4)
    assert "rollback_failed" in [r.acted for r in reports]
    assert host.current_id() == "r2" and w.state.halted


def test_rollback_dry_run_goes_through_the_deploy_lock_and_changes_nothing(symlink_host, tmp_path):
    clock, host = Clock(), symlink_host
    lock = tmp_path / "deploy.lock"
    w = host_r1_good(host, clock, deploy_lock=str(lock))
    host.deploy("r2")
    ticks(w, clock, 1)
    w.save()
    config = str(host.root / "watcher.yaml")
    done = run_cli("rollback", "--dry-run", "-c", config)
    assert done.returncode == 0, done.stderr
    assert "r2 -> r1" in done.stdout and "r1 passed its preflight" in done.stdout
    with held_deploy_lock(lock):  # what `flock deploy.lock ./deploy.sh` holds
        held = run_cli("rollback", "--dry-run", "-c", config)
    assert held.returncode == 1 and "deploy holds" in held.stdout
    assert host.current_id() == "r2" and "rollback_intent" not in host.kinds()
