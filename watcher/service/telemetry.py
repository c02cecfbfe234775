"""The watcher's own metrics and /healthz, on a loopback port by default (docs/design.md section 9).

One registry per Watcher (no prometheus_client global state), served by a small threaded
HTTP server: /metrics in the text format, /healthz 200 while ticks are recent, else 503.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from watcher.core.evaluate import RuleEvaluation
from watcher.store.state import State

log = logging.getLogger(__name__)

# Every result exists from the start at 0: Prometheus' increase() cannot see a counter's first
# step from "absent" to 1, so RollbackWatcherRollbackFailed (monitoring/alerts.yml) would miss
# the first failed rollback of a process.
ROLLBACK_RESULTS = ("verified", "unconfirmed", "not_cleared", "not_verified", "failed")


class Telemetry:
    def __init__(self, interval: float, clock: Callable[[], float] = time.time):
        self.interval = interval
        self.clock = clock
        self.registry = r = CollectorRegistry()
        self.rule_state = Gauge("rollback_watcher_rule_state", "Rule phase: 0 inactive, 1 pending, 2 firing", ["rule"], registry=r)
        self.rule_blind = Gauge("rollback_watcher_rule_blind", "1 while a rule cannot read its signal", ["rule"], registry=r)
        self.evaluations = Counter("rollback_watcher_evaluations", "Rule evaluations by outcome", ["rule", "outcome"], registry=r)
        self.query_errors = Counter("rollback_watcher_query_errors", "Signal read errors", ["rule"], registry=r)
        self.query_seconds = Histogram("rollback_watcher_query_duration_seconds", "Time to read one signal", ["kind"],
                                       buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10), registry=r)
        self.tick_seconds = Histogram("rollback_watcher_tick_duration_seconds", "Wall time of one tick",
                                      buckets=(.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120), registry=r)
        self.last_tick = Gauge("rollback_watcher_last_tick_timestamp_seconds", "When the last tick ended", registry=r)
        self.rollbacks = Counter("rollback_watcher_rollbacks", "Rollbacks by result", ["result"], registry=r)
        self.release_info = Gauge("rollback_watcher_release_info", "The current release", ["release", "mark"], registry=r)
        self.in_window = Gauge("rollback_watcher_in_watch_window", "1 while the current release is in its watch window", registry=r)
        self.halted = Gauge("rollback_watcher_halted", "1 after a rollback failed or did not verify, until resolve", registry=r)
        self.paused = Gauge("rollback_watcher_paused", "1 while paused: decisions are notified, never acted on", registry=r)
        self.paused_until = Gauge("rollback_watcher_paused_until_timestamp_seconds", "When the pause ends; 0 when not paused",
                                  registry=r)
        self.undelivered = Gauge("rollback_watcher_undelivered_messages",
                                 "Messages that failed every retry and wait for redelivery, by target (redacted)", ["target"],
                                 registry=r)
        for result in ROLLBACK_RESULTS:
            self.rollbacks.labels(result=result)
        self._server: ThreadingHTTPServer | None = None
        self._last_tick_at: float | None = None

    def tick_done(self, seconds: float) -> None:
        self.tick_seconds.observe(seconds)
        self._last_tick_at = self.clock()
        self.last_tick.set(self._last_tick_at)

    def after_tick(self, state: State, now: float, seconds: float, undelivered: dict[str, int] | None) -> None:
        """What a tick leaves (a state.State): its duration, the release and its mark, the
        window, what stops acting, and the messages waiting per notify target."""
        self.tick_done(seconds)
        rec = state.releases.get(state.current or "")
        self.set_release(state.current, rec.mark if rec else None)
        self.in_window.set(1 if state.in_watch_window(now) else 0)
        self.set_controls(now, bool(state.halted), state.paused_until)
        if undelivered is not None:
            self.set_undelivered(undelivered)

    def rule_evaluated(self, e: RuleEvaluation) -> None:
        """One rule's evaluation (an evaluate.RuleEvaluation): its phase, sight, outcome, time."""
        rule, state, obs = e.rule, e.after, e.observation
        self.rule_state.labels(rule=rule.name).set({"inactive": 0, "pending": 1, "firing": 2}[state.phase.value])
        self.rule_blind.labels(rule=rule.name).set(1 if state.blind else 0)
        self.evaluations.labels(rule=rule.name, outcome=obs.outcome.value).inc()
        self.query_seconds.labels(kind=type(rule.signal).__name__).observe(e.seconds)
        if obs.outcome.value == "error":
            self.query_errors.labels(rule=rule.name).inc()

    def set_release(self, release: str | None, mark: str | None) -> None:
        self.release_info.clear()
        if release:
            self.release_info.labels(release=release, mark=mark or "unmarked").set(1)

    def set_controls(self, now: float, halted: bool, paused_until: float | None) -> None:
        """What stops the watcher from acting: a halt (until `resolve`) and a pause."""
        paused = paused_until is not None and now < paused_until
        self.halted.set(1 if halted else 0)
        self.paused.set(1 if paused else 0)
        self.paused_until.set(paused_until if paused and paused_until is not None else 0)

    def set_undelivered(self, by_target: dict[str, int]) -> None:
        self.undelivered.clear()  # a target removed by a reload must not linger
        for target, count in by_target.items():
            self.undelivered.labels(target=target).set(count)

    def healthy(self) -> bool:
        return self._last_tick_at is not None and self.clock() - self._last_tick_at < 3 * self.interval + 30

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def serve(self, listen: str) -> str:
        """Start the endpoint on HOST:PORT (port 0 picks one); returns the bound address."""
        host, _, port = listen.rpartition(":")
        telemetry = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                if self.path.split("?")[0] == "/metrics":
                    body, status, ctype = telemetry.render(), 200, "text/plain; version=0.0.4; charset=utf-8"
                elif self.path.split("?")[0] == "/healthz":
                    ok = telemetry.healthy()
                    body, status, ctype = (b"ok\n" if ok else b"no recent tick\n"), (200 if ok else 503), "text/plain"
                else:
                    body, status, ctype = b"not found\n", 404, "text/plain"
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:  # keep scrapes out of the service log
                pass

        self._server = ThreadingHTTPServer((host.strip("[]"), int(port)), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="telemetry", daemon=True).start()
        bound = self._server.server_address[0]
        return f"{bound.decode() if isinstance(bound, bytes) else bound}:{self._server.server_port}"

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
