"""A sandbox symlink host for service tests: real release dirs, a real `current` symlink, and a
real HTTP health endpoint on 127.0.0.1 whose answer comes from the current release's files,
so that switching the link is what changes the answer (no restart needed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


class SymlinkHost:
    def __init__(self, root: Path):
        self.root = root
        self.releases = root / "releases"
        self.current = root / "current"
        self.state_dir = root / "state"
        self.releases.mkdir(parents=True)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/health"

    def _handler(self):
        host = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                try:
                    status = int((host.current / "health_status").read_text().strip())
                except (OSError, ValueError):
                    status = 503
                body = os.readlink(host.current).encode() if host.current.is_symlink() else b"none"
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        return Handler

    def add_release(self, rid: str, health: int = 200) -> Path:
        d = self.releases / rid
        d.mkdir()
        (d / "health_status").write_text(f"{health}\n")
        return d

    def deploy(self, rid: str) -> None:
        """What a deploy script does: point `current` at the release, atomically."""
        tmp = self.root / ".current.tmp"
        if tmp.is_symlink():
            tmp.unlink()
        os.symlink(f"releases/{rid}", tmp)
        os.replace(tmp, self.current)

    def current_id(self) -> str:
        return Path(os.readlink(self.current)).name

    def write_config(self, rules: str, **extra) -> Path:
        rules_file = self.root / "rules.yaml"
        rules_file.write_text(rules.replace("HEALTH_URL", self.health_url))
        cfg = {
            "service": "sandbox",
            "host": "testhost",
            "interval": "1s",
            "rules": [str(rules_file)],
            "watch_window": "10m",
            "backend": {"type": "symlink", "releases": str(self.releases), "current": str(self.current)},
            "verify": {"url": self.health_url, "attempts": 5, "every": "200ms"},
            "state_dir": str(self.state_dir),
            "telemetry": False,
        }
        cfg.update(extra)
        path = self.root / "watcher.yaml"
        path.write_text(json.dumps(cfg))  # JSON is YAML
        return path

    def journal(self) -> list[dict]:
        path = self.state_dir / "journal.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def kinds(self) -> list[str]:
        return [e["kind"] for e in self.journal()]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def symlink_host(tmp_path):
    host = SymlinkHost(tmp_path / "host")
    yield host
    host.close()


def cli(*args, env=None, timeout=60, check=False) -> subprocess.CompletedProcess:
    """Run the real console entry point in a subprocess."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    result = subprocess.run([sys.executable, "-m", "watcher", *map(str, args)], capture_output=True, text=True,
                            timeout=timeout, env=full_env, cwd=REPO)
    if check and result.returncode != 0:
        raise AssertionError(f"rollback-watcher {' '.join(map(str, args))} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


class WatcherProcess:
    """`rollback-watcher run` as a subprocess, its output kept in a file."""

    def __init__(self, config: Path, log: Path, env: dict | None = None):
        self.log = log
        full_env = dict(os.environ)
        full_env.update(env or {})
        self._fh = open(log, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "watcher", "run", "--config", str(config)],
                                     stdout=self._fh, stderr=subprocess.STDOUT, env=full_env, cwd=REPO,
                                     start_new_session=True)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, sig=15, timeout=30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._fh.close()
        return self.proc.returncode


@pytest.fixture
def start_watcher(tmp_path):
    procs = []

    def start(config: Path, env: dict | None = None) -> WatcherProcess:
        w = WatcherProcess(config, tmp_path / f"watcher-{len(procs)}.log", env)
        procs.append(w)
        return w

    yield start
    for w in procs:
        w.stop(sig=9)


def wait_for(predicate, timeout: float = 30.0, every: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
