"""Real processes for tests, the demo and the benchmarks: a Prometheus and the demo app.

Both run as subprocesses in their own session (process group), so that stop() can kill the
whole group, TERM first, then KILL. Use them as context managers, or call stop() in a
`finally`: atexit alone does not run on SIGKILL and runs too late for a test's tmp dir.

    with DemoAppProcess(workdir, release="r1", settings={"error_ratio": 0.3}) as app, \\
         PrometheusServer(workdir, targets=[app.target]) as prom:
        prom.wait_for_series('up{job="demo"} == 1', timeout=10)
        ...

Stdlib and httpx only: `rollback-watcher demo` uses this module too.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

import httpx

LOOPBACK = "127.0.0.1"
JOB_NAME = "demo"  # the scrape job of PrometheusServer's targets


class SandboxError(RuntimeError):
    """A sandbox process could not be started or did not become ready."""


def free_port() -> int:
    """A TCP port free on the loopback right now (another process may take it before use)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used, from /proc/PID/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # The command name may hold spaces and parentheses: fields count from the last ')'.
    after_name = stat[stat.rindex(")") + 2 :].split()
    utime, stime = int(after_name[11]), int(after_name[12])  # fields 14 and 15 of stat(5)
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def _duration(seconds: float) -> str:
    """Prometheus' duration format; it refuses "1.5s"."""
    return f"{max(1, round(seconds * 1000))}ms"


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class _Process:
    """A child in its own session with its output in a log file; stop() kills its group."""

    def __init__(self, log_path: Path):
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _spawn(self, argv: list[str]) -> None:
        # Append: a restart keeps the log of the earlier run for post-mortems.
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def _wait_ready(self, what: str, url: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=1.0) as client:
            while True:
                if self.proc is not None and self.proc.poll() is not None:
                    code = self.proc.returncode
                    self.stop()
                    raise SandboxError(f"{what} exited with {code} on start; log {self.log_path}:\n{_tail(self.log_path)}")
                try:
                    if client.get(url).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass  # not listening yet
                if time.monotonic() > deadline:
                    self.stop()
                    raise SandboxError(f"{what} not ready after {timeout}s; log {self.log_path}:\n{_tail(self.log_path)}")
                time.sleep(0.05)

    def stop(self, grace: float = 5.0) -> None:
        """TERM the process group, KILL it after `grace` seconds. Safe to call twice."""
        proc, self.proc = self.proc, None
        if proc is not None:
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
            # KILL the group even after a clean exit: anything the leader started must go too.
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass  # the whole group is gone already


