"""Test rigs beside the demo rig (watcher/demo/rig.py): nginx, a sandbox symlink host, the watcher
as a subprocess and the CLI. Tests, the fault suite and the benchmarks share them from here."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from support.ports import free_port
from support.receiver import LoopbackServer
from watcher.demo.rig import LOOPBACK, ChildProcess, SandboxError, tail


class NginxServer(ChildProcess):
    """The real Debian nginx on a loopback port, proxying `/` to the upstream that
    `upstream_file` names (the blue-green backend rewrites that include). Everything lives in
    `workdir`; `argv` is the prefix the backend appends `-t` or `-s reload` to."""

    def __init__(self, workdir: Path, upstream_file: Path, port: int | None = None, binary: str = "/usr/sbin/nginx"):
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        super().__init__(self.dir / "nginx.out")
        if not Path(binary).exists():
            raise SandboxError(f"{binary} is not installed: run `make test`, which installs nginx-light")
        self.upstream_file = Path(upstream_file)
        self.port = port or free_port()
        self.conf = self.dir / "nginx.conf"
        self.pid_file = self.dir / "nginx.pid"
        self.error_log = self.dir / "error.log"
        self.argv = (binary, "-p", str(self.dir), "-c", str(self.conf), "-e", str(self.error_log))

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def _write_config(self) -> None:
        temp = self.dir / "temp"
        temp.mkdir(exist_ok=True)
        # As root, nginx would run workers as `nobody`, who cannot use temp dirs under workdir.
        user = "user root;\n" if os.geteuid() == 0 else ""
        self.conf.write_text(
            f"""{user}worker_processes 1;
pid {self.pid_file};
error_log {self.error_log};
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    upstream app {{ include {self.upstream_file}; }}
    server {{
        listen {LOOPBACK}:{self.port};
        location / {{ proxy_pass http://app; }}
    }}
}}
"""
        )

    def start(self, expect_body: str | None = None, timeout: float = 10.0) -> NginxServer:
        """Start nginx; wait until `/` answers (with `expect_body`, when given)."""
        self._write_config()
        self._spawn([*self.argv, "-g", "daemon off;"])
        if expect_body is None:
            self._wait_ready("nginx", self.url + "/", timeout)
        elif self.wait_for_body(expect_body, timeout) != expect_body:
            self.stop()
            raise SandboxError(f"nginx did not serve {expect_body!r} within {timeout}s:\n{tail(self.error_log)}")
        return self

    def get(self, path: str = "/") -> httpx.Response:
        return httpx.get(f"{self.url}{path}", timeout=2, trust_env=False)

    def wait_for_body(self, body: str, timeout: float = 5.0) -> str:
        """nginx reloads asynchronously: poll until the new workers answer `body`."""
        deadline = time.monotonic() + timeout
        seen = ""
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                return f"nginx exited with {self.proc.returncode}"
            try:
                seen = self.get().text
            except httpx.HTTPError as e:
                seen = repr(e)
            if seen == body:
                return seen
            time.sleep(0.02)
        return seen

    def __enter__(self) -> NginxServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ---------------------------------------------------------------------------------------------
# A sandbox symlink host and the watcher as a subprocess: shared by the service, fault and e2e
# tests and the benchmarks, so that each does not grow its own copy.


def point_current(current: Path, rid: str) -> None:
    """Re-point `current` at releases/RID atomically (a new link renamed over it), as a deploy
    script does: a reader never sees it missing."""
    tmp = current.parent / ".current.tmp"
    if tmp.is_symlink():
        tmp.unlink()
    os.symlink(f"releases/{rid}", tmp)
    os.replace(tmp, current)


# The fault suites' rule tables for a SymlinkHost (write_config fills HEALTH_URL in): one rollback
# rule probing the host's /health, and one on PromQL `up` (which breaches while the target is up).
HEALTH_PROBE_RULES = """
rules:
  - name: health
    http: HEALTH_URL
    timeout: 1s
    action: rollback
"""
UP_BREACH_RULES = """
rules:
  - name: up-breach
    query: up
    above: 0.5
    action: rollback
