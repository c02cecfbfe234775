"""Deploys that race the tick. What the rules saw while a deploy held the deploy lock is the
deploy at work, not the release; what they saw across a deploy that landed mid-tick belongs to
neither release. Found on CI by the decision scenario `counter-reset-by-restart` (tests/decisions): its
deploy script restarts the app under the lock; on a loaded machine the restart took ~10 s, the
health probe failed three times in a row meanwhile, the deploy let the lock go between the
tick's reads and its decision, and the healthy release was rolled back.

Two ways a real deploy hits it, each a test that failed before `window.discard_deploy_evidence`
and the tick's look at the lock before its reads:
  - the lock is let go while the tick is reading (between the probe and the decision);
  - `systemctl restart` returns before the app answers (Type=simple), so the deploy lets the
    lock go with the port still closed: one more failed probe after two under the lock made
    "three in a row".
And without a lock: a deploy that lands between the tick's read of `current` and its probe
(the last test; found by the SIGKILL test of tests/service/test_service_run.py).

In-process ticks with a fake clock on a real symlink host, a real /health endpoint and a real
flock held by the test, as `flock deploy.lock ./deploy.sh` holds it."""

from __future__ import annotations

import fcntl

from support.ticking import Clock, held_deploy_lock, make, ticks

RULE = """rules:
  - name: health
    http: HEALTH_URL
    failures: 3
    action: rollback
"""


def watching_r1(host, clock, lock):
    host.add_release("r1")
    host.add_release("r2")
    host.deploy("r1")
    w = make(host, clock, RULE, deploy_lock=str(lock))
    w.apply_request("mark", {"release": "r1", "mark": "good"}, clock())
    ticks(w, clock, 1)
    return w


def set_health(host, rid, status):
    (host.releases / rid / "health_status").write_text(str(status))


def r1_known_good_and_r2_failing(host, clock, **extra):
    """r1 current and marked good, r2 (/health 503) on disk; a `failures: 1` probe rule."""
    host.add_release("r1")
    host.add_release("r2", health=503)
    host.deploy("r1")
    w = make(host, clock, RULE.replace("failures: 3", "failures: 1"), **extra)
    w.apply_request("mark", {"release": "r1", "mark": "good"}, clock())
    ticks(w, clock, 1)
    return w


def r2_rolled_back_and_confirming(w, clock, host):
    """The tool deploys r2; the watcher rolls it back to r1 and confirms the rollback."""
    host.deploy("r2")
    acted = []
    while "rolled_back" not in acted and len(acted) < 3:
        acted += [r.acted for r in ticks(w, clock, 1)]
    assert "rolled_back" in acted and host.current_id() == "r1", acted
    assert w.state.confirming is not None, "the rollback is not being confirmed: nothing to race"


def tick_with_a_deploy_during_the_reads(w, clock, host, rid):
    """One tick during whose reads (after its read of `current`) the tool deploys `rid`."""
    measure = w.measure

    def the_deploy_lands_mid_read(now):
        host.deploy(rid)
        return measure(now)

    w.measure = the_deploy_lands_mid_read
    try:
        return w.tick()
    finally:
        w.measure = measure
        clock.advance(1)


def test_a_deploy_that_lets_the_lock_go_during_the_reads_is_not_judged_on_its_restart(symlink_host, tmp_path):
    host, clock, lock = symlink_host, Clock(), tmp_path / "deploy.lock"
    w = watching_r1(host, clock, lock)
    set_health(host, "r2", 503)  # the restart: nothing answers yet
    with held_deploy_lock(lock) as fd:
        host.deploy("r2")
        ticks(w, clock, 2)  # two failures under the lock
        measure = w.measure

        def reads_then_the_deploy_ends(now):
            evaluation = measure(now)  # the third failure, under the lock
            fcntl.flock(fd, fcntl.LOCK_UN)  # the deploy is done while the tick decides
            set_health(host, "r2", 200)
            return evaluation

        w.measure = reads_then_the_deploy_ends
        first = w.tick()
        w.measure = measure
    assert first.acted != "rolled_back", "rolled back on failures seen while the deploy held the lock"
    assert first.verdict is not None and first.verdict.kind == "deploy_lock", first.verdict
    later = ticks(w, clock, 5)
    assert all(r.acted is None for r in later), [r.acted for r in later]
    assert host.current_id() == "r2" and "rollback_intent" not in host.kinds()
    discarded = [e for e in host.journal() if e["kind"] == "deploy_evidence_discarded"]
    assert [e["rules"] for e in discarded] == [["health"]], discarded


