"""examples/bash/deploy.sh, the very file, deploying to a sandbox symlink host watched by
`rollback-watcher run` (a subprocess) with a real HTTP health probe: the release's
`health_status` file is what the host's /health answers while it is current (SymlinkHost)."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

from support import SymlinkHost, WatcherProcess, run_cli, wait_for

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "bash" / "deploy.sh"

RULES = """
rules:
  - name: health-endpoint
    http: HEALTH_URL
    failures: 3
    action: rollback
"""


def _source(tmp_path: Path, version: str, health: int) -> Path:
    src = tmp_path / "build" / version
    src.mkdir(parents=True)
    (src / "VERSION").write_text(f"{version}\n")
    (src / "health_status").write_text(f"{health}\n")
    return src


def _deploy(env: dict, release: str, src: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), release, str(src)], env={**os.environ, **env}, capture_output=True,
                          text=True, timeout=120)


def test_bash_deploy_of_a_bad_release_is_rolled_back_and_a_busy_lock_switches_nothing(tmp_path):
    host = SymlinkHost(tmp_path / "srv")
    lock = tmp_path / "lock" / "deploy.lock"
    lock.parent.mkdir()
    config = host.write_config(RULES, deploy_lock=str(lock))
    env = {"DEPLOY_TO": str(host.root), "DEPLOY_LOCK": str(lock), "LOCK_WAIT": "60",
           "WATCHER_BIN": str(Path(sys.executable).parent / "rollback-watcher"), "WATCHER_CONFIG": str(config)}
    watcher = None
    try:
        first = _deploy(env, "v1", _source(tmp_path, "v1", 200))
        assert first.returncode == 0, first.stderr
        assert host.current_id() == "v1" and not (host.root / "current").readlink().is_absolute()
        run_cli("mark", "good", "v1", "--config", config, check=True)
        watcher = WatcherProcess(config, tmp_path / "watcher.log")
        wait_for(lambda: "start" in host.kinds(), timeout=60, what="the watcher to start")

        bad = _deploy(env, "v2", _source(tmp_path, "v2", 503))
        assert bad.returncode == 0, bad.stderr
        done = wait_for(lambda: [e for e in host.journal() if e["kind"] in ("rollback_verified", "verify_failed",
                                                                              "rollback_failed")],
                        timeout=120, what="the watcher to roll v2 back")
        assert (done[0]["kind"], done[0]["release"], done[0]["target"]) == ("rollback_verified", "v2", "v1")
        assert host.current_id() == "v1"

        # A deploy while the lock is held (here by the test, as the watcher holds it while it
        # switches) gives up after LOCK_WAIT with 75 and leaves `current` alone.
        fd = os.open(lock, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            blocked = _deploy({**env, "LOCK_WAIT": "1"}, "v3", _source(tmp_path, "v3", 200))
        finally:
            os.close(fd)
        assert blocked.returncode == 75, (blocked.returncode, blocked.stderr)
        assert "nothing switched" in blocked.stderr
        assert host.current_id() == "v1"
    finally:
        if watcher is not None:
            watcher.stop()
        host.close()