"""


class SymlinkHost:
    """releases/<id>/ dirs and a `current` symlink (the Capistrano layout), and, with
    `serve=True`, a real /health endpoint on 127.0.0.1 whose status comes from the current
    release's `health_status` file: switching the link is what changes the answer."""

    def __init__(self, root: Path, releases: tuple[str, ...] = (), serve: bool = True):
        self.root = Path(root)
        self.releases = self.root / "releases"
        self.current = self.root / "current"
        self.state_dir = self.root / "state"
        self.releases.mkdir(parents=True, exist_ok=True)
        for rid in releases:
            self.add_release(rid)
        self._server = LoopbackServer(self._handler()) if serve else None

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def health_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/health"

    def _handler(self):
        from http.server import BaseHTTPRequestHandler

        host = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                try:
                    status = int((host.current / "health_status").read_text().strip())
                except (OSError, ValueError):
                    status = 503
                body = os.readlink(host.current).encode() if host.current.is_symlink() else b"none"
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except BrokenPipeError:
                    pass  # the probe gave up first

            def log_message(self, *args):
                pass

        return Handler

    def add_release(self, rid: str, health: int = 200) -> Path:
        d = self.releases / rid
        d.mkdir(exist_ok=True)
        (d / "health_status").write_text(f"{health}\n")
        return d

    def deploy(self, rid: str) -> None:
        """What a deploy script does: point `current` at the release, atomically."""
        point_current(self.current, rid)

    def current_id(self) -> str:
        return Path(os.readlink(self.current)).name

    def write_config(self, rules: str, **extra: Any) -> Path:
        """A watcher.yaml for this host with `rules` (HEALTH_URL is filled in), interval 1s."""
        rules_file = self.root / "rules.yaml"
        rules_file.write_text(rules.replace("HEALTH_URL", self.health_url if self._server else ""))
        cfg = {
            "service": "sandbox",
            "host": "testhost",
            "interval": "1s",
            "rules": [str(rules_file)],
            "watch_window": "10m",
            "backend": {"type": "symlink", "releases": str(self.releases), "current": str(self.current)},
            "state_dir": str(self.state_dir),
            "telemetry": False,
        }
        if self._server:
            cfg["verify"] = {"url": self.health_url, "attempts": 5, "every": "200ms"}
        cfg.update(extra)
        path = self.root / "watcher.yaml"
        path.write_text(json.dumps(cfg))  # JSON is YAML
        return path

    def journal(self) -> list[dict]:
        """The journal's events; a line being written (or damaged) is passed over."""
        path = self.state_dir / "journal.jsonl"
        if not path.exists():
            return []
        events = []
        for line in path.read_text(errors="replace").splitlines():
            try:
                events.append(json.loads(line))
            except ValueError:
                continue
        return events

    def kinds(self) -> list[str]:
        return [e["kind"] for e in self.journal()]

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None


def run_cli(*args: Any, env: dict | None = None, timeout: float = 60, check: bool = False,
            cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The real console entry point (`python -m watcher ...`) in a subprocess."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    result = subprocess.run([sys.executable, "-m", "watcher", *map(str, args)], capture_output=True, text=True,
                            timeout=timeout, env=full_env, cwd=cwd)
    if check and result.returncode != 0:
        raise SandboxError(f"rollback-watcher {' '.join(map(str, args))} exited {result.returncode}:\n"
                           f"{result.stdout}\n{result.stderr}")
    return result


class WatcherProcess:
    """`rollback-watcher run` as a subprocess in its own session, its output kept in a file
    (appended to: a watcher started again on the same log keeps the earlier run's lines)."""

    def __init__(self, config: Path, log: Path, env: dict | None = None, cwd: Path | None = None):
        self.log = Path(log)
        full_env = dict(os.environ)
        full_env.update(env or {})
        self._fh = open(self.log, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "watcher", "run", "--config", str(config)],
                                     stdout=self._fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=full_env, cwd=cwd, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    def poll(self) -> int | None:
        return self.proc.poll()

    def send_signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> int:
        """SIGKILL: no shutdown code runs (what a crash or the OOM killer does)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._fh.close()
        return self.proc.returncode

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._fh.close()
        return self.proc.returncode


def wait_for(predicate, timeout: float = 30.0, every: float = 0.1, what: str = "condition"):
    """Poll `predicate` until it returns something true, and return that; fail with `what` when
    it is still false at a check made after `timeout` (the last check comes after the deadline,
    so a slow predicate gets its full time)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)