class PrometheusServer(_Process):
    """The real `prometheus` binary on a free loopback port, with its config and TSDB in
    `workdir`. restart() keeps port and storage; set_targets() reloads the config live.

    `targets` ("host:port") form one scrape job, "demo". `extra_config` is merged over the
    generated config's top-level keys (a key given there replaces the generated one whole).

    Ready in ~0.1 s, but the first scrape comes ~5-6 s later, and a set_targets() takes as
    long: Prometheus hands new targets to its scrapers on a 5 s tick (no flag for it in 2.42).
    A target it already knows (even while down) is scraped within one interval of coming up,
    so start Prometheus first with the app's port, and wait for `up == 1` before measuring.
    """

    def __init__(
        self,
        workdir: Path,
        targets: list[str],
        scrape_interval: float = 1.0,
        evaluation_interval: float = 1.0,
        rule_files: list[Path] | tuple[Path, ...] = (),
        extra_config: dict[str, Any] | None = None,
        binary: str = "prometheus",
    ):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        super().__init__(self.workdir / "prometheus.log")
        self.binary = binary
        self.targets = list(targets)
        self.scrape_interval = scrape_interval
        self.evaluation_interval = evaluation_interval
        self.rule_files = [Path(p) for p in rule_files]
        self.extra_config = dict(extra_config or {})
        self.config_path = self.workdir / "prometheus.yml"
        self.storage = self.workdir / "data"
        self.port = free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"

    def config(self) -> dict[str, Any]:
        """The config as a dict; written as JSON, which Prometheus' YAML parser accepts."""
        interval = _duration(self.scrape_interval)
        config: dict[str, Any] = {
            "global": {
                "scrape_interval": interval,
                # The default (10s) is longer than a short interval, which Prometheus refuses.
                "scrape_timeout": _duration(min(self.scrape_interval, 10.0)),
                "evaluation_interval": _duration(self.evaluation_interval),
            },
            "scrape_configs": [{"job_name": JOB_NAME, "static_configs": [{"targets": self.targets}]}],
        }
        if self.rule_files:
            config["rule_files"] = [str(p) for p in self.rule_files]
        config.update(self.extra_config)
        return config

    def _write_config(self) -> None:
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.config(), indent=2))
        tmp.replace(self.config_path)  # a reload must never read half a file

    def argv(self) -> list[str]:
        return [
            self.binary,
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.storage}",
            f"--web.listen-address={LOOPBACK}:{self.port}",
            "--web.enable-lifecycle",  # for POST /-/reload in set_targets()
            "--log.level=warn",
        ]

    def start(self, timeout: float = 20.0) -> PrometheusServer:
        if self.running():
            return self
        path = shutil.which(self.binary)
        if path is None:
            raise SandboxError(
                f"the {self.binary!r} binary is not on PATH: run `make test` (it installs the "
                "Debian prometheus package) or `apt-get install prometheus`"
            )
        self.binary = path
        self._write_config()
        self._spawn(self.argv())
        self._wait_ready("prometheus", f"{self.url}/-/ready", timeout)
        return self

    def restart(self, timeout: float = 20.0) -> PrometheusServer:
        """Stop, then start on the same port with the same TSDB: data scraped before survives
        (the WAL is replayed), the gap in between has no samples."""
        self.stop()
        return self.start(timeout)

    def set_targets(self, targets: list[str]) -> None:
        self.targets = list(targets)
        self._write_config()
        if self.running():
            response = httpx.post(f"{self.url}/-/reload", timeout=10.0)
            if response.status_code != 200:
                raise SandboxError(f"prometheus refused the new config: {response.text.strip()}")

    def query(self, promql: str, at: float | None = None) -> list[dict[str, Any]]:
        """An instant query; returns the `result` list ([] for no data). Raises SandboxError
        on a Prometheus error, httpx.HTTPError when it cannot be reached."""
        params = {"query": promql}
        if at is not None:
            params["time"] = str(at)
        response = httpx.get(f"{self.url}/api/v1/query", params=params, timeout=10.0)
        body = response.json()
        if body.get("status") != "success":
            raise SandboxError(f"query {promql!r} failed: {body.get('error', response.text)}")
        return body["data"]["result"]

    def wait_for_series(self, query: str, timeout: float = 15.0, interval: float = 0.25) -> list[dict[str, Any]]:
        """Poll until the instant query returns data; returns that data."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                result = self.query(query)
            except httpx.HTTPError:
                result = []  # restarting: keep polling
            if result:
                return result
            if time.monotonic() > deadline:
                raise SandboxError(f"no data for {query!r} after {timeout}s; log {self.log_path}:\n{_tail(self.log_path)}")
            time.sleep(interval)

    def value(self, query: str) -> float | None:
        """The single value of a query that returns one series, or None for no data."""
        result = self.query(query)
        if not result:
            return None
        if len(result) > 1:
            raise SandboxError(f"{query!r} returned {len(result)} series, expected one")
        return float(result[0]["value"][1])

    def __enter__(self) -> PrometheusServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class DemoAppProcess(_Process):
    """`python -m watcher.demoapp` on a free (or given) loopback port.

    `settings` is written to `workdir/demoapp-RELEASE-PORT.json` and passed as --settings; give
    `settings_file` instead to use an existing file (e.g. one inside a release dir). The port
    may be given so that a "new release" is started on the port Prometheus already scrapes.
    """

    def __init__(
        self,
        workdir: Path,
        release: str = "r1",
        settings: dict[str, Any] | None = None,
        settings_file: Path | None = None,
        port: int | None = None,
        python: str = sys.executable,
    ):
        if settings is not None and settings_file is not None:
            raise ValueError("give settings or settings_file, not both")
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.release = release
        self.port = port if port is not None else free_port()
        super().__init__(self.workdir / f"demoapp-{release}-{self.port}.log")
        self.settings_file = settings_file
        if settings is not None:
            self.settings_file = self.workdir / f"demoapp-{release}-{self.port}.json"
            self.settings_file.write_text(json.dumps(settings))
        self.python = python
        self.url = f"http://{LOOPBACK}:{self.port}"
        self.target = f"{LOOPBACK}:{self.port}"  # for PrometheusServer(targets=[...])

    def argv(self) -> list[str]:
        argv = [self.python, "-m", "watcher.demoapp", "--port", str(self.port), "--release", self.release]
        if self.settings_file is not None:
            argv += ["--settings", str(self.settings_file)]
        # If the test run is SIGKILLed, no stop() runs: the app then notices and exits.
        return argv + ["--exit-with-parent"]

    def start(self, timeout: float = 10.0) -> DemoAppProcess:
        if not self.running():
            self._spawn(self.argv())
            # /version, not /health: a bad release may be told to fail or hang its health.
            self._wait_ready(f"demo app {self.release}", f"{self.url}/version", timeout)
        return self

    def control(self, **settings: Any) -> dict[str, Any]:
        """Change settings live; returns the app's settings after the change."""
        response = httpx.post(f"{self.url}/control", json=settings, timeout=5.0)
        if response.status_code != 200:
            raise SandboxError(f"demo app refused {settings}: {response.text.strip()}")
        return response.json()

    def reload(self) -> None:
        """SIGHUP: the app re-reads its settings file (a "deploy" without a restart)."""
        if self.proc is None:
            raise SandboxError("demo app is not running")
        self.proc.send_signal(signal.SIGHUP)

    def __enter__(self) -> DemoAppProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class NginxServer(_Process):
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

    def start(self, expect_body: str | None = None, timeout: float = 10.0) -> "NginxServer":
        """Start nginx; wait until `/` answers (with `expect_body`, when given)."""
        self._write_config()
        self._spawn([*self.argv, "-g", "daemon off;"])
        if expect_body is None:
            self._wait_ready("nginx", self.url + "/", timeout)
        elif self.wait_for_body(expect_body, timeout) != expect_body:
            self.stop()
            raise SandboxError(f"nginx did not serve {expect_body!r} within {timeout}s:\n{_tail(self.error_log)}")
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

    def __enter__(self) -> "NginxServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ---------------------------------------------------------------------------------------------
