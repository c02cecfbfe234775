"""The decision-quality lab: what every scenario suite does (tests/support/scenarios.py: one real
Prometheus scraping every 1 s, a sandbox symlink host per scenario, the watcher `run` as a
subprocess, a loopback ntfy receiver), with what the issue-13 stories need on top:

- the SHIPPED rule table (rules/default.yaml), read at test time, with only the e2e durations
  (`for: 10s`, a 30 s baseline window), this scenario's health URL and the demo app's OOM counter
  in place of node_exporter's, each selector narrowed to this scenario's app. When the shipped
  table changes, the scenarios judge the new one;
- an app under a small supervisor (support/appctl.py), so that a release can crash, the watcher's
  `restart` can start it again, and a deploy can restart the process (counters reset);
- the watcher's wall clock under libfaketime (a real clock step, not a mock), CLOCK_MONOTONIC
  left alone (FAKETIME_DONT_FAKE_MONOTONIC=1).

Scenarios run concurrently, each in its own thread (see `Runner`); a test waits for its
scenario's Outcome and asserts the END STATE.
"""

from __future__ import annotations

import json
import os
import re
import signal
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
)

HERE = Path(__file__).resolve().parent
SCENARIO_TIMEOUT = 420.0  # start to outcome, on 2 shared cores; they take ~40-150 s
MAX_PORTS = 40
LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1")
GOOD = {"error_ratio": 0.0, "latency_s": 0.005}

# Metric names that may stand bare in a query (no `{` or `[` after them).
BARE_METRICS = ("up", "http_requests_total", "demo_oom_kills_total", "http_request_duration_seconds_bucket")


def narrow(query: str, instance: str) -> str:
    """`query` with every metric selector narrowed to `instance`: names followed by `{` or `[`
    (functions are followed by `(`, label names by `=`), and bare known metric names."""
    label = f'instance="{instance}"'
    out, i = [], 0
    pattern = re.compile(r'"[^"]*"|[a-zA-Z_:][a-zA-Z0-9_:]*')
    for m in pattern.finditer(query):
        out.append(query[i:m.start()])
        token, i = m.group(0), m.end()
        rest = query[i:].lstrip()
        if token.startswith('"'):
            out.append(token)
        elif rest.startswith("{"):
            brace = query.index("{", i)
            out.append(f"{token}{query[i:brace]}{{{label},")
            i = brace + 1
        elif rest.startswith("[") or (token in BARE_METRICS and not rest.startswith("(")):
            out.append(f"{token}{{{label}}}")
        else:
            out.append(token)
    out.append(query[i:])
    return "".join(out)


# cpu-saturation: a notify-only rule on node_exporter metrics that the sandbox has not.
NOT_IN_SANDBOX = ("cpu-saturation",)


def shipped_rules(instance: str, health_url: str, for_: str = "10s", drop: tuple[str, ...] = ()) -> list[dict]:
    """rules/default.yaml as a scenario runs it (see the module docstring)."""
    drop = (*drop, *NOT_IN_SANDBOX)
    table = yaml.safe_load((REPO / "rules" / "default.yaml").read_text())["rules"]
    rules = []
    for rule in table:
        if rule["name"] in drop:
            continue
        rule = dict(rule)
        if "query" in rule:
            rule["query"] = narrow(rule["query"].replace("node_vmstat_oom_kill", "demo_oom_kills_total"), instance)
        if "http" in rule:
            rule["http"] = health_url
        if "for" in rule:
            rule["for"] = for_
        if "baseline_window" in rule:
            rule["baseline_window"] = "30s"
        rules.append(rule)
    return rules


class FakeClock:
    """The watcher's wall clock under libfaketime: a timestamp file re-read on every call
    (FAKETIME_NO_CACHE=1) holding an offset, so the test steps the clock of the running watcher.
    CLOCK_MONOTONIC is not faked. libfaketime 0.9.10 answers EINVAL to Python's time.sleep
    (clock_nanosleep with TIMER_ABSTIME on the monotonic clock), so the watcher process also gets
    faketime_site/sitecustomize.py, which sleeps through select() instead: it changes nothing
    but how the process sleeps."""

    def __init__(self, path: Path, offset_s: float = 0.0):
        if not LIBFAKETIME.exists():
            raise AssertionError(f"{LIBFAKETIME} is missing: install the Debian package `faketime` (make deps does)")
        self.path = path
        self.set(offset_s)

    def set(self, offset_s: float) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(f"{offset_s:+.0f}\n")
        os.replace(tmp, self.path)

    def env(self) -> dict[str, str]:
        return {"LD_PRELOAD": str(LIBFAKETIME), "FAKETIME_TIMESTAMP_FILE": str(self.path), "FAKETIME_NO_CACHE": "1",
                "FAKETIME_DONT_FAKE_MONOTONIC": "1", "DONT_FAKE_MONOTONIC": "1",
                "PYTHONPATH": os.pathsep.join([str(HERE / "faketime_site"), os.environ.get("PYTHONPATH", "")])}


