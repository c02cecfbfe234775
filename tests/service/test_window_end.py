"""The end of a watch window while a rollback rule is pending: the release is not blessed
mid-breach. Found by the deploy-lock scenario under load (tests/decisions): the first breach
came late, the rule was still pending when the window ended, the release was marked known-good
and its firing a few seconds later was "outside the window": a bad deploy never rolled back.

In-process ticks on a real symlink host and health endpoint; only time is simulated."""

from __future__ import annotations

from support.ticking import Clock, ticks

from watcher.config import load_config
from watcher.service import build_watcher

RULE = """rules:
  - name: health
    http: HEALTH_URL
    failures: 1
    for: 5s
    action: rollback
"""


def watcher(host, clock):
    host.add_release("r1")
    host.add_release("r2")
    host.deploy("r1")
    cfg = load_config(host.write_config(RULE, watch_window="10s"), environ={})
    w = build_watcher(cfg, notify=False, clock=clock)
    w.sleep = lambda s: None
    w.start()
    w.apply_request("mark", {"release": "r1", "mark": "good"}, clock())
    ticks(w, clock, 1)
    return w


def test_a_rule_pending_when_the_window_ends_holds_it_until_it_fires_and_rolls_back(symlink_host):
    host, clock = symlink_host, Clock()
    w = watcher(host, clock)
    host.deploy("r2")
    ticks(w, clock, 8)  # healthy for 8 s of its 10 s window
    (host.releases / "r2" / "health_status").write_text("503")
    reports = ticks(w, clock, 10)  # pending from ~9 s; `for` 5 s ends past the window's 10 s
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
