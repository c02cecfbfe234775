"""The e2e harness (fixtures are in conftest.py). End to end: a real Prometheus (scrape 1 s), the demo app, a sandbox symlink host and the
watcher as a subprocess (`python -m watcher run`), with a loopback ntfy receiver.

How a scenario runs (`Stage`):

    releases/<id>/settings.json    the demo app's settings for that release (error ratio, ...)
    current -> releases/<id>       the symlink the watcher's symlink backend reads and switches
    demo app                       ONE process started with --settings current/settings.json;
                                   a deploy (and a rollback) re-points `current`, then SIGHUPs
                                   it, so it re-reads the settings of whatever is current.
                                   The backend's `restart` argv is that same `kill -HUP PID`.

So the watcher sees a real deploy (the symlink changes), real metrics change, and a rollback
really changes what the app does.

Scenarios are slow by nature (pre-deploy data for baselines, a 10 s `for`, observation time
for the "does not roll back" cases), so they run concurrently: each test is marked
`@pytest.mark.scenario(NAME)`, and the session fixture `scenarios` starts every selected
scenario at once in its own thread, against one shared Prometheus whose targets (one port per
scenario) are known from the start. A test then waits for its own scenario's outcome and
asserts on it. Rules select their own app with `instance="127.0.0.1:PORT"`.

Measured onset -> verified-rollback times are kept in pytest's cache (`e2e/timings`) and printed
at the end of the run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import traceback
from concurrent.futures import Future
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

from support import DemoAppProcess, PrometheusServer, free_port

REPO = Path(__file__).resolve().parents[2]
SCENARIO_TIMEOUT = 200.0  # seconds for one scenario, start to outcome; they take ~40-90 s
MAX_PORTS = 24

# The default rule table (rules/default.yaml) with e2e durations (`for: 10s` instead of 2m), a
# 30 s baseline window (the good release runs ~25 s first), the demo app's OOM counter in place
# of node_exporter's, each query narrowed to this scenario's app, and no cpu-saturation rule
# (a notify-only rule on node_exporter metrics that the sandbox has not).
RULES = """\
rules:
  - name: http-5xx-ratio
    query: sum(rate(http_requests_total{code=~"5..",SEL}[$window])) / sum(rate(http_requests_total{SEL}[$window]))
    above: 0.10
    for: 10s
    value_unit: "%"
    action: rollback
  - name: p95-latency-regression
    query: histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket{SEL}[$window])))
    above_baseline: 5
    floor: 0.2
    baseline_window: 30s
    for: 10s
    value_unit: s
    action: rollback
  - name: oom-kills
    # growth since the deploy (or, while a rollback is confirmed, since the switch): a fixed
    # [5m] would keep firing on the restored release for five minutes after the rollback
    query: increase(demo_oom_kills_total{SEL}[$window])
    above: 0
    action: rollback
  - name: health-endpoint
    http: HEALTH_URL
    expect_status: 200
    timeout: 2s
    failures: 3
    action: rollback
