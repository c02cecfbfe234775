"""The decision-quality lab: what tests/e2e/harness.py does (one real Prometheus scraping every
1 s, a sandbox symlink host per scenario, the watcher `run` as a subprocess, a loopback ntfy
receiver), with what the issue-13 stories need on top:

- the SHIPPED rule table (rules/default.yaml), read at test time, with only the e2e durations
  (`for: 10s`, a 30 s baseline window), this scenario's health URL and the demo app's OOM counter
  in place of node_exporter's, each selector narrowed to this scenario's app. When the shipped
  table changes, the scenarios judge the new one;
- an app under a small supervisor (appctl.py), so that a release can crash, the watcher's
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
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Callable

import httpx
import yaml

import appctl
from harness import NtfyReceiver, Outcome, wait_for
from support import PrometheusServer, free_port

REPO = Path(__file__).resolve().parents[2]
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
        return [sys.executable, str(HERE / "appctl.py"), what, str(self.root)]

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


class Stage:
    """One scenario's world: releases/<id>/settings.json, `current`, the supervised app, a rule
    table, the watcher (maybe under a FakeClock) and a loopback ntfy receiver."""

    def __init__(self, root: Path, port: int, prometheus: PrometheusServer, slots: threading.Semaphore | None = None):
        self.slots = slots or threading.Semaphore(1)
        self.root = root
        self.port = port
        self.prometheus = prometheus
        self.instance = f"127.0.0.1:{port}"
        self.releases = root / "releases"
        self.current = root / "current"
        self.state_dir = root / "state"
        self.releases.mkdir(parents=True)
        self.app = SupervisedApp(root, port)
        self.receiver = NtfyReceiver()
        self.watcher: subprocess.Popen | None = None
        self.config_path = root / "watcher.yaml"
        self.clock: FakeClock | None = None
        self._closers: list[Callable[[], None]] = [self.receiver.close, self.app.stop]

    # -- the host ------------------------------------------------------------------------------

    def add_release(self, rid: str, age_s: float | None = None, **settings: Any) -> Path:
        """A release dir; `age_s` sets its mtime that many seconds in the past (its creation)."""
        d = self.releases / rid
        d.mkdir(exist_ok=True)
        (d / "settings.json").write_text(json.dumps({"release": rid, **settings}))
        if age_s is not None:
            t = time.time() - age_s
            os.utime(d, (t, t))
        return d

    def point_current(self, rid: str) -> None:
        tmp = self.root / ".current.tmp"
        if tmp.is_symlink():
            tmp.unlink()
        os.symlink(f"releases/{rid}", tmp)
        os.replace(tmp, self.current)

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

    def current_id(self) -> str:
        return Path(os.readlink(self.current)).name

    # -- the watcher ---------------------------------------------------------------------------

    def health_url(self) -> str:
        return f"{self.app.url}/health"

    def write_config(self, rules: list[dict] | None = None, drop: tuple[str, ...] = (), **extra: Any) -> Path:
        """watcher.yaml for this stage: the shipped rules unless `rules` is given; `extra`
        replaces top-level keys; `drop` removes top-level keys (or `section.key`)."""
        if rules is None:
            rules = shipped_rules(self.instance, self.health_url())
        (self.root / "rules.yaml").write_text(json.dumps({"rules": rules}, indent=1))
        cfg: dict[str, Any] = {
            "service": "shop",
            "host": "decisions",
            "interval": "1s",
            "prometheus": {"url": self.prometheus.url, "timeout": "5s", "scrape_interval": "1s"},
            "rules": ["rules.yaml"],
            "watch_window": "5m",
            "max_window": "1m",
            "backend": {"type": "symlink", "releases": str(self.releases), "current": str(self.current),
                        "restart": self.app.ctl("reload"), "restart_timeout": "30s"},
            "verify": {"url": self.health_url(), "attempts": 10, "every": "500ms", "timeout": "2s"},
            "notify": [{"url": self.receiver.url, "min_severity": "info"}],
            "state_dir": str(self.state_dir),
            "telemetry": False,
        }
        cfg.update(extra)
        for key in drop:
            section, _, sub = key.partition(".")
            if sub:
                cfg.get(section, {}).pop(sub, None)
            else:
                cfg.pop(section, None)
        self.config_path.write_text(json.dumps(cfg, indent=1))
        return self.config_path

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.clock is not None:
            env.update(self.clock.env())
        return env

    def start_watcher(self, wait: bool = True) -> None:
        log = open(self.root / "watcher.log", "ab")
        self.watcher = subprocess.Popen([sys.executable, "-m", "watcher", "run", "--config", str(self.config_path)],
                                        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=REPO,
                                        start_new_session=True, env=self.env())
        log.close()
        self._closers.append(self.stop_watcher)
        if wait:
            wait_for(lambda: self.events("start") or self.watcher.poll() is not None, 90, "the watcher to start")
            assert self.watcher.poll() is None, f"the watcher exited {self.watcher.returncode}:\n{self.log()}"

    def launch(self, known_good: str) -> None:
        """Mark `known_good` (as a pipeline does before the watcher is installed), then start
        the watcher; a few stages at a time (see Lab.SETUPS_AT_ONCE)."""
        with self.slots:
            self.cli("mark", "good", known_good)
            self.start_watcher()

    def stop_watcher(self) -> None:
        if self.watcher is not None and self.watcher.poll() is None:
            self.watcher.terminate()
            try:
                self.watcher.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.watcher.kill()
                self.watcher.wait()

    def hup_watcher(self) -> None:
        assert self.watcher is not None
        self.watcher.send_signal(signal.SIGHUP)

    def log(self) -> str:
        path = self.root / "watcher.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def cli(self, *args: str, timeout: float = 90, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run([sys.executable, "-m", "watcher", *args, "--config", str(self.config_path)],
                                capture_output=True, text=True, timeout=timeout, cwd=REPO, env=self.env())
        if check:
            assert result.returncode == 0, f"{args} exited {result.returncode}: {result.stdout}{result.stderr}"
        return result

    def mark_good(self, rid: str) -> None:
        self.cli("mark", "good", rid)
        wait_for(lambda: [e for e in self.events("mark") if e.get("release") == rid], 60, f"mark good {rid}")

    # -- what happened -------------------------------------------------------------------------

    def journal(self) -> list[dict]:
        path = self.state_dir / "journal.jsonl"
        if not path.exists():
            return []
        events = []
        for line in path.read_text(errors="replace").splitlines():
            try:
                events.append(json.loads(line))
            except ValueError:
                continue  # a line being written
        return events

    def events(self, kind: str, **match: Any) -> list[dict]:
        return [e for e in self.journal() if e["kind"] == kind and all(e.get(k) == v for k, v in match.items())]

    def state(self) -> dict:
        return json.loads((self.state_dir / "state.json").read_text())

    def mark_of(self, rid: str) -> str | None:
        return self.state().get("releases", {}).get(rid, {}).get("mark")

    def wait_event(self, kind: str, timeout: float, **match: Any) -> dict:
        return wait_for(lambda: self.events(kind, **match), timeout, f"journal {kind} {match or ''}")[0]

    def wait_title(self, text: str, timeout: float = 60) -> str:
        return wait_for(lambda: [t for t in self.receiver.titles() if text in t], timeout, f"a message {text!r}")[0]

    def wait_series(self, seconds_of_data: int, timeout: float = 120) -> None:
        query = f'count_over_time(up{{instance="{self.instance}"}}[2m]) >= {seconds_of_data}'
        self.prometheus.wait_for_series(query, timeout=timeout)

    def watch_quietly(self, seconds: float, since: float | None = None) -> None:
        """Observe until `seconds` after `since` (default now) AND until the watcher finished a
        tick after that (state.json's mtime is real time even under libfaketime)."""
        deadline = (since or time.time()) + seconds
        state = self.state_dir / "state.json"
        wait_for(lambda: time.time() >= deadline and state.stat().st_mtime >= deadline, seconds + 90,
                 f"a tick {seconds:.0f}s on", every=0.5)

    def close(self) -> None:
        for close in reversed(self._closers):
            try:
                close()
            except Exception:  # noqa: BLE001 - cleanup goes on
                import traceback

                traceback.print_exc()


# ---------------------------------------------------------------------------------------------
# What a scenario ends in


def messages(st: Stage) -> list[dict]:
    with st.receiver._lock:
        return list(st.receiver.messages)


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
    assert any(f"rolled back {bad} → {good}" in t for t in out.titles()), out.titles()


def assert_no_rollback(out: Outcome, release: str) -> None:
    st = out.stage
    assert st.current_id() == release, f"current is {st.current_id()}, expected {release} to stay"
    assert not st.events("rollback_intent"), st.events("rollback_intent")
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


DECISIONS: dict[str, Callable[["Lab"], Outcome]] = {}


def decision(name: str):
    def register(fn):
        DECISIONS[name] = fn
        return fn

    return register


def ports_outside_the_ephemeral_range(n: int) -> list[int]:
    """Free ports below the kernel's ephemeral range: a port picked with bind(0) (free_port,
    every receiver here, other test runs) is released before the app binds it, and another
    bind(0) may take it meanwhile (seen: a receiver answered 501 on an app's port)."""
    import random
    import socket

    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports: list[int] = []
    candidates = list(range(max(1024, low - 12000), low))
    random.shuffle(candidates)
    for port in candidates:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        ports.append(port)
        if len(ports) == n:
            return ports
    raise AssertionError(f"fewer than {n} free ports below {low}")


class Lab:
    # Starting a watcher, an app and a CLI call is most of a scenario's CPU: a few at a time,
    # so that 25 scenarios starting at once do not starve each other (and the machine).
    SETUPS_AT_ONCE = 3

    def __init__(self, workdir: Path, prometheus_bin: str):
        self.workdir = workdir
        self.setup_slots = threading.Semaphore(self.SETUPS_AT_ONCE)
        self.ports = ports_outside_the_ephemeral_range(MAX_PORTS)
        self.prometheus = PrometheusServer(workdir / "prometheus", [f"127.0.0.1:{p}" for p in self.ports],
                                           binary=prometheus_bin)
        self._lock = threading.Lock()
        self._next = 0
        self.stages: list[Stage] = []

    def stage(self, name: str) -> Stage:
        with self._lock:
            port = self.ports[self._next]
            self._next += 1
        st = Stage(self.workdir / name, port, self.prometheus, self.setup_slots)
        with self._lock:
            self.stages.append(st)
        return st

    def close(self) -> None:
        for st in self.stages:
            st.close()
        self.prometheus.stop()


class Runner:
    def __init__(self, lab: Lab, names: list[str]):
        self.futures: dict[str, Future] = {}
        self.seconds: dict[str, float] = {}  # wall time of each scenario, for the summary
        for name in names:
            fut: Future = Future()
            self.futures[name] = fut
            threading.Thread(target=self._run, args=(lab, name, fut), name=f"decision-{name}", daemon=True).start()

    def _run(self, lab: Lab, name: str, fut: Future) -> None:
        started = time.monotonic()
        try:
            result = DECISIONS[name](lab)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            self.seconds[name] = time.monotonic() - started
            fut.set_exception(exc)
        else:
            self.seconds[name] = time.monotonic() - started
            fut.set_result(result)

    def result(self, name: str) -> Outcome:
        if name not in self.futures:
            raise AssertionError(f"decision scenario {name!r} was not started")
        return self.futures[name].result(timeout=SCENARIO_TIMEOUT)


def prepare(lab: Lab, name: str, releases: dict[str, dict], first: str = "r1", data_s: int = 5,
            clock_offset: float | None = None, mark_good: bool = True, **config: Any) -> Stage:
    """A host with `releases`, `first` current, running and marked known-good (as a pipeline
    does before the watcher is installed), the watcher watching, and `data_s` seconds of this
    app in Prometheus."""
    st = lab.stage(name)
    for rid, settings in releases.items():
        st.add_release(rid, **settings)
    st.start_app(first)
    if clock_offset is not None:
        st.clock = FakeClock(st.root / "faketime", clock_offset)
    st.write_config(**config)
    if mark_good:
        st.launch(first)
    else:
        with st.slots:
            st.start_watcher()
    st.wait_series(data_s)
    return st

