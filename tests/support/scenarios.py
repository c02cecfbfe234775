"""What the three scenario rigs share (tests/e2e/harness.py, tests/decisions/lab.py,
tests/fleet/fleetrig.py): one sandbox host per scenario, the watcher on it as a subprocess, a
port pool fixed before the shared Prometheus starts, and a runner that starts every selected
scenario at once, each in its own thread.

    ScenarioHost    releases/<id>/settings.json, `current` -> releases/<id>, ONE demo app that
                    reads current/settings.json (a deploy, and the backend's `restart`, re-point
                    `current` and SIGHUP it), a watcher.yaml, `rollback-watcher run`, its CLI,
                    and readers of its journal and state.json. A rig subclasses it for its app,
                    its rule table and its config.
    PortPool        the apps' ports, handed out before Prometheus starts (its targets are
                    fixed at start), taken from support/ports.py (no race with other processes)
    ScenarioRunner  every selected scenario at once; result(name) waits for one; a finished
                    scenario's watcher and app are stopped (ScenarioHost.settle)
    Outcome         what a scenario ends in: its host, the onset of the fault, timings, data
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from support.ports import LOOPBACK, free_ports
from support.rigs import WatcherProcess, point_current, run_cli, wait_for
from support.sandbox import DemoAppProcess, PrometheusServer

REPO = Path(__file__).resolve().parents[2]


class ScenarioHost:
    """One scenario's sandbox host on the shared Prometheus (see the module docstring). Its
    rules select its own app with `instance="127.0.0.1:PORT"`."""

    # How long the waits below give, on 2 cores shared with other test runs; a rig may differ.
    WATCHER_START_S = 60.0
    MARK_S = 30.0
    TITLE_S = 30.0
    SERIES_S = 90.0
    TICK_SLACK_S = 60.0  # beyond the observed span, for the tick that proves the watcher looked
    WATCHER_STOP_S = 20.0

    def __init__(self, root: Path, port: int, prometheus: PrometheusServer, receiver=None, name: str | None = None):
        self.root = root
        self.name = name or root.name
        self.port = port
        self.prometheus = prometheus
        self.receiver = receiver
        self.instance = f"{LOOPBACK}:{port}"
        self.releases = root / "releases"
        self.current = root / "current"
        self.state_dir = root / "state"
        self.config_path = root / "watcher.yaml"
        self.releases.mkdir(parents=True)
        self.app: Any = None
        self.watcher: WatcherProcess | None = None
        self._closers: list[Callable[[], None]] = []
        self.watcher_exit: int | None = None
        self.serving: dict = {}

    def on_close(self, close: Callable[[], None]) -> None:
        self._closers.append(close)

    # -- the host ------------------------------------------------------------------------------

    def add_release(self, rid: str, age_s: float | None = None, **settings: Any) -> Path:
        """releases/RID with the demo app's settings; `age_s` puts its mtime (its creation, to
        a backend that orders by it) that many seconds in the past."""
        d = self.releases / rid
        d.mkdir(exist_ok=True)
        (d / "settings.json").write_text(json.dumps({"release": rid, **settings}))
        if age_s is not None:
            t = time.time() - age_s
            os.utime(d, (t, t))
        return d

    def point_current(self, rid: str) -> None:
        point_current(self.current, rid)

    def start_app(self, first: str) -> DemoAppProcess:
        self.point_current(first)
        self.app = DemoAppProcess(self.root / "app", first, settings_file=self.current / "settings.json",
                                  port=self.port)
        self.on_close(self.app.stop)
        return self.app.start()

    def deploy(self, rid: str) -> float:
        """What a deploy script does: re-point `current`, reload the app. Returns the onset."""
        self.point_current(rid)
        self.app.reload()
        return time.time()

    def current_id(self) -> str:
        return Path(os.readlink(self.current)).name

    def health_url(self) -> str:
        return f"http://{self.instance}/health"

    # -- the watcher ---------------------------------------------------------------------------

    def restart_argv(self) -> list[str]:
        """The symlink backend's `restart`: what makes the app run the release `current` names."""
        return ["kill", "-HUP", str(self.app.pid)]

    def base_config(self, host: str, prometheus_timeout: str = "2s", restart_timeout: str = "10s",
                    min_window: str | None = "3s") -> dict[str, Any]:
        """The watcher.yaml every rig starts from: interval 1 s, the shared Prometheus (scrape
        1 s), rules.yaml, the symlink backend, verification by the app's /health, this host's
        receiver at every severity."""
        cfg: dict[str, Any] = {
            "service": "shop",
            "host": host,
            "interval": "1s",
            "prometheus": {"url": self.prometheus.url, "timeout": prometheus_timeout, "scrape_interval": "1s"},
            "rules": ["rules.yaml"],
            "watch_window": "5m",
            "max_window": "1m",
            "backend": {"type": "symlink", "releases": str(self.releases), "current": str(self.current),
                        "restart": self.restart_argv(), "restart_timeout": restart_timeout},
            "verify": {"url": self.health_url(), "attempts": 10, "every": "500ms", "timeout": "2s"},
            "notify": [{"url": self.receiver.url, "min_severity": "info"}] if self.receiver else [],
            "state_dir": str(self.state_dir),
            "telemetry": False,
        }
        if min_window is not None:
            cfg["min_window"] = min_window
        return cfg

    def write_files(self, rules: str, config: dict[str, Any]) -> Path:
        """rules.yaml and watcher.yaml (JSON is YAML)."""
        (self.root / "rules.yaml").write_text(rules)
        self.config_path.write_text(json.dumps(config, indent=1))
        return self.config_path

    def env(self) -> dict[str, str]:
        """Environment additions for the watcher and its CLI (none here)."""
        return {}

    def start_watcher(self, wait: bool = True) -> None:
        self.watcher = WatcherProcess(self.config_path, self.root / "watcher.log", env=self.env(), cwd=REPO)
        self.on_close(self.stop_watcher)
        if wait:
            wait_for(lambda: self.events("start") or self.watcher.poll() is not None, self.WATCHER_START_S,
                     every=0.2, what=f"{self.name}'s watcher to start")
            assert self.watcher.poll() is None, f"the watcher exited {self.watcher.returncode}:\n{self.log()}"

    def stop_watcher(self) -> None:
        if self.watcher is not None:
            self.watcher.stop(timeout=self.WATCHER_STOP_S)

    def kill_watcher(self) -> None:
        if self.watcher is not None:
            self.watcher.kill()

    def log(self) -> str:
        path = self.root / "watcher.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def cli(self, *args: str, timeout: float = 90, check: bool = True) -> subprocess.CompletedProcess:
        """`rollback-watcher ARGS --config watcher.yaml`; with `check`, it must exit 0."""
        result = run_cli(*args, "--config", self.config_path, env=self.env(), timeout=timeout, cwd=REPO)
        if check:
            assert result.returncode == 0, f"{args} exited {result.returncode}: {result.stdout}{result.stderr}"
        return result

    def mark_good(self, rid: str) -> None:
        """What a pipeline (or a human) does for the release that was there before the watcher."""
        self.cli("mark", "good", rid)
        wait_for(lambda: [e for e in self.events("mark") if e.get("release") == rid], self.MARK_S, every=0.2,
                 what=f"{self.name}: mark good {rid}")

    # -- what happened -------------------------------------------------------------------------

    def journal(self) -> list[dict]:
        """The journal's events. Only an unterminated last line is passed over (being written):
        any other line that is not JSON fails the reader, it would be a defect."""
        path = self.state_dir / "journal.jsonl"
        if not path.exists():
            return []
        text = path.read_text(errors="replace")
        lines = text.split("\n")
        events = [json.loads(line) for line in lines[:-1] if line.strip()]
        if lines[-1].strip():
            try:
                events.append(json.loads(lines[-1]))
            except ValueError:
                pass  # the watcher is writing it
        return events

    def events(self, kind: str, **match: Any) -> list[dict]:
        return [e for e in self.journal() if e["kind"] == kind and all(e.get(k) == v for k, v in match.items())]

    def state(self) -> dict:
        return json.loads((self.state_dir / "state.json").read_text())

    def mark_of(self, rid: str) -> str | None:
        return self.state().get("releases", {}).get(rid, {}).get("mark")

    def wait_event(self, kind: str, timeout: float, **match: Any) -> dict:
        return wait_for(lambda: self.events(kind, **match), timeout, every=0.2,
                        what=f"{self.name}: journal {kind} {match or ''}")[0]

    def wait_title(self, text: str, timeout: float | None = None) -> str:
        return wait_for(lambda: [t for t in self.receiver.titles() if text in t], timeout or self.TITLE_S,
                        every=0.2, what=f"a message {text!r}")[0]

    def wait_series(self, seconds_of_data: int, timeout: float | None = None) -> None:
        """Until Prometheus holds `seconds_of_data` samples of this app (baselines need them).
        Successful scrapes are counted (sum of `up`): the shared Prometheus scrapes every port
        of the pool from its start, so `up` has samples (0) long before the app exists, and a
        count of them let a scenario deploy with 2 s of the app's data (crash-metrics-vanish
        then had no baseline: the crash's stale markers erased the little there was)."""
        query = f'sum_over_time(up{{instance="{self.instance}"}}[2m]) >= {seconds_of_data}'
        self.prometheus.wait_for_series(query, timeout=timeout or self.SERIES_S)

    def watch_quietly(self, seconds: float, since: float | None = None) -> None:
        """Observe until `seconds` after `since` (default now) AND until the watcher finished a
        tick after that (state.json is rewritten every tick; its mtime is real time even under
        libfaketime): a stalled watcher proves nothing."""
        deadline = (since or time.time()) + seconds
        state = self.state_dir / "state.json"
        wait_for(lambda: time.time() >= deadline and state.stat().st_mtime >= deadline,
                 seconds + self.TICK_SLACK_S, every=0.5, what=f"a tick {seconds:.0f}s on")

    def settle(self) -> None:
        """The scenario is over (ScenarioRunner calls this): its watcher and app stop, so that
        they do not tick beside the scenarios still running (26 finished decision scenarios
        kept most of a core busy). The files, journal, state and receiver stay for the test;
        `watcher_exit` is what the watcher's poll() said before it was stopped (None: running),
        `serving` what the app said of itself then (its /control answer: release, settings)."""
        self.watcher_exit = self.watcher.poll() if self.watcher is not None else None
        self.stop_watcher()
        if self.app is not None:
            try:
                self.serving = self.app.control()
            except Exception:  # noqa: BLE001 - an app that is down serves nothing
                self.serving = {}
            self.app.stop()

    def close(self) -> None:
        for close in reversed(self._closers):
            try:
                close()
            except Exception:  # noqa: BLE001 - cleanup goes on
                traceback.print_exc()