"""


# ---------------------------------------------------------------------------------------------
# A loopback ntfy receiver (the ntfy publish API as Apprise's ntfy plugin speaks it)


class NtfyReceiver:
    """Records every message Apprise's ntfy plugin POSTs (JSON: topic, title, message, priority)."""

    def __init__(self) -> None:
        self.messages: list[dict] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    body = json.loads(raw) if raw else {}
                except ValueError:
                    body = {"message": raw.decode(errors="replace")}
                body["received_at"] = time.time()
                body["x-priority"] = self.headers.get("X-Priority")
                with receiver._lock:
                    receiver.messages.append(body)
                reply = json.dumps({"id": f"m{len(receiver.messages)}", "time": int(time.time()),
                                    "event": "message", "topic": body.get("topic", "")}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            do_PUT = do_POST

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"ntfy://127.0.0.1:{self.server.server_address[1]}/e2e"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def titles(self) -> list[str]:
        with self._lock:
            return [str(m.get("title", "")) for m in self.messages]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class ScriptedHealth:
    """A health endpoint that answers probe after probe from a fixed cycle of statuses
    (e.g. 503, 503, 200): the only way to get "two failures and a success" exactly, whatever
    the machine's speed."""

    def __init__(self, cycle: list[int]):
        self.cycle = cycle
        self.answered: list[int] = []
        host = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                status = host.cycle[len(host.answered) % len(host.cycle)]
                host.answered.append(status)
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/health"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# ---------------------------------------------------------------------------------------------
# One scenario's world


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, every: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


class Stage:
    """A sandbox symlink host with one demo app, a rule table, a receiver and the watcher."""

    def __init__(self, root: Path, port: int, prometheus: PrometheusServer):
        self.root = root
        self.port = port
        self.prometheus = prometheus
        self.instance = f"127.0.0.1:{port}"
        self.releases = root / "releases"
        self.current = root / "current"
        self.state_dir = root / "state"
        self.releases.mkdir(parents=True)
        self.app: DemoAppProcess | None = None
        self.receiver = NtfyReceiver()
        self.watcher: subprocess.Popen | None = None
        self.config_path = root / "watcher.yaml"
        self._closers: list[Callable[[], None]] = [self.receiver.close]
        self.notes: dict[str, Any] = {}

    # -- the host ------------------------------------------------------------------------------

    def add_release(self, rid: str, **settings: Any) -> Path:
        d = self.releases / rid
        d.mkdir(exist_ok=True)
        (d / "settings.json").write_text(json.dumps({"release": rid, **settings}))
        return d

    def _point_current(self, rid: str) -> None:
        tmp = self.root / ".current.tmp"
        if tmp.is_symlink():
            tmp.unlink()
        os.symlink(f"releases/{rid}", tmp)
        os.replace(tmp, self.current)

    def start_app(self, first: str) -> DemoAppProcess:
        self._point_current(first)
        self.app = DemoAppProcess(self.root / "app", first, settings_file=self.current / "settings.json",
                                  port=self.port)
        self._closers.append(self.app.stop)
        return self.app.start()

    def deploy(self, rid: str) -> float:
        """What a deploy script does: re-point `current`, reload the app. Returns the onset."""
        self._point_current(rid)
        assert self.app is not None
        self.app.reload()
        return time.time()

    def current_id(self) -> str:
        return Path(os.readlink(self.current)).name

    # -- the watcher ---------------------------------------------------------------------------

    def write_config(self, health_url: str | None = None, prometheus_url: str | None = None, **extra: Any) -> Path:
        assert self.app is not None
        rules = RULES.replace("SEL", f'instance="{self.instance}"').replace("HEALTH_URL", health_url or f"{self.app.url}/health")
        (self.root / "rules.yaml").write_text(rules)
        cfg: dict[str, Any] = {
            "service": "shop",
            "host": "e2e",
            "interval": "1s",
            "prometheus": {"url": prometheus_url or self.prometheus.url, "timeout": "2s", "scrape_interval": "1s"},
            "rules": ["rules.yaml"],
            "watch_window": "5m",
            "min_window": "3s",
            "max_window": "1m",
            "backend": {"type": "symlink", "releases": str(self.releases), "current": str(self.current),
                        "restart": ["kill", "-HUP", str(self.app.pid)], "restart_timeout": "10s"},
            "verify": {"url": f"{self.app.url}/health", "attempts": 10, "every": "500ms", "timeout": "2s"},
            "notify": [{"url": self.receiver.url, "min_severity": "info"}],
            "state_dir": str(self.state_dir),
            "telemetry": False,
        }
        cfg.update(extra)
        self.config_path.write_text(json.dumps(cfg, indent=1))
        return self.config_path

    def start_watcher(self) -> None:
        log = open(self.root / "watcher.log", "ab")
        self.watcher = subprocess.Popen([sys.executable, "-m", "watcher", "run", "--config", str(self.config_path)],
                                        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=REPO,
                                        start_new_session=True)
        log.close()
        self._closers.append(self.stop_watcher)
        wait_for(lambda: self.events("start"), 60, "the watcher to start")

    def stop_watcher(self) -> None:
        if self.watcher is not None and self.watcher.poll() is None:
            self.watcher.terminate()
            try:
                self.watcher.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.watcher.kill()
                self.watcher.wait()

    def cli(self, *args: str, timeout: float = 90) -> subprocess.CompletedProcess:
        result = subprocess.run([sys.executable, "-m", "watcher", *args, "--config", str(self.config_path)],
                                capture_output=True, text=True, timeout=timeout, cwd=REPO)
        assert result.returncode == 0, f"{args} exited {result.returncode}: {result.stdout}{result.stderr}"
        return result

    def mark_good(self, rid: str) -> None:
        """What a pipeline (or a human) does for the release that was there before the watcher."""
        self.cli("mark", "good", rid)
        wait_for(lambda: [e for e in self.events("mark") if e.get("release") == rid], 30, f"mark good {rid}")

    # -- what happened -------------------------------------------------------------------------

    def journal(self) -> list[dict]:
        path = self.state_dir / "journal.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def events(self, kind: str, **match: Any) -> list[dict]:
        return [e for e in self.journal() if e["kind"] == kind and all(e.get(k) == v for k, v in match.items())]

    def state(self) -> dict:
        return json.loads((self.state_dir / "state.json").read_text())

    def wait_event(self, kind: str, timeout: float, **match: Any) -> dict:
        return wait_for(lambda: self.events(kind, **match), timeout, f"journal {kind} {match or ''}")[0]

    def wait_title(self, text: str, timeout: float = 30) -> str:
        return wait_for(lambda: [t for t in self.receiver.titles() if text in t], timeout, f"a message {text!r}")[0]

    def wait_series(self, seconds_of_data: int, timeout: float = 90) -> None:
        """Until Prometheus holds `seconds_of_data` samples of this app (baselines need them)."""
        query = f'count_over_time(up{{instance="{self.instance}"}}[2m]) >= {seconds_of_data}'
        self.prometheus.wait_for_series(query, timeout=timeout)

    def watch_quietly(self, seconds: float, onset: float) -> None:
        """Observe until `seconds` after the onset AND until the watcher has finished a tick
        after that (state.json is rewritten every tick): a stalled watcher proves nothing."""
        deadline = onset + seconds
        state = self.state_dir / "state.json"
        wait_for(lambda: time.time() >= deadline and state.stat().st_mtime >= deadline, seconds + 60,
                 f"a tick {seconds:.0f}s after the onset", every=0.5)

    def close(self) -> None:
        for close in reversed(self._closers):
            try:
                close()
            except Exception:  # noqa: BLE001 - cleanup goes on
                traceback.print_exc()


@dataclass
class Outcome:
    stage: Stage | None
    onset: float | None = None
    timings: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)

    @property
    def journal(self) -> list[dict]:
        return self.stage.journal()

    def kinds(self) -> list[str]:
        return [e["kind"] for e in self.journal]

    def titles(self) -> list[str]:
        return self.stage.receiver.titles()

    def incidents(self) -> list[dict]:
        return self.stage.events("incident")