def test_failures_under_the_lock_do_not_add_up_with_one_after_it(symlink_host, tmp_path):
    host, clock, lock = symlink_host, Clock(), tmp_path / "deploy.lock"
    w = watching_r1(host, clock, lock)
    set_health(host, "r2", 503)
    with held_deploy_lock(lock):
        host.deploy("r2")
        ticks(w, clock, 2)  # two failures while the deploy restarts the app
    # `systemctl restart` returned before the app listens: one more failure, then it answers.
    reports = ticks(w, clock, 1)
    set_health(host, "r2", 200)
    reports += ticks(w, clock, 5)
    assert all(r.acted is None for r in reports), [r.acted for r in reports]
    assert host.current_id() == "r2" and "rollback_intent" not in host.kinds()


def test_a_release_still_failing_after_the_deploy_let_go_is_rolled_back(symlink_host, tmp_path):
    """The other side: a release that never answers is rolled back on what is seen after the
    deploy let the lock go, three failures in a row as the rule says."""
    host, clock, lock = symlink_host, Clock(), tmp_path / "deploy.lock"
    w = watching_r1(host, clock, lock)
    set_health(host, "r2", 503)
    with held_deploy_lock(lock):
        host.deploy("r2")
        held = ticks(w, clock, 5)
    assert all(r.acted in (None, "deploy_lock") for r in held), [r.acted for r in held]
    after = ticks(w, clock, 4)
    assert [r.acted for r in after][:2] == [None, None], [r.acted for r in after]
    assert "rolled_back" in [r.acted for r in after], [r.acted for r in after]
    assert host.current_id() == "r1"


def test_a_deploy_landing_during_the_reads_is_not_blamed_on_the_known_good_release(symlink_host, tmp_path):
    """No lock at all: the deploy lands between the tick's read of `current` (r1, known-good)
    and its probe (r2's 503). Before, r1 was judged on r2's answer: "health fires, but r1 is
    known-good: the deploy is probably not the cause", a misleading page at every such deploy.
    Now the tick decides nothing (`deploy_during_tick`); the next one sees r2 and judges it."""
    host, clock = symlink_host, Clock()
    w = r1_known_good_and_r2_failing(host, clock)
    straddled = tick_with_a_deploy_during_the_reads(w, clock, host, "r2")
    assert straddled.verdict is None and straddled.acted is None, straddled.verdict
    journal = host.journal()
    assert not [e for e in journal if e["kind"] == "verdict"], [e for e in journal if e["kind"] == "verdict"]
    assert [e["release"] for e in journal if e["kind"] == "deploy_during_tick"] == ["r1"]
    after = ticks(w, clock, 3)
    assert "rolled_back" in [r.acted for r in after], [(r.verdict and r.verdict.kind, r.acted) for r in after]
    assert [e["release"] for e in host.journal() if e["kind"] == "rollback_intent"] == ["r2"]