@dataclass
class Outcome:
    stage: Any  # the scenario's ScenarioHost, or None for a scenario without one
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


class PortPool:
    """The apps' ports of a scenario suite, reserved before the shared Prometheus starts (its
    scrape targets are fixed at start; a target it knows is scraped within one interval of the
    app coming up), and handed out to scenarios from many threads."""

    def __init__(self, count: int):
        self.ports = free_ports(count)
        self._next = 0
        self._lock = threading.Lock()

    def take(self, n: int = 1) -> list[int]:
        with self._lock:
            out = self.ports[self._next:self._next + n]
            if len(out) < n:
                raise RuntimeError(f"PortPool: {n} more ports asked, {len(self.ports) - self._next} left")
            self._next += n
        return out

    @property
    def targets(self) -> list[str]:
        return [f"{LOOPBACK}:{p}" for p in self.ports]


class ScenarioRegistry(dict):
    """name -> scenario function; `@registry.register(NAME)` adds one."""

    def register(self, name: str):
        def add(fn):
            self[name] = fn
            return fn

        return add


def selected_scenarios(items: Iterable[Any], marker: str) -> list[str]:
    """The scenario names the collected tests ask for with @pytest.mark.MARKER(NAME), in order."""
    wanted: list[str] = []
    for item in items:
        mark = item.get_closest_marker(marker)
        if mark is not None and mark.args[0] not in wanted:
            wanted.append(mark.args[0])
    return wanted


