"""`host:` counters (the kernel's OOM kills, a unit's restarts) count from the deploy across a
restart of the watcher and a reload of its config. Their readings lived in memory only: an OOM
kill between the deploy and a restart (the watcher upgraded, crashed, or killed by the same
memory pressure) was in the first reading of the new process, its starting point, and never
counted against the release.

In-process ticks on a real symlink host, the watcher "restarted" as a new Watcher on the same
state dir; the one fake is the vmstat file the rule reads (real OOM kills are not for a test
machine), written by `kill()`."""

from __future__ import annotations

from support.ticking import Clock, make, oom_counter, ticks
from watcher.service import daemon

RULES = "rules:\n  - name: oom\n    host: oom_kills\n    path: {path}\n    window: 5m\n    above: 0\n    action: rollback\n"


def deployed_r2(symlink_host, clock, tmp_path):
    host = symlink_host
    host.add_release("r1")
    host.add_release("r2")
    host.deploy("r1")
    path, kill = oom_counter(tmp_path)
    kill(7)  # seven kills since boot, long before
    rules = RULES.format(path=path)
    w = make(host, clock, rules)
    w.apply_request("mark", {"release": "r1", "mark": "good"}, clock())
    ticks(w, clock, 3)
    host.deploy("r2")
    ticks(w, clock, 2)
    return host, rules, w, kill


def test_an_oom_kill_just_before_a_restart_is_counted_after_it(symlink_host, tmp_path):
    clock = Clock()
    host, rules, w, kill = deployed_r2(symlink_host, clock, tmp_path)
    kill()  # ... and the watcher dies before its next tick reads the counter
    w.reader.close()
    clock.advance(5)
    w2 = make(host, clock, rules)
    reports = ticks(w2, clock, 3)
    assert "rolled_back" in [r.acted for r in reports], [(r.verdict and r.verdict.kind, r.acted) for r in reports]
    assert host.current_id() == "r1"
    assert w2.state.releases["r2"].mark == "bad"


def test_an_oom_kill_just_before_a_reload_is_counted_after_it(symlink_host, tmp_path):
    clock = Clock()
    host, rules, w, kill = deployed_r2(symlink_host, clock, tmp_path)
    kill()
    assert daemon.reload(w)  # SIGHUP: the same config, a new signal reader
    reports = ticks(w, clock, 3)
    assert "rolled_back" in [r.acted for r in reports]
    assert host.current_id() == "r1"


def test_kills_before_the_deploy_and_a_reboot_in_between_are_not_counted(symlink_host, tmp_path):
    clock = Clock()
    host, rules, w, kill = deployed_r2(symlink_host, clock, tmp_path)
    w.reader.close()
    # A reboot: the kernel's counter starts again at 0; the saved readings say 7.
    (tmp_path / "vmstat").write_text("nr_free_pages 1\noom_kill 0\n")
    clock.advance(60)
    w2 = make(host, clock, rules)
    reports = ticks(w2, clock, 3)
    assert all(r.acted is None for r in reports)
    assert host.current_id() == "r2"
    assert w2.state.host_counters["oom"], "the readings are kept in the state"
