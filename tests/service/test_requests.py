"""Commands that change the state while `rollback-watcher run` holds it: they are queued to the
running service and applied at its next tick, so that state.json has one writer."""

import json
import os
import signal
import subprocess
import sys
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


def test_a_refused_request_exits_1_through_the_running_service_and_changes_nothing(symlink_host, start_watcher):
    """Issue 13 through the request inbox: the running service checks marks against the host
    and refuses a deploy time that is not finite, even in a request file the CLI did not check."""
    from watcher.store.state import StateStore

    host = symlink_host
    host.add_release("r1")
    host.add_release("r2")
    host.deploy("r2")
    cfg = host.write_config(RULES)
    w = start_watcher(cfg)
    wait_for(lambda: "deploy" in host.kinds(), 20, what="the first tick")

    typo = cli("mark", "good", "r3", "--config", cfg)
    assert typo.returncode == 1, typo.stdout
    assert "r3 is not a release this host has" in typo.stderr and "running watcher refused" in typo.stderr
    wrong = cli("mark", "deployed", "r1", "--config", cfg)
    assert wrong.returncode == 1 and "r1 is not the current release (r2 is)" in wrong.stderr

    # A request file with a NaN time, as an older CLI (or a hand) writes it.
    request = StateStore(host.state_dir).submit_request("deployed", release="r2", at=float("nan"), force=False)
    done = wait_for(lambda: next((e for e in host.journal() if e["kind"] == "request_done"
                                  and e["request"] == request), None), 20, what="the request to be applied")
    assert done["ok"] is False and "not a time" in done["result"]
    assert [e for e in host.journal() if e["kind"] == "mark"] == []
    assert [e["release"] for e in host.journal() if e["kind"] == "deploy"] == ["r2"]
    status = json.loads(cli("status", "--json", "--config", cfg, check=True).stdout)
    assert status["running"] and status["in_watch_window"]
    assert w.stop() == 0


def test_a_request_the_service_never_took_is_applied_by_the_cli_when_the_service_dies(symlink_host, start_watcher):
    """The service is killed (OOM killer, a crash) while a human's `mark good` waits for it.
    Before, the CLI waited its 60 s and exited 0 with "queued": the mark waited for a start
    that might not come. Now the CLI sees the service gone and its request untaken, takes it
    back and applies it under the instance lock."""
    host = symlink_host
    host.add_release("r1")
    host.deploy("r1")
    cfg = host.write_config(RULES)
    w = start_watcher(cfg)
    wait_for(lambda: "deploy" in host.kinds(), 20, what="the first tick")
    os.kill(w.proc.pid, signal.SIGSTOP)  # holds the instance lock, takes no request
    mark = subprocess.Popen([sys.executable, "-m", "watcher", "mark", "good", "r1", "--config", str(cfg)],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        requests = host.state_dir / "requests"
        wait_for(lambda: list(requests.glob("*.json")), 30, what="the queued request")
        w.stop(sig=signal.SIGKILL)
        out, err = mark.communicate(timeout=40)
    finally:
        if mark.poll() is None:
            mark.kill()
    assert mark.returncode == 0, err
    assert "r1 marked good" in out and "applied here" in out, out
    assert not list(requests.glob("*.json")), "the request would be applied a second time at the next start"
    state = json.loads((host.state_dir / "state.json").read_text())
    assert state["releases"]["r1"]["mark"] == "good"
