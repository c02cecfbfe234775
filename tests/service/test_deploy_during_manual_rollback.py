"""A human's `rollback` is applied by the running service at the start of a tick and verified
there, in sleeps of `verify_every`. A deploy that lands during those sleeps supersedes it, and
the same tick then sees the deploy: its watch window opens when the tick saw it. It opened at
the tick's start, seconds before the deploy, so the new release's window was shorter than
`watch_window` (sim seed 3000810: 1797 s of 1800).

In-process ticks on a real symlink host and health endpoint; only time is simulated."""

from __future__ import annotations

from support.ticking import Clock, make, ticks
from watcher.store.state import StateStore


def test_a_deploy_during_a_manual_rollbacks_verification_gets_its_whole_window(symlink_host):
    host, clock = symlink_host, Clock()
    for rid in ("r1", "r2", "r3"):
        host.add_release(rid)
    host.deploy("r1")
    w = make(host, clock, watch_window="30m", verify={"url": host.health_url, "attempts": 5, "every": "3s"})
    w.apply_request("mark", {"release": "r1", "mark": "good"}, clock())
    ticks(w, clock, 1)
    host.deploy("r2")
    ticks(w, clock, 2)
    assert w.state.current == "r2"

    landed = []

    def sleep(seconds: float) -> None:
        """The deploy tool switches to r3 during the first verification sleep."""
        clock.advance(seconds)
        if not landed:
            clock.advance(-2.5)  # it lands 0.5 s into the sleep...
            host.deploy("r3")
            landed.append(clock())
            clock.advance(2.5)  # ...and the watcher wakes at the sleep's end

    w.sleep = sleep
    (host.releases / "r1" / "health_status").write_text("503")  # still starting: not verified at once
    StateStore(host.state_dir).submit_request("rollback", reason="manual rollback")
    tick_started = clock()
    w.tick()

    kinds = [e["kind"] for e in host.journal() if e["time"] >= tick_started]
    assert "rollback_superseded" in kinds and "deploy" in kinds, kinds
    assert w.state.current == "r3" and landed and landed[0] > tick_started
    # Its window ends watch_window after the deploy at the earliest: never before.
    assert w.state.window_ends is not None and w.state.window_ends >= landed[0] + 1800, \
        (w.state.window_ends - landed[0], tick_started)
