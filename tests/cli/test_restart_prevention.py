"""`run` under systemd's Restart=on-failure: every way it exits because it cannot start on this
host (a config that does not load, a taken telemetry port, a usage error in ExecStart=) is an
exit code that the shipped unit names in RestartPreventExitStatus=, so a config error does not
crash-loop every RestartSec; a crash (exit 1) is not named there and still restarts."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from support import run_cli

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "rollback-watcher.service"
RULES = "rules:\n  - name: health\n    http: HEALTH_URL\n    failures: 3\n    action: rollback\n"


def service_values(key: str) -> list[str]:
    """Values of `key=` in the unit's [Service] section (systemd's syntax: no spaces around =)."""
    section, values = None, []
    for raw in UNIT.read_text().splitlines():
        line = raw.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and line.startswith(f"{key}="):
            values.append(line.split("=", 1)[1])
    return values


def prevented() -> set[int]:
    return {int(code) for value in service_values("RestartPreventExitStatus") for code in value.split()}


@pytest.fixture
def host(symlink_host):
    symlink_host.add_release("r1")
    symlink_host.deploy("r1")
    return symlink_host


def test_the_unit_restarts_on_failure_but_not_on_a_config_or_usage_error():
    assert service_values("Restart") == ["on-failure"]
    assert {2, 78} <= prevented(), service_values("RestartPreventExitStatus")
    assert 1 not in prevented(), "exit 1 is also a crash (a traceback): it must restart"


def test_run_with_a_config_that_does_not_load_exits_with_a_code_the_unit_does_not_restart(host, tmp_path):
    config = host.write_config(RULES, interval="banana")
    done = run_cli("run", "--config", config, env={"XDG_CACHE_HOME": str(tmp_path / "cache")}, timeout=120)
    assert done.returncode in prevented(), (done.returncode, done.stdout + done.stderr)
    assert done.returncode == 78
    assert "interval" in done.stderr and "nothing was changed" in done.stderr
    assert "Traceback" not in done.stdout + done.stderr


def test_run_with_the_telemetry_port_taken_exits_with_a_code_the_unit_does_not_restart(host, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = host.write_config(RULES, telemetry={"listen": f"127.0.0.1:{port}"})
        done = run_cli("run", "--config", config, env={"XDG_CACHE_HOME": str(tmp_path / "cache")}, timeout=120)
    assert done.returncode in prevented(), (done.returncode, done.stdout + done.stderr)


def test_run_with_a_usage_error_exits_with_a_code_the_unit_does_not_restart():
    done = run_cli("run", "--confg", "/etc/rollback-watcher/watcher.yaml")
    assert done.returncode in prevented(), (done.returncode, done.stderr)
    assert "No such option: --confg" in done.stderr