# ---------------------------------------------------------------------------------------------
# The runner: every selected scenario at once


SCENARIOS: dict[str, Callable[..., Outcome]] = {}


def scenario(name: str):
    """Register `fn(lab) -> Outcome` as scenario NAME (tests mark themselves with it)."""

    def register(fn):
        SCENARIOS[name] = fn
        return fn

    return register


class Lab:
    def __init__(self, workdir: Path, prometheus_bin: str):
        self.workdir = workdir
        self.prometheus_bin = prometheus_bin
        self.ports = [free_port() for _ in range(MAX_PORTS)]
        self.prometheus = PrometheusServer(workdir / "prometheus", [f"127.0.0.1:{p}" for p in self.ports],
                                           binary=prometheus_bin)
        self._lock = threading.Lock()
        self._next = 0
        self.stages: list[Stage] = []
        self.extra_closers: list[Callable[[], None]] = []

    def stage(self, name: str, own_prometheus: bool = False) -> Stage:
        with self._lock:
            port = self.ports[self._next]
            self._next += 1
        prom = self.prometheus
        if own_prometheus:
            prom = PrometheusServer(self.workdir / f"prometheus-{name}", [f"127.0.0.1:{port}"],
                                    binary=self.prometheus_bin)
            self.extra_closers.append(prom.stop)
            prom.start()
        st = Stage(self.workdir / name, port, prom)
        self.stages.append(st)
        return st


class Runner:
    def __init__(self, lab: Lab, names: list[str]):
        self.lab = lab
        self.futures: dict[str, Future] = {}
        for name in names:
            fut: Future = Future()
            self.futures[name] = fut
            threading.Thread(target=self._run, args=(name, fut), name=f"scenario-{name}", daemon=True).start()

    def _run(self, name: str, fut: Future) -> None:
        try:
            fut.set_result(SCENARIOS[name](self.lab))
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            fut.set_exception(exc)

    def result(self, name: str) -> Outcome:
        if name not in self.futures:
            raise AssertionError(f"scenario {name!r} was not started (not selected?)")
        return self.futures[name].result(timeout=SCENARIO_TIMEOUT)