# Scenarios running at once, per runner. Each is a watcher ticking every second plus an app;
# fourteen at once on 2 cores (beside three other test workers) starved the apps' traffic and
# the watchers' ticks for seconds, and the scenarios then measured the machine, not the product.
AT_ONCE = 8


class ScenarioRunner:
    """The named scenarios, each `scenarios[name](arg)` in its own thread, at most AT_ONCE at a
    time: a suite costs about as long as its slowest scenarios, not the sum. result(name) waits
    for one."""

    def __init__(self, scenarios: dict[str, Callable[[Any], Any]], names: list[str], arg: Any, timeout: float):
        self.timeout = timeout
        self.futures: dict[str, Future] = {}
        self.seconds: dict[str, float] = {}  # wall time of each scenario, for a summary
        self._slots = threading.BoundedSemaphore(AT_ONCE)
        for name in names:
            fut: Future = Future()
            self.futures[name] = fut
            threading.Thread(target=self._run, args=(scenarios[name], arg, name, fut), name=f"scenario-{name}",
                             daemon=True).start()

    def _run(self, fn: Callable[[Any], Any], arg: Any, name: str, fut: Future) -> None:
        with self._slots:
            started = time.monotonic()
            try:
                result = fn(arg)
                stage = getattr(result, "stage", None)
                if hasattr(stage, "settle"):
                    stage.settle()
            except BaseException as exc:  # noqa: BLE001 - handed to the test
                self.seconds[name] = time.monotonic() - started
                fut.set_exception(exc)
            else:
                self.seconds[name] = time.monotonic() - started
                fut.set_result(result)

    def result(self, name: str) -> Any:
        if name not in self.futures:
            raise AssertionError(f"scenario {name!r} was not started (not selected?)")
        return self.futures[name].result(timeout=self.timeout)

    def wait_all(self) -> None:
        """Until every scenario has finished (before its hosts are torn down); what went wrong
        in one is reported by its own test."""
        for fut in self.futures.values():
            try:
                fut.result(timeout=self.timeout)
            except BaseException:  # noqa: BLE001 - reported by the scenario's test
                pass
