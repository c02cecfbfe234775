"""Commands that change the state while `rollback-watcher run` holds it: they are queued to the
running service and applied at its next tick, so that state.json has one writer."""

import json
from pathlib import Path

from support import run_cli, wait_for

REPO = Path(__file__).resolve().parents[2]
RULES = "rules:\n  - name: health\n    http: HEALTH_URL\n    failures: 2\n    action: rollback\n"


def cli(*args, **kwargs):
    kwargs.setdefault("cwd", REPO)
    return run_cli(*args, **kwargs)


def test_commands_are_applied_by_the_running_service(symlink_host, start_watcher):
    host = symlink_host
    host.add_release("r1")
    host.add_release("r2", health=503)
    host.deploy("r1")
    cfg = host.write_config(RULES)
    w = start_watcher(cfg)
    wait_for(lambda: "deploy" in host.kinds(), 20, what="the first tick")

    out = cli("mark", "good", "r1", "--config", cfg, check=True).stdout
    assert "r1 marked good (applied by the running watcher)" in out
    out = cli("pause", "--for", "1h", "--config", cfg, check=True).stdout
    assert "applied by the running watcher" in out
    host.deploy("r2")
    wait_for(lambda: any(e["kind"] == "verdict" and e["check"] == "paused" for e in host.journal()), 20,
             what="a paused verdict")
    assert host.current_id() == "r2"  # paused: would roll back, acts not
    cli("resume", "--config", cfg, check=True)
    wait_for(lambda: "rollback_verified" in host.kinds(), 20, what="the rollback after resume")
    assert host.current_id() == "r1"

    status = json.loads(cli("status", "--json", "--config", cfg, check=True).stdout)
    assert status["running"] and status["release"] == "r1"
    assert w.stop() == 0
    done = [e for e in host.journal() if e["kind"] == "request_done"]
    assert [e["command"] for e in done] == ["mark", "pause", "resume"]


def test_mark_deployed_opens_the_window_from_the_given_time(symlink_host, start_watcher):
    host = symlink_host
    host.add_release("r1")
    host.deploy("r1")
    cfg = host.write_config(RULES, watch_window="10m")
    w = start_watcher(cfg)
    wait_for(lambda: "deploy" in host.kinds(), 20, what="the first tick")
    at = 1_700_000_000.0
    out = cli("mark", "deployed", "r1", "--at", str(at), "--config", cfg, check=True).stdout
    assert "deploy of r1" in out
    deploys = [e for e in host.journal() if e["kind"] == "deploy"]
    assert deploys[-1]["window_ends"] == at + 600
    assert w.stop() == 0
