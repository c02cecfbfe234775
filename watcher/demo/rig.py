"""Real processes for the demo, the tests and the benchmarks: a Prometheus and the demo app.

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
        port: int = sock.getsockname()[1]
        return port


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


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class ChildProcess:
    """A child in its own session with its output in a log file; stop() kills its group."""

    def __init__(self, log_path: Path):
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
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
        # trust_env=False here and below: the sandbox is on loopback, never reached through a
        # proxy from the environment (nor a reason to read the environment from a thread).
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=1.0, trust_env=False) as client:
            while True:
                if self.proc is not None and self.proc.poll() is not None:
                    code = self.proc.returncode
                    self.stop()
                    raise SandboxError(f"{what} exited with {code} on start; log {self.log_path}:\n{tail(self.log_path)}")
                try:
                    if client.get(url).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass  # not listening yet
                if time.monotonic() > deadline:
                    self.stop()
                    raise SandboxError(f"{what} not ready after {timeout}s; log {self.log_path}:\n{tail(self.log_path)}")
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


class PrometheusServer(ChildProcess):
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
            response = httpx.post(f"{self.url}/-/reload", timeout=10.0, trust_env=False)
            if response.status_code != 200:
                raise SandboxError(f"prometheus refused the new config: {response.text.strip()}")

    def query(self, promql: str, at: float | None = None) -> list[dict[str, Any]]:
        """An instant query; returns the `result` list ([] for no data). Raises SandboxError
        on a Prometheus error, httpx.HTTPError when it cannot be reached."""
        params = {"query": promql}
        if at is not None:
            params["time"] = str(at)
        response = httpx.get(f"{self.url}/api/v1/query", params=params, timeout=10.0, trust_env=False)
        body = response.json()
        if body.get("status") != "success":
            raise SandboxError(f"query {promql!r} failed: {body.get('error', response.text)}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

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
                raise SandboxError(f"no data for {query!r} after {timeout}s; log {self.log_path}:\n{tail(self.log_path)}")
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


class DemoAppProcess(ChildProcess):
    """`python -m watcher.demo.app` on a free (or given) loopback port.

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
        argv = [self.python, "-m", "watcher.demo.app", "--port", str(self.port), "--release", self.release]
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
        response = httpx.post(f"{self.url}/control", json=settings, timeout=5.0, trust_env=False)
        if response.status_code != 200:
            raise SandboxError(f"demo app refused {settings}: {response.text.strip()}")
        answer: dict[str, Any] = response.json()
        return answer

    def reload(self) -> None:
        """SIGHUP: the app re-reads its settings file (a "deploy" without a restart)."""
        if self.proc is None:
            raise SandboxError("demo app is not running")
        self.proc.send_signal(signal.SIGHUP)

    def __enter__(self) -> DemoAppProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