# A sandbox symlink host and the watcher as a subprocess: shared by the service, fault and e2e
# tests and the benchmarks, so that each does not grow its own copy.


class SymlinkHost:
    """releases/<id>/ dirs and a `current` symlink (the Capistrano layout), and, with
    `serve=True`, a real /health endpoint on 127.0.0.1 whose status comes from the current
    release's `health_status` file: switching the link is what changes the answer."""

    def __init__(self, root: Path, releases: tuple[str, ...] = (), serve: bool = True):
        from http.server import ThreadingHTTPServer

        self.root = Path(root)
        self.releases = self.root / "releases"
        self.current = self.root / "current"
        self.state_dir = self.root / "state"
        self.releases.mkdir(parents=True, exist_ok=True)
        for rid in releases:
            self.add_release(rid)
        self._server = None
        if serve:
            import threading

            self._server = ThreadingHTTPServer((LOOPBACK, 0), self._handler())
            self._server.daemon_threads = True
            threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def port(self) -> int:
        return self._server.server_address[1]

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
        tmp = self.root / ".current.tmp"
        if tmp.is_symlink():
            tmp.unlink()
        os.symlink(f"releases/{rid}", tmp)
        os.replace(tmp, self.current)

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
            self._server.shutdown()
            self._server.server_close()
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
    """`rollback-watcher run` as a subprocess in its own session, its output kept in a file."""

    def __init__(self, config: Path, log: Path, env: dict | None = None, cwd: Path | None = None):
        self.log = Path(log)
        full_env = dict(os.environ)
        full_env.update(env or {})
        self._fh = open(self.log, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "watcher", "run", "--config", str(config)],
                                     stdout=self._fh, stderr=subprocess.STDOUT, env=full_env, cwd=cwd,
                                     start_new_session=True)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

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
    """Poll `predicate` until it returns something true; fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
