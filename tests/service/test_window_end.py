"""The end of a watch window while a rollback rule is pending: the release is not blessed
mid-breach. Found by the deploy-lock scenario under load (tests/decisions): the first breach
came late, the rule was still pending when the window ended, the release was marked known-good
and its firing a few seconds later was "outside the window": a bad deploy never rolled back.

In-process ticks on a real symlink host and health endpoint; only time is simulated."""

from __future__ import annotations

import pytest

from support.ticking import Clock, held_deploy_lock, make, ticks

RULE = """rules:
  - name: health
    http: HEALTH_URL
    failures: 1
    for: 5s
    action: rollback
"""


def watcher(host, clock, **extra):
    host.add_release("r1")
    host.add_release("r2")
    host.deploy("r1")
    w = make(host, clock, RULE, watch_window="10s", **extra)
    w.apply_request("mark", {"release": "r1", "mark": "good"}, clock())
    ticks(w, clock, 1)
    return w


# Ticks 1 s apart as configured, and late ones (a loaded host: each tick 1.7 s after the last):
# the held window must not depend on the next tick coming within one interval.
@pytest.mark.parametrize("every", [1.0, 1.7])
def test_a_rule_pending_when_the_window_ends_holds_it_until_it_fires_and_rolls_back(symlink_host, every):
    host, clock = symlink_host, Clock()
    w = watcher(host, clock)
    host.deploy("r2")
    ticks(w, clock, int(8 / every), every=every)  # healthy for 8 s of its 10 s window
    (host.releases / "r2" / "health_status").write_text("503")
    reports = ticks(w, clock, 10, every=every)  # pending from ~9 s; `for` 5 s ends past the window's 10 s
    assert "rolled_back" in [r.acted for r in reports], [(r.verdict and r.verdict.kind, r.acted) for r in reports]
    assert host.current_id() == "r1"
    assert w.state.releases["r2"].mark == "bad"
    kinds = host.kinds()
    assert "window_passed" not in [e["kind"] for e in host.journal() if e.get("release") == "r2"]
    assert kinds.count("window_extended") == 1


def test_a_rule_that_clears_after_the_window_ended_lets_the_release_become_known_good(symlink_host):
    host, clock = symlink_host, Clock()
    w = watcher(host, clock)
    host.deploy("r2")
    ticks(w, clock, 8)
    (host.releases / "r2" / "health_status").write_text("503")
    ticks(w, clock, 3)  # pending across the window's end
    (host.releases / "r2" / "health_status").write_text("200")
    ticks(w, clock, 3)
    assert host.current_id() == "r2"
    assert w.state.releases["r2"].mark == "good"
    assert [e for e in host.journal() if e["kind"] == "window_passed" and e.get("release") == "r2"]


@pytest.mark.parametrize("every", [1.0, 1.7])
def test_a_deploy_lock_taken_while_the_rule_is_pending_at_the_end_waits_then_rolls_back(symlink_host, tmp_path, every):
    """The deploy-lock scenario of tests/decisions under load, tick by tick: the rule breaches
    late in the window, fires after its end while a deploy holds the lock; once the lock is
    free and the rule fires again on what follows, the rollback is made."""
    host, clock = symlink_host, Clock()
    lock = tmp_path / "deploy.lock"
    w = watcher(host, clock, deploy_lock=str(lock))
    with held_deploy_lock(lock):  # `flock deploy.lock cap deploy`: migrations run on
        host.deploy("r2")
        ticks(w, clock, int(8 / every), every=every)
        (host.releases / "r2" / "health_status").write_text("503")
        held = ticks(w, clock, 20, every=every)  # pending, firing after the window's end, waiting
        assert all(r.acted in (None, "deploy_lock") for r in held), [r.acted for r in held]
        assert any(r.verdict is not None and r.verdict.kind == "deploy_lock" for r in held)
    # What the rule saw under the lock is discarded (window.discard_deploy_evidence): it is
    # judged again on what follows, `for: 5s` of it, with the window held while it is pending.
    reports = ticks(w, clock, int(5 / every) + 4, every=every)
    acted = [r.acted for r in reports]
    assert "rolled_back" in acted and acted.index("rolled_back") >= int(5 / every), acted
    assert host.current_id() == "r1"
