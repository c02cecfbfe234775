"""Apps and exporters the project did not build, as real processes for the tests (issue 21):
what a user's host exports, instrumented the usual way, so that the shipped rule packs
(rules/packs/) are tried against the real thing.

    PythonApp     tests/support/lazyapp.py: the real prometheus_client, lazy labels
    GoApp         tests/support/goapp/main.go: client_golang + promhttp, built offline from
                  Debian's golang-go and golang-github-prometheus-client-golang-dev, once per
                  source version into a cache directory shared by every test process
    NodeApp       tests/support/nodeapp/app.js: Express + express-prom-bundle on prom-client, the
                  versions tests/support/nodeapp/package.json pins (`make deps` runs `npm ci`)
    HAProxy       Debian's haproxy in front of an app, its built-in Prometheus exporter on the
                  frontend's /metrics
    NodeExporter  Debian's prometheus-node-exporter with the vmstat collector, reading a procfs
                  directory the test writes (`node_vmstat_oom_kill` without killing anything on
                  a machine other test runs share): the process boundary is the only fake

Every rig takes its port from support/ports.py, starts in its own session (ChildProcess: stop()
kills the group), and records `start_s`, the seconds from spawn to its first good answer.
The apps are controlled live (control(), crash()) and send their own traffic (`rps`).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from support.ports import LOOPBACK, free_port
from watcher.demo.rig import ChildProcess, SandboxError

HERE = Path(__file__).resolve().parent
GO_SOURCE = HERE / "goapp" / "main.go"
GO_CACHE = Path(tempfile.gettempdir()) / "rollback-watcher-goapp"
GOPATH = "/usr/share/gocode"  # where Debian's golang-*-dev packages put their source
NODE_APP = HERE / "nodeapp"


class _App(ChildProcess):
    """What the two apps share: a port, a log, start with a readiness wait, live control."""

    what = "app"

    def __init__(self, workdir: Path, release: str = "r1", port: int | None = None, **settings: Any):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.release = release
        self.port = port or free_port()
        super().__init__(self.workdir / f"{self.what}-{release}-{self.port}.log")
        self.settings = {"release": release, **settings}
        self.url = f"http://{LOOPBACK}:{self.port}"
        self.target = f"{LOOPBACK}:{self.port}"  # the scrape target, and its `instance` label
        self.start_s: float | None = None

    def argv(self) -> list[str]:
        raise NotImplementedError

    def start(self, timeout: float = 20.0):
        if not self.running():
            began = time.monotonic()
            self._spawn(self.argv())
            self._wait_ready(f"{self.what} {self.release}", f"{self.url}/-/control", timeout)
            self.start_s = time.monotonic() - began
            if self.settings:
                self.control(**self.settings)
        return self

    def control(self, **settings: Any) -> dict[str, Any]:
        """Change settings now (error_ratio, latency_s, rps, traffic_url, ...); returns them all."""
        response = httpx.post(f"{self.url}/-/control", json=settings, timeout=5.0, trust_env=False)
        if response.status_code != 200:
            raise SandboxError(f"{self.what} refused {settings}: {response.text.strip()}")
        self.settings.update(settings)
        return response.json()

    def crash(self, timeout: float = 5.0) -> int:
        """The process exits (status 3), as a crashing release does; returns its exit status."""
        try:
            httpx.post(f"{self.url}/-/crash", timeout=2.0, trust_env=False)
        except httpx.HTTPError:
            pass  # it may die before the answer is read
        assert self.proc is not None
        return self.proc.wait(timeout)

    def get(self, path: str = "/") -> httpx.Response:
        return httpx.get(f"{self.url}{path}", timeout=5.0, trust_env=False)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class PythonApp(_App):
    """tests/support/lazyapp.py (see its docstring for the settings). `settings` go to a JSON
    file read at start, so that a restarted process keeps them (its rate, its error share)."""

    what = "pyapp"

    def __init__(self, workdir: Path, release: str = "r1", port: int | None = None, python: str = sys.executable,
                 **settings: Any):
        super().__init__(workdir, release, port, **settings)
        self.python = python
        self.settings_file = self.workdir / f"pyapp-{release}-{self.port}.json"
        self.settings_file.write_text(json.dumps(self.settings))

    def argv(self) -> list[str]:
        return [self.python, str(HERE / "lazyapp.py"), "--port", str(self.port), "--release", self.release,
                "--settings", str(self.settings_file), "--exit-with-parent"]

    def control(self, **settings: Any) -> dict[str, Any]:
        answer = super().control(**settings)
        self.settings_file.write_text(json.dumps(self.settings))
        return answer


def go_app_binary(timeout: float = 300.0) -> Path:
    """The Go app, built once per version of its source (and of Go) into GO_CACHE; concurrent
    test processes wait for the one that builds (flock). GOPATH mode, offline: the imports come
    from Debian's packages under /usr/share/gocode."""
    go = shutil.which("go")
    if go is None:
        raise SandboxError("`go` is not installed: run `make deps` (it installs golang-go and "
                           "golang-github-prometheus-client-golang-dev)")
    if not Path(GOPATH, "src/github.com/prometheus/client_golang/prometheus/promhttp").is_dir():
        raise SandboxError("client_golang's source is missing: apt-get install golang-github-prometheus-client-golang-dev")
    version = subprocess.run([go, "version"], capture_output=True, text=True, timeout=30).stdout
    key = hashlib.sha256(GO_SOURCE.read_bytes() + version.encode()).hexdigest()[:16]
    GO_CACHE.mkdir(mode=0o1777, parents=True, exist_ok=True)
    binary = GO_CACHE / f"goapp-{key}"
    with open(GO_CACHE / "build.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not binary.exists():
            env = {**os.environ, "GO111MODULE": "off", "GOPATH": GOPATH, "GOCACHE": str(GO_CACHE / "gocache"),
                   "GOFLAGS": "", "CGO_ENABLED": "0"}
            tmp = binary.with_suffix(".tmp")
            result = subprocess.run([go, "build", "-o", str(tmp), str(GO_SOURCE)], capture_output=True, text=True,
                                    env=env, timeout=timeout)
            if result.returncode != 0:
                raise SandboxError(f"go build of {GO_SOURCE} failed:\n{result.stdout}{result.stderr}")
            tmp.replace(binary)  # another process sees the binary whole or not at all
    return binary


class GoApp(_App):
    """tests/support/goapp/main.go (client_golang + promhttp); settings as PythonApp's, by
    control() only (a restarted process starts from the flags: healthy, no traffic)."""

    what = "goapp"

    def argv(self) -> list[str]:
        return [str(go_app_binary()), "-port", str(self.port), "-release", self.release]


class NodeApp(_App):
    """tests/support/nodeapp/app.js (express-prom-bundle on prom-client, see its header for the
    settings, the same as PythonApp's, kept in a JSON file read at start and on SIGHUP).
    `default_metrics`: also prom-client's collectDefaultMetrics (nodejs_version_info, ...)."""

    what = "nodeapp"

    def __init__(self, workdir: Path, release: str = "r1", port: int | None = None, default_metrics: bool = False,
                 **settings: Any):
        super().__init__(workdir, release, port, **settings)
        self.default_metrics = default_metrics
        self.settings_file = self.workdir / f"{self.what}-{release}-{self.port}.json"
        self.settings_file.write_text(json.dumps(self.settings))

    def argv(self) -> list[str]:
        node = shutil.which("node") or shutil.which("nodejs")
        if node is None:
            raise SandboxError("`node` is not installed: run `make deps` (it installs nodejs and npm)")
        if not (NODE_APP / "node_modules" / "express-prom-bundle").is_dir():
            raise SandboxError(f"{NODE_APP}/node_modules is missing: run `make deps` (npm ci there)")
        return [node, str(NODE_APP / "app.js"), "--port", str(self.port), "--release", self.release,
                "--settings", str(self.settings_file), "--exit-with-parent",
                *(["--default-metrics"] if self.default_metrics else [])]

    def control(self, **settings: Any) -> dict[str, Any]:
        answer = super().control(**settings)
        self.settings_file.write_text(json.dumps(self.settings))
        return answer


class HAProxy(ChildProcess):
    """Debian's haproxy: a frontend on `port` that sends `/` to `backend` ("host:port", checked
    with GET /health every second) and answers `/metrics` with its built-in Prometheus exporter.
    The proxies are named "web" (frontend) and "app" (backend), the server "app1"."""

    def __init__(self, workdir: Path, backend: str, port: int | None = None, binary: str = "haproxy"):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        super().__init__(self.workdir / f"haproxy-{self.port}.log")
        self.backend = backend
        self.binary = binary
        self.config = self.workdir / f"haproxy-{self.port}.cfg"
        self.url = f"http://{LOOPBACK}:{self.port}"
        self.target = f"{LOOPBACK}:{self.port}"
        self.start_s: float | None = None

    def _write_config(self) -> None:
        self.config.write_text(f"""global
    maxconn 256
defaults
    mode http
    timeout connect 1s
    timeout client 5s
    timeout server 5s
frontend web
    bind {LOOPBACK}:{self.port}
    http-request use-service prometheus-exporter if {{ path /metrics }}
    default_backend app
backend app
    option httpchk GET /health
    server app1 {self.backend} check inter 1s fall 2 rise 1
""")

    def start(self, timeout: float = 20.0) -> HAProxy:
        path = shutil.which(self.binary) or (f"/usr/sbin/{self.binary}" if Path(f"/usr/sbin/{self.binary}").exists() else None)
        if path is None:
            raise SandboxError("haproxy is not installed: run `make deps`")
        self._write_config()
        began = time.monotonic()
        self._spawn([path, "-f", str(self.config), "-db"])  # -db: foreground, no daemon
        self._wait_ready("haproxy", f"{self.url}/metrics", timeout)
        self.start_s = time.monotonic() - began
        return self

    def __enter__(self) -> HAProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class NodeExporter(ChildProcess):
    """Debian's prometheus-node-exporter, only its vmstat collector, reading `proc/vmstat` under
    `workdir` (--path.procfs): set_oom_kills(n) is what the kernel's counter would say."""

    def __init__(self, workdir: Path, port: int | None = None, binary: str = "prometheus-node-exporter"):
        self.workdir = Path(workdir)
        self.procfs = self.workdir / "proc"
        self.procfs.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        super().__init__(self.workdir / f"node-exporter-{self.port}.log")
        self.binary = binary
        self.url = f"http://{LOOPBACK}:{self.port}"
        self.target = f"{LOOPBACK}:{self.port}"
        self.start_s: float | None = None
        self.set_oom_kills(0)

    def set_oom_kills(self, count: int) -> None:
        tmp = self.procfs / "vmstat.tmp"
        tmp.write_text(f"nr_free_pages 100000\npgfault 1000\noom_kill {count}\n")
        tmp.replace(self.procfs / "vmstat")

    def start(self, timeout: float = 20.0) -> NodeExporter:
        path = shutil.which(self.binary)
        if path is None:
            raise SandboxError("prometheus-node-exporter is not installed: run `make deps`")
        began = time.monotonic()
        self._spawn([path, f"--web.listen-address={LOOPBACK}:{self.port}", "--collector.disable-defaults",
                     "--collector.vmstat", f"--path.procfs={self.procfs}"])
        self._wait_ready("node_exporter", f"{self.url}/metrics", timeout)
        self.start_s = time.monotonic() - began
        return self

    def __enter__(self) -> NodeExporter:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
