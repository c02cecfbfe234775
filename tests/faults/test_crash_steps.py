"""SIGKILL at each step of a rollback, then a restart: the restarted watcher reconciles from the
journaled intent and never switches twice (docs/design.md section 5, last paragraph).

Switches are counted by the symlink backend's `restart` command, which runs after every switch
and appends a line to a file: two lines would be a double switch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support import HEALTH_PROBE_RULES, WatcherProcess, wait_for
from support import run_cli as cli  # config paths are absolute: any cwd works

REPO = Path(__file__).resolve().parents[2]


def setup_host(host, tmp_path):
    host.add_release("r1")
    host.add_release("r2", health=500)
    host.deploy("r2")
    switches = tmp_path / "switches.log"
    config = host.write_config(HEALTH_PROBE_RULES)
    cfg = json.loads(config.read_text())
    cfg["backend"]["restart"] = ["sh", "-c", f"echo switched >> {switches}"]
    config.write_text(json.dumps(cfg))
    cli("mark", "good", "r1", "--config", config, check=True)
    return config, switches


def switch_count(switches) -> int:
    return len(switches.read_text().splitlines()) if switches.exists() else 0


@pytest.mark.parametrize("step,expected_current,expected_switches,reconcile", [
    ("intent", "r2", 0, "not_switched"),
    # switched and healthy: verified once the rule that fired clears on r1 (a tick or two later)
    ("switched", "r1", 1, "switched_confirming"),
    ("verify", "r1", 1, "switched_confirming"),
])
def test_sigkill_mid_rollback_restart_reconciles_without_switching_twice(
        symlink_host, tmp_path, step, expected_current, expected_switches, reconcile):
    host = symlink_host
    config, switches = setup_host(host, tmp_path)
    log = tmp_path / "crash.log"
    with open(log, "wb") as out:
        crashed = subprocess.run([sys.executable, str(REPO / "tests" / "faults" / "crashrun.py"), "run", "--config",
                                  str(config)], stdout=out, stderr=subprocess.STDOUT, cwd=REPO, timeout=60,
                                 env={**os.environ, "CRASH_AT": step})
    assert crashed.returncode == -9, log.read_text()
    assert "rollback_intent" in host.kinds()
    assert switch_count(switches) == expected_switches
    state = json.loads((host.state_dir / "state.json").read_text())
    assert state["intent"] is not None and state["intent"]["to"] == "r1"

    w = WatcherProcess(config, tmp_path / "restart.log")
    try:
        event = wait_for(lambda: next((e for e in host.journal() if e["kind"] == "reconcile"), None),
                         timeout=30, what="the reconcile event")
        time.sleep(3)  # about three more ticks (interval 1 s): a second switch would happen here
    finally:
        code = w.stop()
    assert code == 0, w.output()
    assert event["result"] == reconcile
    assert host.current_id() == expected_current
    assert switch_count(switches) == expected_switches
    kinds = host.kinds()
    assert kinds.count("rollback_intent") == 1, kinds
    assert kinds.count("rollback_switched") <= 1
    state = json.loads((host.state_dir / "state.json").read_text())
    assert state["intent"] is None
    assert state["releases"]["r2"]["mark"] == "bad"
    if reconcile == "switched_confirming":
        assert "rollback_verified" in kinds and state["confirming"] is None
    if step == "intent":
        # still on the bad release, which already used its automatic rollback: a human decides
        assert any(e["kind"] == "verdict" and e["action"] != "rollback" for e in host.journal()), kinds
