"""A tiny supervisor for a scenario's app, as systemd is for a real one: the `restart` argv of
the scenarios' symlink backend, and what their deploy script runs (tests/decisions,
tests/shipped).

    python appctl.py reload  STAGE_ROOT    SIGHUP the running app (re-reads current/settings.json);
                                           starts it when it is not running (it crashed)
    python appctl.py restart STAGE_ROOT    stop the app and start a new process (counters reset)
    python appctl.py stop    STAGE_ROOT

STAGE_ROOT holds `app.json` written by the scenario, `current`, and the app's pid file
`app.pid`. app.json: `port`, `python`, `cwd`, and optionally `argv` (the app's command, with
{python} {port} {release} {settings} put in; default: the demo app, watcher/demo/app.py) and
`ready` (the path answered once it serves; default /version). A new process is started in its
own session, so that it outlives this command; the scenario's fixture stops whatever pid the
file names at the end (also on failure).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) answers kill(0) too: look at its state.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc/PID/stat, field 22): with
    its pid, the process's identity."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def read_pid(root: Path) -> int | None:
    try:
        return int((root / "app.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _running(root: Path) -> int | None:
    """The pid of the app this file names, if that very process still runs. pid_max is 32768
    here and a test run starts thousands of processes: the pid of an app that crashed long ago
    may be another test's process by now (a stale pid file SIGTERMed a CLI in another worker)."""
    pid = read_pid(root)
    if pid is None or not _alive(pid):
        return None
    try:
        recorded = (root / "app.pid").read_text().split()[1:2]
    except OSError:
        return None
    return pid if not recorded or recorded[0] == _start_time(pid) else None


def stop(root: Path, timeout: float = 10.0) -> None:
    pid = _running(root)
    if pid is None:
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)


def start(root: Path, timeout: float = 15.0) -> int:
    spec = json.loads((root / "app.json").read_text())
    release = Path(os.readlink(root / "current")).name
    log = open(root / "app.log", "ab")
    argv = spec.get("argv") or ["{python}", "-m", "watcher.demo.app", "--port", "{port}", "--release", "{release}",
                                 "--settings", "{settings}"]
    values = {"python": spec["python"], "port": str(spec["port"]), "release": release,
              "settings": str(root / "current" / "settings.json")}
    proc = subprocess.Popen(
        [arg.format(**values) for arg in argv],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=spec["cwd"], start_new_session=True,
    )
    log.close()
    (root / "app.pid").write_text(f"{proc.pid} {_start_time(proc.pid) or ''}\n")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return proc.pid  # a release that crashes at start: the scrape target stays down
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{spec['port']}{spec.get('ready', '/version')}", timeout=1):
                return proc.pid
        except OSError:
            time.sleep(0.05)
    return proc.pid


def reload(root: Path) -> None:
    pid = _running(root)
    if pid is not None:
        os.kill(pid, signal.SIGHUP)
    else:
        start(root)


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("reload", "restart", "stop"):
        print("usage: appctl.py reload|restart|stop STAGE_ROOT", file=sys.stderr)
        return 2
    root = Path(argv[1])
    if argv[0] == "reload":
        reload(root)
    elif argv[0] == "restart":
        stop(root)
        start(root)
    else:
        stop(root)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