class SupervisedApp:
    """The demo app of one stage, run by appctl.py (so that the watcher's restart can start a
    crashed release again)."""

    def __init__(self, root: Path, port: int):
        self.root = root
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        (root / "app.json").write_text(json.dumps({"port": port, "python": sys.executable, "cwd": str(REPO)}))

    def ctl(self, what: str) -> list[str]:
        return [sys.executable, appctl.__file__, what, str(self.root)]

    def run(self, what: str) -> None:
        subprocess.run(self.ctl(what), check=True, timeout=60, cwd=REPO)

    @property
    def pid(self) -> int | None:
        return appctl.read_pid(self.root)

    def control(self, **settings: Any) -> dict[str, Any]:
        response = httpx.post(f"{self.url}/control", json=settings, timeout=5.0, trust_env=False)
        response.raise_for_status()
        return response.json()

    def stop(self) -> None:
        appctl.stop(self.root)


class Stage(ScenarioHost):
    """One scenario's world: the shared ScenarioHost with the supervised app, the shipped rule
    table, the watcher maybe under a FakeClock, and a few stages set up at a time (`slots`)."""

    WATCHER_START_S = 90.0
    MARK_S = 60.0
    SERIES_S = 120.0
    TICK_SLACK_S = 90.0
    WATCHER_STOP_S = 30.0

    def __init__(self, root: Path, port: int, prometheus: PrometheusServer, slots: threading.Semaphore | None = None):
        super().__init__(root, port, prometheus, NotificationReceiver())
        self.slots = slots or threading.Semaphore(1)
        self.app = SupervisedApp(root, port)
        self.clock: FakeClock | None = None
        self.on_close(self.receiver.close)
        self.on_close(self.app.stop)

    # -- the host ------------------------------------------------------------------------------

    def start_app(self, first: str) -> None:
        self.point_current(first)
        appctl.start(self.root)

    def deploy(self, rid: str, restart: bool = False, lock: Path | None = None) -> float:
        """What a deploy script does: re-point `current`, reload (or restart) the app; with
        `lock`, holding that deploy lock (flock) meanwhile, as `flock LOCK cap deploy` does."""
        fd = None
        if lock is not None:
            import fcntl

            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            self.point_current(rid)
            self.app.run("restart" if restart else "reload")
        finally:
            if fd is not None:
                os.close(fd)
        return time.time()

    # -- the watcher ---------------------------------------------------------------------------

    def restart_argv(self) -> list[str]:
        return self.app.ctl("reload")

    def write_config(self, rules: list[dict] | None = None, drop: tuple[str, ...] = (), **extra: Any) -> Path:
        """watcher.yaml for this stage: the shipped rules unless `rules` is given; `extra`
        replaces top-level keys; `drop` removes top-level keys (or `section.key`)."""
        if rules is None:
            rules = shipped_rules(self.instance, self.health_url())
        cfg = self.base_config("decisions", prometheus_timeout="5s", restart_timeout="30s", min_window=None)
        cfg.update(extra)
        for key in drop:
            section, _, sub = key.partition(".")
            if sub:
                cfg.get(section, {}).pop(sub, None)
            else:
                cfg.pop(section, None)
        return self.write_files(json.dumps({"rules": rules}, indent=1), cfg)

    def env(self) -> dict[str, str]:
        return self.clock.env() if self.clock is not None else {}

    def launch(self, known_good: str) -> None:
        """Mark `known_good` (as a pipeline does before the watcher is installed), then start
        the watcher; a few stages at a time (see Lab.SETUPS_AT_ONCE)."""
        with self.slots:
            self.cli("mark", "good", known_good)
            self.start_watcher()

    def hup_watcher(self) -> None:
        assert self.watcher is not None
        self.watcher.send_signal(signal.SIGHUP)


# ---------------------------------------------------------------------------------------------
# What a scenario ends in


def messages(st: Stage) -> list[dict]:
    return st.receiver.received()


def priority(message: dict) -> int:
    """ntfy priority 1..5 whichever way Apprise spelled it."""
    raw = str(message.get("priority") or message.get("x-priority") or 3)
    return {"min": 1, "low": 2, "default": 3, "high": 4, "max": 5, "urgent": 5}.get(raw, int(raw) if raw.isdigit() else 3)


