"""The e2e harness (fixtures are in conftest.py). End to end: a real Prometheus (scrape 1 s),
the demo app, a sandbox symlink host and the watcher as a subprocess (`python -m watcher run`),
with a loopback ntfy receiver. The machinery is shared with the other scenario suites
(tests/support/scenarios.py); what is here is the e2e rule table, config and runner.

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

Measured onset -> verified-rollback times are printed at the end of the run, and kept in
pytest's cache (`e2e/timings`) when the cache plugin is on.
"""

from __future__ import annotations

from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from support import (
    REPO,
    LoopbackServer,
    NotificationReceiver,
    Outcome,
    PortPool,
    PrometheusServer,
    ScenarioHost,
    ScenarioRegistry,
    ScenarioRunner,
)

__all__ = ["REPO", "Lab", "Outcome", "ScriptedHealth", "Stage", "scenario", "SCENARIOS", "SCENARIO_TIMEOUT"]

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
    trailing: "off"  # a kill is an event, as in rules/default.yaml: no trailing window
    action: rollback
  - name: health-endpoint
    http: HEALTH_URL
    expect_status: 200
    timeout: 2s
    failures: 3
    action: rollback
"""


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

        self._http = LoopbackServer(Handler)
        self.url = f"http://127.0.0.1:{self._http.port}/health"

    def close(self) -> None:
        self._http.close()


class Stage(ScenarioHost):
    """A sandbox symlink host with one demo app, the e2e rule table, a receiver (ntfy://, or
    Apprise's json:// with `scheme="json"`) and the watcher."""

    def __init__(self, root: Path, port: int, prometheus: PrometheusServer, scheme: str = "ntfy"):
        super().__init__(root, port, prometheus, NotificationReceiver(scheme))
        self.on_close(self.receiver.close)

    def write_config(self, health_url: str | None = None, prometheus_url: str | None = None, **extra: Any) -> Path:
        """RULES with this app's selector and health URL; `extra` replaces top-level keys."""
        rules = RULES.replace("SEL", f'instance="{self.instance}"').replace("HEALTH_URL", health_url or self.health_url())
        cfg = self.base_config("e2e")
        if prometheus_url:
            cfg["prometheus"]["url"] = prometheus_url
        cfg.update(extra)
        return self.write_files(rules, cfg)


# ---------------------------------------------------------------------------------------------
# The runner: every selected scenario at once


SCENARIOS = ScenarioRegistry()
scenario = SCENARIOS.register  # @scenario(NAME) registers fn(lab) -> Outcome; tests mark themselves with NAME


class Lab:
    """One Prometheus scraping every scenario's app port, and the scenarios' stages."""

    def __init__(self, workdir: Path, prometheus_bin: str):
        self.workdir = workdir
        self.prometheus_bin = prometheus_bin
        self.ports = PortPool(MAX_PORTS)
        self.prometheus = PrometheusServer(workdir / "prometheus", self.ports.targets, binary=prometheus_bin)
        self.stages: list[Stage] = []
        self.extra_closers: list[Callable[[], None]] = []

    def stage(self, name: str, own_prometheus: bool = False, scheme: str = "ntfy") -> Stage:
        [port] = self.ports.take(1)
        prom = self.prometheus
        if own_prometheus:
            prom = PrometheusServer(self.workdir / f"prometheus-{name}", [f"127.0.0.1:{port}"],
                                    binary=self.prometheus_bin)
            self.extra_closers.append(prom.stop)
            prom.start()
        st = Stage(self.workdir / name, port, prom, scheme)
        self.stages.append(st)
        return st

    def close(self) -> None:
        for st in self.stages:
            st.close()
        for close in self.extra_closers:
            close()
        self.prometheus.stop()


def runner(lab: Lab, names: list[str]) -> ScenarioRunner:
    return ScenarioRunner(SCENARIOS, names, lab, SCENARIO_TIMEOUT)
