"""The shipped rule table against an app the project did not build (issue 21's must-show).

What a new user has: a Python app on the real `prometheus_client`, instrumented the usual way
(tests/support/lazyapp.py: `http_requests_total{method,code}` and a latency histogram whose
series appear on their first use: no 5xx series while healthy, no series at all in a fresh
process until its first request), its own traffic at 1 request per second, no node_exporter,
and a Prometheus that scrapes other targets too (every stage's app, here). And the SHIPPED
rules/default.yaml, unedited but for the port of its health URL (`http://127.0.0.1:8000/health`
is the one line a user edits per host), with only documented settings in watcher.yaml: paths,
ports, `prometheus.labels: {instance: ...}` (this host's target on the shared Prometheus; the
decision lab narrows selectors by hand instead), `interval`, `watch_window`, the symlink
backend, `verify`, `deploy_lock`. The rules keep their shipped `for` (2m for the 5xx ratio, 1m
for target-down), so the scenarios last minutes; they run concurrently (support/scenarios.py).

    ShippedLab   one real Prometheus (scrape 1 s) over a pool of ports, the stages
    AppHost      a sandbox symlink host whose app is the lazy-label app under support/appctl.py
                 (a deploy restarts the process, as real deploys do; the watcher's `restart`
                 re-reads `current` with SIGHUP, or starts the app when it is gone)
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import yaml

from support import (
    REPO,
    NotificationReceiver,
    Outcome,
    PortPool,
    PrometheusServer,
    ScenarioHost,
    ScenarioRegistry,
    ScenarioRunner,
    appctl,
    wait_for,
)

SCENARIO_TIMEOUT = 480.0  # start to outcome, on 2 shared cores; they take ~1-4 min
MAX_PORTS = 13
LAZYAPP = REPO / "tests" / "support" / "lazyapp.py"
SHIPPED_HEALTH_URL = "http://127.0.0.1:8000/health"
TRAFFIC = {"rps": 1}  # the app's own clients: 1 request per second
# What every release's settings file says unless it says otherwise. The app re-reads the file on
# SIGHUP (the watcher's `restart` here) as changes to its settings: a release's file states
# them all, so that r1 reloaded after r2 is r1 whole (not r1 with r2's error ratio).
RELEASE_BASE = {"error_ratio": 0.0, "latency_s": 0.002, "rps": 0, "health_status": 200, "warmup_s": 0.0}


def shipped_rules(health_url: str, drop: tuple[str, ...] = ()) -> str:
    """rules/default.yaml as shipped, with this host's port in its health URL; `drop` removes
    whole rules (a host whose app has no health endpoint)."""
    text = (REPO / "rules" / "default.yaml").read_text()
    assert SHIPPED_HEALTH_URL in text, "the shipped health URL changed: update this rig"
    text = text.replace(SHIPPED_HEALTH_URL, health_url)
    if drop:
        doc = yaml.safe_load(text)
        doc["rules"] = [r for r in doc["rules"] if r["name"] not in drop]
        text = json.dumps(doc, indent=1)
    return text


class AppHost(ScenarioHost):
    """One scenario's host: releases with the lazy app's settings, the app supervised by
    support/appctl.py, the watcher on the shipped table."""

    WATCHER_START_S = 90.0
    MARK_S = 60.0
    SERIES_S = 120.0
    TICK_SLACK_S = 90.0
    WATCHER_STOP_S = 30.0

    def __init__(self, root: Path, port: int, prometheus: PrometheusServer, slots: threading.Semaphore):
        super().__init__(root, port, prometheus, NotificationReceiver())
        self.slots = slots
        self.lock = root / "deploy.lock"
        self.url = f"http://{self.instance}"
        self.on_close(self.receiver.close)
        self.on_close(lambda: self.ctl("stop"))
        (root / "app.json").write_text(json.dumps({
            "port": port, "python": sys.executable, "cwd": str(REPO), "ready": "/-/control",
            "argv": ["{python}", str(LAZYAPP), "--port", "{port}", "--release", "{release}", "--settings", "{settings}"],
        }))

    def ctl(self, what: str) -> None:
        subprocess.run(self.ctl_argv(what), check=True, timeout=60, cwd=REPO)

    def ctl_argv(self, what: str) -> list[str]:
        return [sys.executable, appctl.__file__, what, str(self.root)]

    def restart_argv(self) -> list[str]:
        return self.ctl_argv("reload")

    def start_app(self, first: str) -> None:  # type: ignore[override]
        self.point_current(first)
        self.ctl("restart")

    def control(self, **settings: Any) -> dict:
        """Change the running app's settings (not its release's file): e.g. its traffic."""
        response = httpx.post(f"{self.url}/-/control", json=settings, timeout=5.0, trust_env=False)
        response.raise_for_status()
        return response.json()

    def deploy(self, rid: str) -> float:  # type: ignore[override]
        """What a deploy script does, as README asks: under the deploy lock, re-point `current`
        and restart the app (a new process: its labelled series start empty)."""
        fd = os.open(self.lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self.point_current(rid)
            self.ctl("restart")
        finally:
            os.close(fd)
        return time.time()

    def write_config(self, watch_window: str = "5m", drop: tuple[str, ...] = ()) -> Path:
        cfg = self.base_config("web-1", prometheus_timeout="5s", restart_timeout="30s", min_window=None)
        cfg["prometheus"]["labels"] = {"instance": self.instance}
        cfg["watch_window"] = watch_window
        cfg["deploy_lock"] = str(self.lock)
        return self.write_files(shipped_rules(self.health_url(), drop), cfg)

    def settle(self) -> None:
        self.watcher_exit = self.watcher.poll() if self.watcher is not None else None
        self.stop_watcher()
        try:
            self.serving = httpx.get(f"{self.url}/-/control", timeout=2.0, trust_env=False).json()
        except (httpx.HTTPError, ValueError):
            self.serving = {}  # an app that is down serves nothing
        self.ctl("stop")


SHIPPED = ScenarioRegistry()
scenario = SHIPPED.register


class ShippedLab:
    SETUPS_AT_ONCE = 3  # a watcher, an app and a CLI call at a time: most of a scenario's CPU

    def __init__(self, workdir: Path, prometheus_bin: str):
        self.workdir = workdir
        self.setup_slots = threading.Semaphore(self.SETUPS_AT_ONCE)
        self.ports = PortPool(MAX_PORTS)
        self.prometheus = PrometheusServer(workdir / "prometheus", self.ports.targets, binary=prometheus_bin)
        self.stages: list[AppHost] = []
        self._lock = threading.Lock()

    def stage(self, name: str) -> AppHost:
        [port] = self.ports.take(1)
        st = AppHost(self.workdir / name, port, self.prometheus, self.setup_slots)
        with self._lock:
            self.stages.append(st)
        return st

    def close(self) -> None:
        for st in self.stages:
            st.close()
        self.prometheus.stop()


def runner(lab: ShippedLab, names: list[str]) -> ScenarioRunner:
    return ScenarioRunner(SHIPPED, names, lab, SCENARIO_TIMEOUT)


def prepare(lab: ShippedLab, name: str, releases: dict[str, dict], watch_window: str = "5m",
            drop: tuple[str, ...] = (), ready: Callable[[AppHost], Any] | None = None) -> AppHost:
    """A host with `releases` (the lazy app's settings), r1 running (then `ready(host)`) and
    marked known-good (as a pipeline does before the watcher is installed), the watcher
    watching, and 10 s of r1's requests in Prometheus (the baselines' data, and what
    `target-down` looks back on)."""
    st = lab.stage(name)
    for rid, settings in releases.items():
        st.add_release(rid, **{**RELEASE_BASE, **settings})
    with st.slots:
        st.start_app("r1")
        if ready is not None:
            ready(st)
        st.write_config(watch_window, drop)
        st.cli("mark", "good", "r1")
        st.start_watcher()
    st.wait_series(10)
    wait_for(lambda: lab.prometheus.query(f'http_requests_total{{instance="{st.instance}"}}'), 60, every=0.5,
             what=f"{name}: the app's first requests in Prometheus")
    return st


def rolled_back(st: AppHost, bad: str, good: str) -> list[str]:
    """What is wrong with "rolled back from `bad` to `good`, verified" (empty when nothing)."""
    wrong = []
    if st.current_id() != good:
        wrong.append(f"current is {st.current_id()}, not {good}")
    if st.mark_of(bad) != "bad":
        wrong.append(f"{bad} is marked {st.mark_of(bad)!r}")
    if not [e for e in st.events("rollback_verified") if e.get("target") == good]:
        wrong.append(f"no rollback_verified to {good}: {st.events('rollback_confirming')} {st.events('verdict')}")
    if st.state().get("halted"):
        wrong.append(f"halted: {st.state()['halted']}")
    return wrong


def no_rollback(out: Outcome, release: str) -> list[str]:
    st = out.stage
    wrong = []
    if st.events("rollback_intent"):
        wrong.append(f"rolled back: {st.events('verdict')} {st.events('rollback_intent')}")
    if st.current_id() != release:
        wrong.append(f"current is {st.current_id()}, not {release}")
    if st.mark_of(release) == "bad":
        wrong.append(f"{release} is marked bad")
    rolling = [t for t in out.titles() if "rolling back" in t or "rolled back" in t]
    if rolling:
        wrong.append(f"messages: {rolling}")
    return wrong
