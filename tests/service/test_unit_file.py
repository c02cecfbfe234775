"""The systemd unit and the install step: the unit verifies, its sandbox rates 1.2 or better,
and its ExecStart is the console script that `make install` (systemd/install.sh) creates."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "rollback-watcher.service"
DEFAULT_PREFIX = "/opt/rollback-watcher"
EXPOSURE_LIMIT = 1.2  # measured with systemd 252; the issue asks for 2.0 or lower

def systemd_analyze() -> str:
    # The Makefile installs systemd where it is missing: a skip would hide an unverified unit.
    path = shutil.which("systemd-analyze")
    assert path, "systemd-analyze is not installed: run `make test`, which installs it"
    return path


def unit_values(text: str, key: str) -> list[str]:
    return [line.split("=", 1)[1] for line in text.splitlines() if line.startswith(f"{key}=")]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """systemd/install.sh into a temp PREFIX. pip builds the package from this checkout
    (--no-deps); the temp virtualenv sees the test virtualenv's dependencies through a .pth."""
    root = tmp_path_factory.mktemp("install")
    prefix, unitdir, confdir = root / "opt" / "rollback-watcher", root / "unit", root / "etc"
    subprocess.run(["python3", "-m", "venv", "--without-pip", str(prefix)], check=True)
    subprocess.run([str(prefix / "bin" / "python"), "-m", "ensurepip", "--default-pip"], check=True,
                   capture_output=True)
    site = subprocess.run([str(prefix / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    dev_site = subprocess.run([str(REPO / ".venv" / "bin" / "python"), "-c",
                               "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              check=True, capture_output=True, text=True).stdout.strip()
    Path(site, "test-deps.pth").write_text(dev_site + "\n")  # a plain path: the editable finder stays out
    env = dict(os.environ, PREFIX=str(prefix), UNITDIR=str(unitdir), CONFDIR=str(confdir), PIP_ARGS="--no-deps")
    result = subprocess.run(["sh", str(REPO / "systemd" / "install.sh")], env=env, capture_output=True, text=True,
                            timeout=240, cwd=root)
    assert result.returncode == 0, result.stdout + result.stderr
    return {"prefix": prefix, "unit": unitdir / "rollback-watcher.service", "confdir": confdir, "root": root, "env": env}


def test_unit_execstart_is_the_console_script_of_the_default_prefix():
    (exec_start,) = unit_values(UNIT.read_text(), "ExecStart")
    assert exec_start.split()[0] == f"{DEFAULT_PREFIX}/bin/rollback-watcher"
    assert exec_start.split()[1:] == ["run", "--config", "/etc/rollback-watcher/watcher.yaml"]


def test_install_creates_the_console_script_the_installed_unit_starts(installed):
    (exec_start,) = unit_values(installed["unit"].read_text(), "ExecStart")
    binary = exec_start.split()[0]
    assert binary == str(installed["prefix"] / "bin" / "rollback-watcher")
    assert os.access(binary, os.X_OK)
    # The installed copy runs from the virtualenv, not from this checkout.
    where = subprocess.run([str(installed["prefix"] / "bin" / "python"), "-c", "import watcher; print(watcher.__file__)"],
                           capture_output=True, text=True, cwd=installed["root"], check=True).stdout
    assert where.startswith(str(installed["prefix"]))
    result = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "run" in result.stdout
    # Everything else in the unit is the repository's unit.
    assert installed["unit"].read_text() == UNIT.read_text().replace(f"{DEFAULT_PREFIX}/", f"{installed['prefix']}/")


def test_install_writes_an_example_config_that_checks_and_never_overwrites_one(installed):
    config = installed["confdir"] / "watcher.yaml"
    # `check` also checks the paths the example names (relative to it: shop-api/releases,
    # shop-api/current, the deploy lock's dir), as an operator's host would have them.
    (installed["confdir"] / "shop-api" / "releases" / "r1").mkdir(parents=True, exist_ok=True)
    if not (installed["confdir"] / "shop-api" / "current").is_symlink():
        (installed["confdir"] / "shop-api" / "current").symlink_to("releases/r1")
    result = subprocess.run([str(installed["prefix"] / "bin" / "rollback-watcher"), "check", "--config", str(config)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    config.write_text("# mine\n")
    again = subprocess.run(["sh", str(REPO / "systemd" / "install.sh")], env=installed["env"], capture_output=True,
                           text=True, timeout=240)
    assert again.returncode == 0, again.stderr
    assert config.read_text() == "# mine\n"
    assert "kept the existing" in again.stdout


def test_systemd_analyze_verify_passes_on_the_installed_unit(installed):
    result = subprocess.run([systemd_analyze(), "verify", str(installed["unit"])], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "rollback-watcher.service" not in result.stderr, result.stderr


def test_security_exposure_is_at_most_the_measured_figure():
    result = subprocess.run([systemd_analyze(), "security", "--offline=true", str(UNIT)], capture_output=True,
                            text=True, timeout=60)
    match = re.search(r"Overall exposure level for rollback-watcher\.service: (\d+\.\d+)", result.stdout)
    assert match, result.stdout[-500:] + result.stderr
    assert float(match.group(1)) <= EXPOSURE_LIMIT


def test_unit_is_a_notify_service_with_watchdog_reload_and_a_sandbox():
    text = UNIT.read_text()
    expected = {"Type": "notify", "NotifyAccess": "main", "Restart": "on-failure", "NoNewPrivileges": "true",
                "ProtectSystem": "strict", "ExecReload": "/bin/kill -HUP $MAINPID",
                "EnvironmentFile": "-/etc/rollback-watcher/env", "User": "rollback-watcher",
                "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6", "CapabilityBoundingSet": ""}
    for key, value in expected.items():
        assert unit_values(text, key) == [value], key
    assert "/var/lib/rollback-watcher" in unit_values(text, "ReadWritePaths")[0]
    # The watchdog outlasts one switch without a ping: restart and its fallback, 60 s each.
    assert int(unit_values(text, "WatchdogSec")[0]) > 120
