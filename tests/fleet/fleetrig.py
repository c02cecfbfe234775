"""A fleet of sandbox hosts for the end-to-end scenarios and the benchmark.

Each FleetHost is one "VM": a symlink release layout, ONE demo app started with
`--settings current/settings.json` (a deploy or a rollback re-points `current`, then SIGHUPs
the app, which re-reads the settings of whatever is current), and `rollback-watcher run` as a
subprocess with a `fleet:` section. All hosts share one Prometheus (scrape 1 s; each host's rule
selects its own app with `instance="127.0.0.1:PORT"`) and one etcd cluster; a fleet name per
scenario keeps scenarios apart in one cluster.

The app's port is chosen before Prometheus starts (its targets are fixed at start): FleetPorts
hands them out.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from support import DemoAppProcess, PrometheusServer, free_port, wait_for

REPO = Path(__file__).resolve().parents[2]

RULES = """\
rules:
  - name: http-5xx-ratio
    query: sum(rate(http_requests_total{code=~"5..",SEL}[$window])) / sum(rate(http_requests_total{SEL}[$window]))
    above: 0.10
    for: FOR
    value_unit: "%"
    action: rollback
"""


class Receiver:
    """One loopback endpoint every host's Apprise `json://` target posts to."""

    def __init__(self) -> None:
        self.messages: list[dict] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = {"message": raw.decode(errors="replace")}
                with receiver._lock:
                    receiver.messages.append(body)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"json://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def titles(self, host: str | None = None) -> list[str]:
        with self._lock:
            titles = [str(m.get("title", "")) for m in self.messages]
        return [t for t in titles if host is None or f"@{host}]" in t]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class FleetHost:
    def __init__(self, root: Path, name: str, port: int, prometheus: PrometheusServer, endpoints: list[str],
                 fleet: str, receiver: Receiver | None = None):
        self.root = root
        self.name = name
        self.port = port
        self.prometheus = prometheus
        self.endpoints = list(endpoints)
        self.fleet = fleet
        self.receiver = receiver
        self.instance = f"127.0.0.1:{port}"
        self.releases = root / "releases"
        self.current = root / "current"
        self.state_dir = root / "state"
        self.releases.mkdir(parents=True)
        self.app: DemoAppProcess | None = None
        self.watcher: subprocess.Popen | None = None
        self.config_path = root / "watcher.yaml"

    # -- the host ------------------------------------------------------------------------------

    def add_release(self, rid: str, **settings: Any) -> None:
        d = self.releases / rid
        d.mkdir(exist_ok=True)
        (d / "settings.json").write_text(json.dumps({"release": rid, **settings}))

    def _point_current(self, rid: str) -> None:
        tmp = self.root / ".current.tmp"
        if tmp.is_symlink():
            tmp.unlink()
        os.symlink(f"releases/{rid}", tmp)
        os.replace(tmp, self.current)

    def start_app(self, first: str) -> None:
        self._point_current(first)
        self.app = DemoAppProcess(self.root / "app", first, settings_file=self.current / "settings.json", port=self.port)
        self.app.start()

    def deploy(self, rid: str) -> float:
        self._point_current(rid)
        self.app.reload()
        return time.time()

    def current_id(self) -> str:
        return Path(os.readlink(self.current)).name

    # -- the watcher ---------------------------------------------------------------------------

    def write_config(self, rule_for: str = "3s", **extra: Any) -> Path:
        rules = RULES.replace("SEL", f'instance="{self.instance}"').replace("FOR", rule_for)
        (self.root / "rules.yaml").write_text(rules)
        cfg: dict[str, Any] = {
            "service": "shop", "host": self.name, "interval": "1s",
            "prometheus": {"url": self.prometheus.url, "timeout": "2s", "scrape_interval": "1s"},
            "rules": ["rules.yaml"], "watch_window": "5m", "min_window": "3s", "max_window": "1m",
            "backend": {"type": "symlink", "releases": str(self.releases), "current": str(self.current),
                        "restart": ["kill", "-HUP", str(self.app.pid)], "restart_timeout": "10s"},
            "verify": {"url": f"{self.app.url}/health", "attempts": 10, "every": "500ms", "timeout": "2s"},
            "notify": [{"url": self.receiver.url, "min_severity": "info"}] if self.receiver else [],
            "state_dir": str(self.state_dir), "telemetry": False,
            "fleet": {"etcd": self.endpoints, "name": self.fleet, "host": self.name, "lease": "3s",
                      "timeout": "1s", "known_good_hosts": 2, "symptom_window": "1m"},
        }
        for key, value in extra.items():
            if isinstance(value, dict) and isinstance(cfg.get(key), dict):
                cfg[key] = {**cfg[key], **value}
            else:
                cfg[key] = value
        self.config_path.write_text(json.dumps(cfg, indent=1))
        return self.config_path

    def start_watcher(self) -> None:
        with open(self.root / "watcher.log", "ab") as log:
            self.watcher = subprocess.Popen([sys.executable, "-m", "watcher", "run", "--config", str(self.config_path)],
                                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=REPO,
                                            start_new_session=True)
        wait_for(lambda: self.events("start"), 60, what=f"{self.name}'s watcher to start")

    def kill_watcher(self) -> None:
        if self.watcher is not None and self.watcher.poll() is None:
            self.watcher.kill()
            self.watcher.wait()

    def stop_watcher(self) -> None:
        if self.watcher is not None and self.watcher.poll() is None:
            self.watcher.terminate()
            try:
                self.watcher.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.watcher.kill()
                self.watcher.wait()

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "watcher", *args, "--config", str(self.config_path)],
                              capture_output=True, text=True, timeout=timeout, cwd=REPO)

    def mark_good(self, rid: str) -> None:
        out = self.cli("mark", "good", rid)
        assert out.returncode == 0, out.stdout + out.stderr
        wait_for(lambda: [e for e in self.events("mark") if e.get("release") == rid], 30, what=f"mark good {rid}")

    def ready(self, first: str = "r1", **config: Any) -> None:
        """App on `first`, watcher running, `first` known-good: a host of a healthy fleet.
        `first` is marked good in the state before the watcher starts, as `mark good` would
        (18 CLI processes at once starve a busy 2-core machine for minutes)."""
        from watcher.model import ReleaseRecord
        from watcher.state import State, StateStore

        self.start_app(first)
        self.write_config(**config)
        store = StateStore(self.state_dir)
        store.ensure_dir()
        store.save(State(releases={first: ReleaseRecord(first, mark="good", reason="marked by the test")}))
        self.start_watcher()

    # -- what happened -------------------------------------------------------------------------

    def journal(self) -> list[dict]:
        path = self.state_dir / "journal.jsonl"
        if not path.exists():
            return []
        out = []
        for line in path.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue  # a line being written
        return out

    def events(self, kind: str, **match: Any) -> list[dict]:
        return [e for e in self.journal() if e["kind"] == kind and all(e.get(k) == v for k, v in match.items())]

    def wait_event(self, kind: str, timeout: float, **match: Any) -> dict:
        return wait_for(lambda: self.events(kind, **match), timeout, what=f"{self.name}: journal {kind} {match}")[0]

    def sent(self, kind: str) -> list[dict]:
        return [e for e in self.events("notify_sent") if e.get("message_kind") == kind]

    def close(self) -> None:
        self.stop_watcher()
        if self.app is not None:
            self.app.stop()


