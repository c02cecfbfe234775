"""A rollback whose verification fails leaves the host on the restored (known-good) release,
halted: the window, deploy time and `[$window]` start are then the switch's, as after a
verified rollback (deploys.restored), not the bad release's. They were kept: the known-good
release sat in the bad one's window, whose end judged it again (halted as it was: "passed its
watch window", or "not seen serving" said of it), and a redeploy of it found the bad release's
window still open on it (sim seed 2000354, example n16 of tests/sim/examples.py).

In-process ticks on a real symlink host and health endpoint; only time is simulated."""

from __future__ import annotations

import pytest

from support.ticking import Clock, make, ticks


@pytest.fixture
def halted(symlink_host):
    """r1 known-good; r2 deployed, failing its probes; r1 broken meanwhile, so the rollback
    r2 -> r1 is switched and does not verify. Returns (host, clock, watcher, r2's deploy time,
    the time of the failed verification)."""
    host, clock = symlink_host, Clock()
    host.add_release("r1")
    host.add_release("r2", health=503)
    host.deploy("r1")
    w = make(host, clock)  # a 10 min watch window
    w.apply_request("mark", {"release": "r1", "mark": "good"}, clock())
    ticks(w, clock, 1)
    clock.advance(60)
    host.deploy("r2")
    deployed = clock()
    (host.releases / "r1" / "health_status").write_text("503")  # the target broke meanwhile
    reports = ticks(w, clock, 3)
    assert "verify_failed" in [r.acted for r in reports], [r.acted for r in reports]
    assert host.current_id() == "r1" and w.state.current == "r1" and w.state.halted
    return host, clock, w, deployed, clock()


CASES = [
    # (what, check(watcher, r2 deployed at, verification failed by))
    ("no watch window on the restored known-good release",
     lambda w, deployed, failed: w.state.window_ends is None and not w.state.in_watch_window(failed)),
    ("no deploy time: r1 was not deployed, r2 was",
     lambda w, deployed, failed: w.state.deployed_at is None),
    ("`[$window]` starts at the switch, not at r2's deploy",
     lambda w, deployed, failed: w.state.changed_at is not None and deployed < w.state.changed_at <= failed),
    ("the rule that fired still fires: the halt stands on it",
     lambda w, deployed, failed: w.state.rules["health"].phase.value == "firing"),
    ("r2 stays bad, r1 good",
     lambda w, deployed, failed: (w.state.releases["r2"].mark, w.state.releases["r1"].mark) == ("bad", "good")),
]


@pytest.mark.parametrize("check", [c for _, c in CASES], ids=[what for what, _ in CASES])
def test_after_a_failed_verification(halted, check):
    host, clock, w, deployed, failed = halted
    assert check(w, deployed, failed)


def test_the_restored_release_is_not_said_to_pass_the_window_of_the_release_that_left(halted):
    host, clock, w, deployed, failed = halted
    (host.releases / "r1" / "health_status").write_text("200")  # r1 heals; still halted
    ticks(w, clock, 21, every=30.0)  # past r2's 10 min window
    assert clock() > deployed + 600
    assert w.state.halted and w.state.window_ends is None
    # Before: "window_passed" (r1 "passed its watch window" again), or "window_ended" with a
    # message that r1 was not seen serving, when the window ended a tick after the halt.
    ended = [e["kind"] for e in host.journal() if e["kind"] in ("window_passed", "window_ended") and e["time"] > failed]
    assert ended == []
