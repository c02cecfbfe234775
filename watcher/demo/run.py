"""`rollback-watcher demo`: a bad deploy detected and rolled back on a sandbox host, in about a
minute, with nothing to configure.

    temp dir/
      releases/v1/settings.json   the good release of the demo app
      releases/v2/settings.json   the bad one: 30% of requests answer 500 (or, without
                                  Prometheus, a failing /health)
      current -> releases/v1      the symlink the watcher's symlink backend reads and switches
      watcher.yaml, rules.yaml    interval 1s, `for: 10s` (the shipped table says 2m)

The demo app is one process reading `current/settings.json`; a deploy (and the rollback)
re-points `current` and sends it SIGHUP, which is the backend's `restart` argv. Prometheus (the
real binary, scraping every second) runs when it is installed. The watcher runs in this process
(service.build.build_watcher + a thread); the timeline is read back from its journal, the progress line from
its state file, so what is printed is what the service recorded.

Every process and the temp dir are removed at the end, on Ctrl-C and on SIGTERM. Exit status 0
when the bad release was rolled back and verified, 1 when it was not, 130 on Ctrl-C.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from watcher.base.format import format_value
from watcher.config.load import load_config
from watcher.core.rules import Rule
from watcher.demo.rig import DemoAppProcess, PrometheusServer, SandboxError
from watcher.service.build import build_watcher
from watcher.service.daemon import Daemon

FOR_S = 10
DEADLINE_S = 75.0  # from the bad deploy to giving up
GOOD = {"release": "v1", "error_ratio": 0.0, "latency_s": 0.02}
BAD_5XX = {"release": "v2", "error_ratio": 0.30, "latency_s": 0.02}
BAD_HEALTH = {"release": "v2", "error_ratio": 0.0, "latency_s": 0.02, "health_status": 503}

RULE_5XX = f"""\
  - name: http-5xx-ratio
    description: share of requests answered with a 5xx since the deploy
    query: sum(rate(http_requests_total{{code=~"5.."}}[$window])) / sum(rate(http_requests_total[$window]))
    above: 0.10
    for: {FOR_S}s
    value_unit: "%"
    action: rollback
"""
RULE_HEALTH = """\
  - name: health-endpoint
    description: the service's own health check
    http: {url}/health
    expect_status: 200
    timeout: 2s
    failures: 3
    action: rollback