class Fleet:
    """N hosts of one fleet name on one Prometheus and one etcd."""

    def __init__(self, root: Path, name: str, ports: list[int], prometheus: PrometheusServer, endpoints: list[str],
                 receiver: Receiver | None = None):
        self.name = name
        self.hosts = [FleetHost(root / f"h{i}", f"{name}-h{i}", port, prometheus, endpoints, name, receiver)
                      for i, port in enumerate(ports)]

    def __getitem__(self, i: int) -> FleetHost:
        return self.hosts[i]

    def each(self, fn, hosts=None) -> None:
        """fn(host) on every host at once (starting watchers one by one takes N x 2 s)."""
        errors: list[BaseException] = []

        def run(h):
            try:
                fn(h)
            except BaseException as exc:  # noqa: BLE001 - re-raised below in the caller's thread
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(h,)) for h in (hosts or self.hosts)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]

    def close(self) -> None:
        for h in self.hosts:
            h.close()


class FleetPorts:
    """App ports handed out before the shared Prometheus starts (its targets are fixed)."""

    def __init__(self, count: int):
        self.ports = [free_port() for _ in range(count)]
        self._next = 0

    def take(self, n: int) -> list[int]:
        out = self.ports[self._next:self._next + n]
        if len(out) < n:
            raise RuntimeError(f"FleetPorts: {n} more ports asked, {len(self.ports) - self._next} left")
        self._next += n
        return out

    @property
    def targets(self) -> list[str]:
        return [f"127.0.0.1:{p}" for p in self.ports]