def test_what_was_seen_under_the_lock_is_discarded_across_a_watcher_restart(symlink_host, tmp_path):
    """The watcher restarts (an upgrade, a crash) in the second between the deploy letting the
    lock go and the next tick: the new process still knows a deploy held it (state.json)."""
    host, clock, lock = symlink_host, Clock(), tmp_path / "deploy.lock"
    w = watching_r1(host, clock, lock)
    set_health(host, "r2", 503)
    with held_deploy_lock(lock):
        host.deploy("r2")
        ticks(w, clock, 2)  # two failures under the lock, saved with the tick
    restarted = make(host, clock, RULE, deploy_lock=str(lock))
    reports = ticks(restarted, clock, 1)  # one more failure: not "three in a row"
    set_health(host, "r2", 200)
    reports += ticks(restarted, clock, 3)
    assert all(r.acted is None for r in reports), [r.acted for r in reports]
    assert host.current_id() == "r2" and "rollback_intent" not in host.kinds()


def test_a_deploy_landing_during_a_confirmations_reads_ends_the_confirmation(symlink_host, tmp_path):
    """r2 is rolled back to r1, and the rollback is being confirmed. The deploy tool switches to
    r2 again during a tick's reads (`deploy_during_tick`: nothing decided), then puts r1 back,
    whose restart fails /health for a few ticks. The next tick reads r1, the confirmation's own
    target, so the confirmation went on judging r1 on that restart: with a Prometheus rule
    it halted "up did not clear on r0" (sim seed 9002203, kept as the simulator's example
    `n37-a-deploy-during-the-reads-of-a-confirmation`). A deploy seen during the reads now
    ends the confirmation, as one seen at a tick's start does."""
    host, clock = symlink_host, Clock()
    w = r1_known_good_and_r2_failing(host, clock)
    r2_rolled_back_and_confirming(w, clock, host)
    straddled = tick_with_a_deploy_during_the_reads(w, clock, host, "r2")
    assert straddled.acted is None, straddled.verdict
    assert w.state.confirming is None, "a deploy during the reads left the confirmation open"
    kinds = host.kinds()
    assert kinds.index("deploy_during_tick") < kinds.index("rollback_superseded"), kinds[-8:]
    host.deploy("r1")  # the tool puts r1 back; its restart fails /health for a while
    set_health(host, "r1", 503)
    restart = ticks(w, clock, 3)
    set_health(host, "r1", 200)
    restart += ticks(w, clock, 3)
    assert w.state.halted is None, w.state.halted
    assert "rollback_not_cleared" not in host.kinds(), host.kinds()[-10:]
    assert all(r.acted != "rolled_back" for r in restart), [r.acted for r in restart]


def test_a_deploy_holding_the_lock_during_a_confirmation_ends_it(symlink_host, tmp_path):
    """r2 is rolled back to r1, and the rollback is being confirmed. The deploy tool ships r1
    again under the deploy lock (a redeploy of the confirmation's own target) and its restart
    fails /health while the lock is held. The tick reads r1, no deploy in sight, and the
    confirmation judged that restart: it halted "health did not clear on r1" (sim seed
    16002640, kept as the simulator's example `n46-a-confirmation-under-a-deploys-lock`). A
    deploy holding the lock now supersedes the confirmation; what follows the lock is judged as
    after any deploy under it."""
    host, clock, lock = symlink_host, Clock(), tmp_path / "deploy.lock"
    w = r1_known_good_and_r2_failing(host, clock, deploy_lock=str(lock))
    r2_rolled_back_and_confirming(w, clock, host)
    until = w.state.confirming["until"]
    with held_deploy_lock(lock):
        host.deploy("r1")  # the redeploy: same release, its restart fails /health meanwhile
        set_health(host, "r1", 503)
        under_lock = []
        while clock() < until + 10:
            under_lock += ticks(w, clock, 1)
    set_health(host, "r1", 200)
    after = ticks(w, clock, 5)
    assert w.state.halted is None, w.state.halted
    kinds = host.kinds()
    assert "rollback_superseded" in kinds and "rollback_not_cleared" not in kinds, kinds[-10:]
    assert all(r.acted != "rolled_back" for r in under_lock + after), [r.acted for r in under_lock + after]
    assert host.current_id() == "r1"