"""


class _Terminated(Exception):
    """SIGTERM, handled like Ctrl-C: clean up, then leave."""


def demo(out: TextIO = sys.stdout) -> int:
    started = time.monotonic()
    show = Timeline(out)
    root = Path(tempfile.mkdtemp(prefix="rollback-watcher-demo-"))
    cleanups: list[Callable[[], None]] = []
    old_term = signal.signal(signal.SIGTERM, _raise_terminated) if _main_thread() else None
    try:
        return _run(root, show, cleanups)
    except (KeyboardInterrupt, _Terminated):
        show.line("interrupted: cleaning up")
        return 130
    except SandboxError as exc:
        show.line(f"could not start the sandbox: {exc}")
        return 1
    finally:
        for cleanup in reversed(cleanups):
            try:
                cleanup()
            except Exception as exc:  # noqa: BLE001 - cleanup must go on
                print(f"cleanup: {exc}", file=sys.stderr)
        shutil.rmtree(root, ignore_errors=True)
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
        show.line(f"cleaned up (processes stopped, {root} removed) after {time.monotonic() - started:.0f}s")


def _run(root: Path, show: Timeline, cleanups: list[Callable[[], None]]) -> int:
    have_prometheus = shutil.which("prometheus") is not None
    bad = BAD_5XX if have_prometheus else BAD_HEALTH
    host = _Host(root)
    host.add_release("v1", GOOD)
    host.add_release("v2", bad)
    host.point("v1")

    show.line(f"sandbox host in {root}: releases v1 (good) and v2 ({_describe(bad)})")
    app = DemoAppProcess(root / "app", "v1", settings_file=host.current / "settings.json")
    cleanups.append(app.stop)
    prom = None
    if have_prometheus:
        prom = PrometheusServer(root / "prometheus", [app.target])
        cleanups.append(prom.stop)
        prom.start()  # first, so that the app is scraped as soon as it listens
    app.start()
    show.line(f"deployed v1: demo app on {app.url} (50 synthetic requests/s)")
    if prom is not None:
        show.line(f"Prometheus {prom.url} scrapes it every second")
    else:
        show.line("no `prometheus` binary found: running the health-probe rule alone "
                  "(install the Debian package `prometheus` to see the 5xx rule)")

    rules = ("rules:\n" + (RULE_5XX if prom is not None else "") + RULE_HEALTH.format(url=app.url))
    (root / "rules.yaml").write_text(rules)
    config = {
        "service": "demo-shop", "host": "sandbox", "interval": "1s",
        "prometheus": {"url": prom.url if prom else "http://127.0.0.1:9", "timeout": "2s", "scrape_interval": "1s"},
        "rules": ["rules.yaml"], "watch_window": "5m", "min_window": "3s", "max_window": "1m",
        "backend": {"type": "symlink", "releases": str(host.releases), "current": str(host.current),
                    "restart": ["kill", "-HUP", str(app.pid)], "restart_timeout": "10s"},
        "verify": {"url": f"{app.url}/health", "attempts": 10, "every": "500ms"},
        "state_dir": str(root / "state"), "telemetry": False,
    }
    (root / "watcher.yaml").write_text(json.dumps(config, indent=1))
    logging.getLogger("watcher").setLevel(logging.ERROR)  # the timeline tells the story
    watcher = build_watcher(load_config(root / "watcher.yaml"), notify=False)
    watcher.store.acquire()
    cleanups.append(watcher.store.release_lock)
    watcher.start()
    # The release that ran before the watcher: a pipeline (or `rollback-watcher mark good v1`)
    # tells the watcher it is known-good, so that it can be a rollback target.
    watcher.apply_request("mark", {"release": "v1", "mark": "good", "reason": "ran fine before the demo"}, time.time())
    watcher.save()
    daemon = Daemon(watcher)
    thread = threading.Thread(target=daemon.run, name="watcher", daemon=True)
    thread.start()
    def stop_watcher() -> None:
        daemon.stop()
        thread.join(timeout=30)

    cleanups.append(stop_watcher)
    show.line("watcher started: interval 1s, rules " + ", ".join(r.name for r in watcher.config.rules)
              + "; v1 marked known-good")

    journal = _JournalTail(root / "state" / "journal.jsonl")
    if prom is not None:
        _wait(show, lambda: prom.value('count_over_time(up{job="demo"}[1m])') or 0, 5, 30,
              "collecting healthy traffic on v1: {n:.0f}s of 5s scraped")
    journal.read()  # the start-up events are not the story

    host.point("v2")
    app.reload()
    onset = time.time()
    show.start_clock(onset)
    show.event(onset, f"deployed v2 ({_describe(bad)}): fault onset")
    verified = None
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline and thread.is_alive():
        for e in journal.read():
            text = _narrate(e)
            if text:
                show.event(e["time"], text)
            if e["kind"] == "rollback_verified":
                verified = e
            if e["kind"] in ("verify_failed", "rollback_failed"):
                show.done()
                show.line(f"the rollback did not complete: {e.get('detail') or e.get('reason')}")
                return 1
        if verified:
            break
        show.progress(_progress(root / "state" / "state.json", watcher.config.rules))
        time.sleep(0.2)
    show.done()
    if verified is None:
        show.line(f"no rollback within {DEADLINE_S:.0f}s of the bad deploy")
        return 1
    return _summary(show, journal.all, onset, verified, host, app, watcher.config.rules)


def _summary(show: Timeline, events: list[dict[str, Any]], onset: float, verified: dict[str, Any], host: _Host,
             app: DemoAppProcess, rules: Any) -> int:
    firing = next((e for e in events if e["kind"] == "rule" and e.get("after") == "firing"), {})
    first = next((e for e in events if e["kind"] == "rule" and e.get("after") in ("pending", "firing")), firing)
    switched = next((e for e in events if e["kind"] == "rollback_switched"), {})
    now_serving = app.control()
    rule = firing.get("rule", "?")
    threshold = next((r.condition_text() for r in rules if r.name == rule), "?")
    show.line("")
    show.line("summary")
    show.line(f"  rule            {rule}  ({threshold})")
    show.line(f"  value           {_shown(firing).removeprefix('value ')}")
    show.line(f"  first breach    {first.get('time', onset) - onset:5.1f}s after the bad deploy")
    show.line(f"  detection       {firing.get('time', onset) - onset:5.1f}s after the bad deploy (rule firing)")
    show.line(f"  rollback        {verified['time'] - onset:5.1f}s after the bad deploy, verified "
              f"(switch {switched.get('seconds', 0):.2f}s, verify {verified.get('seconds', 0):.2f}s)")
    show.line(f"  current         {host.current_id()}; the app now answers 500 for "
              f"{now_serving['error_ratio'] * 100:.0f}% of requests, /health {now_serving['health_status']}")
    ok = host.current_id() == "v1"
    show.line("  result          " + ("v2 rolled back to v1" if ok else "NOT rolled back"))
    return 0 if ok else 1


# ---------------------------------------------------------------------------------------------
# Pieces


class _Host:
    def __init__(self, root: Path):
        self.root = root
        self.releases = root / "releases"
        self.current = root / "current"
        self.releases.mkdir()

    def add_release(self, rid: str, settings: dict[str, Any]) -> None:
        (self.releases / rid).mkdir()
        (self.releases / rid / "settings.json").write_text(json.dumps(settings))

    def point(self, rid: str) -> None:
        tmp = self.root / ".current.tmp"
        os.symlink(f"releases/{rid}", tmp)
        os.replace(tmp, self.current)  # atomic, as a deploy script should do it

    def current_id(self) -> str:
        return Path(os.readlink(self.current)).name


class _JournalTail:
    def __init__(self, path: Path):
        self.path = path
        self.offset = 0
        self.all: list[dict[str, Any]] = []

    def read(self) -> list[dict[str, Any]]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        end = data.rfind(b"\n") + 1  # a line being written is read next time
        self.offset += end
        new = [json.loads(line) for line in data[:end].splitlines() if line.strip()]
        self.all.extend(new)
        return new


class Timeline:
    """Timestamped lines; a progress line that rewrites itself on a terminal."""

    def __init__(self, out: TextIO):
        self.out = out
        self.tty = out.isatty()
        self.onset: float | None = None
        self._progress = ""
        self._last_plain = 0.0

    def start_clock(self, onset: float) -> None:
        self.onset = onset

    def line(self, text: str) -> None:
        self._clear()
        self.out.write(text + "\n")
        self.out.flush()

    def event(self, at: float, text: str) -> None:
        stamp = f"+{at - self.onset:5.1f}s" if self.onset is not None else time.strftime("%H:%M:%S")
        self.line(f"{stamp}  {text}")

    def progress(self, text: str) -> None:
        if not text:
            return
        if self.tty:
            self._clear()
            self._progress = "        " + text
            self.out.write(self._progress)
            self.out.flush()
        elif time.monotonic() - self._last_plain >= 3:  # a log file gets a line now and then
            self._last_plain = time.monotonic()
            self.line("        " + text)

    def done(self) -> None:
        self._clear()

    def _clear(self) -> None:
        if self.tty and self._progress:
            self.out.write("\r" + " " * len(self._progress) + "\r")
            self._progress = ""


def _wait(show: Timeline, measure: Callable[[], float], target: float, timeout: float, text: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        n = measure()
        show.progress(text.format(n=min(n, target)))
        if n >= target:
            break
        time.sleep(0.25)
    show.done()


def _progress(state_path: Path, rules: Sequence[Rule]) -> str:
    try:
        state = json.loads(state_path.read_text())
    except (OSError, ValueError):
        return ""
    now = time.time()
    parts = []
    for rule in rules:
        rs = state.get("rules", {}).get(rule.name, {})
        phase = rs.get("phase", "inactive")
        value = format_value(rs["last_value"], rule.value_unit) if isinstance(rs.get("last_value"), (int, float)) \
            else "no data yet"
        if rule.name == "health-endpoint" or rule.failures > 1:
            parts.append(f"{rule.name}: {phase} ({rs.get('failures', 0)} of {rule.failures} failed probes)")
        elif phase == "pending" and rs.get("active_since"):
            parts.append(f"{rule.name}: pending {now - rs['active_since']:.0f}s of {rule.for_:.0f}s ({value})")
        else:
            parts.append(f"{rule.name}: {phase} ({value})")
    return "waiting for " + "; ".join(parts)


def _narrate(e: dict[str, Any]) -> str | None:
    kind = e["kind"]
    if kind == "deploy":
        return f"watcher saw the deploy of {e['release']}; watch window open"
    if kind == "rule" and e.get("transition") == "phase":
        return f"{e['rule']} {e['before']} -> {e['after']} ({_shown(e)})"
    if kind == "verdict":
        return f"decision: {e['action']}: {e['reason']}"
    if kind == "rollback_intent":
        return f"rollback recorded before acting: {e['release']} -> {e['target']}"
    if kind == "rollback_switched":
        return f"switched `current` to {e['target']} and reloaded the app ({e['seconds']:.2f}s)"
    if kind == "rollback_verified":
        return f"verified: {e['detail']} ({e['seconds']:.2f}s)"
    if kind == "incident":
        return f"incident closed: {e.get('summary')}"
    return None


def _shown(rule_event: dict[str, Any]) -> str:
    """A rule event's value as a human reads it: its journaled reason, which the service wrote
    in the rule's unit (watcher/base/format.py), or a probe's answer."""
    return rule_event.get("reason") or "?"


def _describe(settings: dict[str, Any]) -> str:
    if settings.get("health_status", 200) != 200:
        return f"/health answers {settings['health_status']}"
    if settings.get("error_ratio"):
        return f"{settings['error_ratio'] * 100:.0f}% of requests answer 500"
    return "healthy"


def _raise_terminated(*_: object) -> None:
    raise _Terminated()


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()
