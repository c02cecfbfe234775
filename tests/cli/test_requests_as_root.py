"""`sudo rollback-watcher pause|mark|resolve ...` against a service that runs as its own user
(systemd/rollback-watcher.service: User=rollback-watcher, state dir 0700): the CLI runs as root,
the service as `nobody` here, through `setpriv` (util-linux), both real processes.

A request file written by root was root-owned 0600: the service could not read it, dropped it
with a warning, and the CLI waited 60 s and then said "queued". The file now belongs to the
inbox's owner, and the running service applies it.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from support import run_cli, wait_for

REPO = Path(__file__).resolve().parents[2]
SERVICE_USER = "nobody"


def _tree_to(path: Path, uid: int, gid: int) -> None:
    for root, dirs, files in os.walk(path):
        for name in [*dirs, *files]:
            os.lchown(os.path.join(root, name), uid, gid)
    os.lchown(path, uid, gid)


@pytest.fixture
def service_host():
    """A symlink host and a state dir owned by SERVICE_USER, outside pytest's tmp dirs (which
    are 0700 root: the service user could not reach its config there)."""
    if os.geteuid() != 0:
        pytest.fail("this test runs the CLI as root (as `sudo rollback-watcher ...` does): run `make test` as root",
                    pytrace=False)
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is missing: apt-get install util-linux"
    user = pwd.getpwnam(SERVICE_USER)
    root = Path(tempfile.mkdtemp(prefix="rw-as-root-"))
    try:
        root.chmod(0o755)
        (root / "releases" / "r1").mkdir(parents=True)
        (root / "current").symlink_to("releases/r1")
        vmstat = root / "vmstat"
        vmstat.write_text("oom_kill 0\n")
        (root / "rules.yaml").write_text(
            f"rules:\n  - name: oom\n    host: oom_kills\n    path: {vmstat}\n    window: 10s\n    above: 0\n"
            "    action: rollback\n")
        state = root / "state"
        state.mkdir(mode=0o700)
        config = root / "watcher.yaml"
        config.write_text(json.dumps({
            "service": "sandbox", "host": "testhost", "interval": "1s", "watch_window": "10m",
            "rules": [str(root / "rules.yaml")], "telemetry": False, "state_dir": str(state),
            "backend": {"type": "symlink", "releases": str(root / "releases"), "current": str(root / "current")},
        }))
        _tree_to(root, user.pw_uid, user.pw_gid)
        yield {"root": root, "config": config, "state": state, "setpriv": setpriv, "user": user}
    finally:
        shutil.rmtree(root, ignore_errors=True)


def as_service_user(h: dict, *argv: str) -> list[str]:
    return [h["setpriv"], f"--reuid={h['user'].pw_uid}", f"--regid={h['user'].pw_gid}", "--clear-groups", "--",
            sys.executable, "-m", "watcher", *argv]


@contextlib.contextmanager
def running_service(h: dict):
    """`rollback-watcher run` as SERVICE_USER, in its own session, until it has journaled its
    start; killed on the way out, also on failure."""
    log_path = h["root"] / "service.log"
    journal = h["state"] / "journal.jsonl"
    starts = journal.read_text().count('"kind": "start"') if journal.exists() else 0
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(as_service_user(h, "run", "--config", str(h["config"])), stdout=log,
                                stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True,
                                env={**os.environ, "HOME": str(h["root"]), "XDG_CACHE_HOME": str(h["root"] / "cache")})
        try:
            wait_for(lambda: proc.poll() is not None
                     or (journal.exists() and journal.read_text().count('"kind": "start"') > starts),
                     timeout=60, what="the service's start")
            assert proc.poll() is None, f"the service exited {proc.returncode}:\n{log_path.read_text()}"
            yield proc
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def root_owned(state: Path) -> list[str]:
    return [str(p) for p in [state, *state.rglob("*")] if p.lstat().st_uid == 0]


def test_pause_as_root_is_applied_by_a_service_running_as_its_own_user(service_host):
    h = service_host
    with running_service(h):
        done = run_cli("pause", "--for", "10m", "--config", h["config"], timeout=120)
    service_log = (h["root"] / "service.log").read_text()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "applied by the running watcher" in done.stdout, done.stdout + service_log
    assert "request skipped" not in service_log
    requests = [json.loads(line) for line in (h["state"] / "journal.jsonl").read_text().splitlines()
                if '"request_done"' in line]
    assert [r["ok"] for r in requests] == [True]
    # Nothing the CLI left in the state dir is root's: the service must read and replace it all.
    assert root_owned(h["state"]) == []


def test_pause_as_root_with_the_service_stopped_leaves_a_state_dir_the_service_starts_on(service_host):
    h = service_host
    # The service ran once: its state.json, journal, lock and inbox are its own.
    with running_service(h):
        pass
    done = run_cli("pause", "--for", "10m", "--config", h["config"], timeout=120)
    assert done.returncode == 0 and "paused until" in done.stdout, done.stdout + done.stderr
    assert root_owned(h["state"]) == []
    with running_service(h):
        status = subprocess.run(as_service_user(h, "status", "--json", "--config", str(h["config"])),
                                capture_output=True, text=True, cwd=REPO, timeout=120)
    assert status.returncode == 0, status.stdout + status.stderr
    assert json.loads(status.stdout)["paused_until"] is not None


def test_a_request_the_service_cannot_read_is_refused_in_the_journal_not_dropped(service_host):
    """A request file the service cannot read (root-owned 0600, as an older CLI left it, or a
    damaged one) was dropped with a log line only: the CLI waiting for its answer waited out
    its 60 s and said "queued". Now the service answers it: request_done, ok false, with why."""
    h = service_host
    with running_service(h):
        inbox = h["state"] / "requests"
        wait_for(inbox.is_dir, timeout=30, what="the service's request inbox")
        (inbox / "1-unreadable.json").write_text(json.dumps({"id": "1-unreadable", "command": "pause", "args": {}}))
        (inbox / "1-unreadable.json").chmod(0o600)  # root's, 0600: the service user cannot open it
        (inbox / "2-damaged.json").write_text("{not json")
        os.chown(inbox / "2-damaged.json", h["user"].pw_uid, h["user"].pw_gid)
        journal = h["state"] / "journal.jsonl"

        def answers():
            events = [json.loads(line) for line in journal.read_text().splitlines() if line.strip()]
            return {e["request"]: e for e in events if e.get("kind") == "request_done"}

        done = wait_for(lambda: len(answers()) >= 2 and answers(), timeout=30, what="both requests answered")
    assert done["1-unreadable"]["ok"] is False and "cannot read the request" in done["1-unreadable"]["result"]
    assert "Permission denied" in done["1-unreadable"]["result"]
    assert done["2-damaged"]["ok"] is False