def rolled_back(st: Stage) -> list[dict]:
    return [i for i in st.events("incident") if i.get("resolution") == "rolled_back"]


def assert_rolled_back(out: Outcome, bad: str, good: str) -> None:
    st = out.stage
    assert st.current_id() == good, f"current is {st.current_id()}, expected the rollback to {good}"
    incidents = rolled_back(st)
    assert incidents and incidents[-1]["release"] == bad, st.events("incident")
    assert st.mark_of(bad) == "bad", st.state()["releases"].get(bad)
    assert [e for e in st.events("rollback_verified") if e.get("target") == good], st.events("rollback_verified")
    # The message leaves through the notifier's queue after the journal says "verified": a
    # scenario that ends at the switch may be checked before its delivery (seen on CI).
    st.wait_title(f"rolled back {bad} → {good}")  # up to TITLE_S


def assert_no_rollback(out: Outcome, release: str) -> None:
    st = out.stage
    # The verdicts first: when this fails on CI, its message says which rule fired and why.
    assert not st.events("rollback_intent"), (st.events("verdict"), st.events("rollback_intent"))
    assert st.current_id() == release, f"current is {st.current_id()}, expected {release} to stay"
    assert not any("rolling back" in t or "rolled back" in t for t in out.titles()), out.titles()
    assert st.mark_of(release) != "bad"


def is_sight(title: str) -> bool:
    """"blind"/"recovered": about the watcher's sight of Prometheus (a loaded machine makes its
    queries time out), not a decision about a release."""
    return "] blind:" in title or "] recovered:" in title


def quiet_titles_after(out: Outcome, since: float, min_priority: int = 4) -> list[str]:
    """Titles of messages at `min_priority` or above received after `since` (real time), other
    than blind/recovered."""
    return [str(m.get("title")) for m in messages(out.stage)
            if m["received_at"] >= since and priority(m) >= min_priority and not is_sight(str(m.get("title")))]


# ---------------------------------------------------------------------------------------------
# The runner: every selected scenario at once, each in its own thread


DECISIONS = ScenarioRegistry()
decision = DECISIONS.register  # @decision(NAME) registers fn(lab) -> Outcome; tests mark themselves with NAME


class Lab:
    # Starting a watcher, an app and a CLI call is most of a scenario's CPU: a few at a time,
    # so that 25 scenarios starting at once do not starve each other (and the machine).
    SETUPS_AT_ONCE = 3

    def __init__(self, workdir: Path, prometheus_bin: str):
        self.workdir = workdir
        self.setup_slots = threading.Semaphore(self.SETUPS_AT_ONCE)
        self.ports = PortPool(MAX_PORTS)
        self.prometheus = PrometheusServer(workdir / "prometheus", self.ports.targets, binary=prometheus_bin)
        self._lock = threading.Lock()
        self.stages: list[Stage] = []

    def stage(self, name: str) -> Stage:
        [port] = self.ports.take(1)
        st = Stage(self.workdir / name, port, self.prometheus, self.setup_slots)
        with self._lock:
            self.stages.append(st)
        return st

    def close(self) -> None:
        for st in self.stages:
            st.close()
        self.prometheus.stop()


def runner(lab: Lab, names: list[str]) -> ScenarioRunner:
    return ScenarioRunner(DECISIONS, names, lab, SCENARIO_TIMEOUT)


def prepare(lab: Lab, name: str, releases: dict[str, dict], first: str = "r1", data_s: int | None = 5,
            clock_offset: float | None = None, mark_good: bool = True,
            configure: Callable[[Stage], dict[str, Any]] | None = None, **config: Any) -> Stage:
    """A host with `releases` (each a dict of the demo app's settings, maybe with `age_s`),
    `first` current, running and marked known-good (as a pipeline does before the watcher is
    installed), the watcher watching, and `data_s` seconds of this app in Prometheus (None: no
    wait). `config` goes to write_config, with what `configure(stage)` returns over it: the
    arguments that name the stage's own paths or URLs (run before the watcher starts)."""
    st = lab.stage(name)
    for rid, settings in releases.items():
        st.add_release(rid, **settings)
    st.start_app(first)
    if clock_offset is not None:
        st.clock = FakeClock(st.root / "faketime", clock_offset)
    st.write_config(**{**config, **(configure(st) if configure else {})})
    if mark_good:
        st.launch(first)
    else:
        with st.slots:
            st.start_watcher()
    if data_s:
        st.wait_series(data_s)
    return st


def poll_until(predicate: Callable[[], Any], timeout: float, every: float = 0.5) -> bool:
    """Poll until `predicate` is true (True) or `timeout` seconds passed (False): for a wait
    that the scenario goes on after either way, its test asserting the end state."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return False
