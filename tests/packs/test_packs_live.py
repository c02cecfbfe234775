"""The rule packs against the real thing: a Python app on the real prometheus_client with lazy
labels, a Go app on client_golang built from Debian's packages, two Node apps on Express with
express-prom-bundle (the pinned npm packages of tests/support/nodeapp: "node" as its README's
sample usage, "node-dm" also with prom-client's default metrics), HAProxy's built-in exporter in
front of an app, and Debian's node_exporter, all scraped every second by one real Prometheus.
Each pack's queries, scoped to one target with prometheus.labels (watcher/config/scoping.py) as the
service scopes them, are read through the phases of a release's life:

    fresh       the processes answer scrapes, no request served yet
    healthy     10 req/s, no error
    bad         10 req/s, 40% answered 500 (node_exporter: one OOM kill)
    quiet       0 req/s
    crash       the app processes exit (HAProxy keeps answering: its own 503s)

The `world` fixture drives the phases once (about 40 s) and keeps what each query returned;
each test asserts one cell of the table. `[$window]` is rendered as 5 s: what the service
substitutes a few seconds after a deploy, with this 1 s scrape interval.
"""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path

import httpx
import pytest

from support import PrometheusServer
from support.realapps import GoApp, HAProxy, NodeApp, NodeExporter, PythonApp, go_app_binary
from watcher.config.rulefile import load_rule_file
from watcher.config.scoping import scope_query

PACKS = Path(__file__).resolve().parents[2] / "rules" / "packs"
WINDOW = "5s"
PHASE_S = 20.0  # the longest any phase waits for its condition
RATE = 10.0  # requests per second of each app's own traffic

EMPTY = "empty"  # the query returned no series: "no data"


def pack_query(pack: str, rule: str, instance: str) -> str:
    [found] = [r for r in load_rule_file(PACKS / f"{pack}.yaml", 60.0) if r.name == rule]
    return scope_query(found.signal.query, {"instance": instance}).replace("$window", WINDOW)


class Reading:
    """One pack's rule on one target: read() returns a float (maybe NaN), or EMPTY."""

    def __init__(self, prom: PrometheusServer, pack: str, rule: str, instance: str):
        self.prom = prom
        self.query = pack_query(pack, rule, instance)

    def read(self):
        result = self.prom.query(self.query)
        if not result:
            return EMPTY
        assert len(result) == 1, f"{self.query} returned {len(result)} series"
        return float(result[0]["value"][1])


def wait_reading(reading: Reading, ok, timeout: float = PHASE_S):
    """Poll until `ok(value)`; returns the last value either way (the test asserts it)."""
    deadline = time.monotonic() + timeout
    while True:
        value = reading.read()
        if ok(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.25)


def is_num(v) -> bool:
    return v != EMPTY and not math.isnan(v)


def near(target: float, tolerance: float = 0.07):
    return lambda v: is_num(v) and abs(v - target) <= tolerance


def is_nan(v) -> bool:
    return v != EMPTY and math.isnan(v)


def drive(url: str, stop: threading.Event) -> None:
    """The clients of the app behind HAProxy once the app is gone (its own generator went with it)."""
    with httpx.Client(timeout=2.0, trust_env=False) as client:
        while not stop.is_set():
            try:
                client.get(url)
            except httpx.HTTPError:
                pass
            stop.wait(1.0 / RATE)


@pytest.fixture(scope="module")
def world(prometheus_bin, tmp_path_factory):
    work = tmp_path_factory.mktemp("packs-live")
    began = time.monotonic()
    go_app_binary()  # built once per source version (cached): not part of the app's start
    build_s = time.monotonic() - began
    py = PythonApp(work / "py", "r1")
    go = GoApp(work / "go", "r1")
    nodeapp = NodeApp(work / "nodeapp", "r1")
    nodeapp_dm = NodeApp(work / "nodeapp-dm", "r1", default_metrics=True)
    behind = PythonApp(work / "behind", "r1")
    proxy = HAProxy(work / "haproxy", behind.target)
    behind.settings["traffic_url"] = proxy.url + "/"
    node = NodeExporter(work / "node")
    targets = [py.target, go.target, nodeapp.target, nodeapp_dm.target, proxy.target, node.target]
    # Prometheus first: a target it already knows is scraped within a second of coming up.
    prom = PrometheusServer(work / "prom", targets, binary=prometheus_bin)
    things = [prom, py, go, nodeapp, nodeapp_dm, behind, proxy, node]
    try:
        prom.start()
        for thing in things[1:]:
            thing.start()
        prom.wait_for_series(f'count(up{{job="demo"}} == 1) == {len(targets)}', timeout=30)
        out = {"start_s": {"python app": py.start_s, "go app": go.start_s, "node app": nodeapp.start_s,
                           "node app (default metrics)": nodeapp_dm.start_s, "haproxy": proxy.start_s,
                           "node_exporter": node.start_s, "go build (cached after the first)": build_s}}
        r = {
            "python": {rule: Reading(prom, "python-prometheus-client", rule, py.target)
                       for rule in ("http-5xx-ratio", "p95-latency-regression", "target-down")},
            "go": {rule: Reading(prom, "go-client-golang", rule, go.target)
                   for rule in ("http-5xx-ratio", "p95-latency-regression", "target-down")},
            **{who: {rule: Reading(prom, "node-prom-client", rule, app.target)
                     for rule in ("http-5xx-ratio", "p95-latency-regression", "target-down")}
               for who, app in (("node", nodeapp), ("node-dm", nodeapp_dm))},
            "haproxy": {rule: Reading(prom, "haproxy", rule, proxy.target)
                        for rule in ("http-5xx-ratio", "mean-latency-regression", "target-down")},
            "node_exporter": {"oom-kills": Reading(prom, "node-exporter", "oom-kills", node.target)},
        }
        apps = {"python": py, "go": go, "node": nodeapp, "node-dm": nodeapp_dm, "haproxy": behind}

        def phase(name, expect, set_up=None):
            """Run `set_up`, then wait for every (who, rule) of `expect` to meet its condition."""
            started = time.monotonic()
            if set_up:
                set_up()
            out[name] = {}
            for (who, rule), ok in expect.items():
                out[name][(who, rule)] = wait_reading(r[who][rule], ok)
            out[f"{name}_s"] = time.monotonic() - started

        phase("fresh", {("python", "http-5xx-ratio"): lambda v: v == EMPTY,
                        ("go", "http-5xx-ratio"): lambda v: v == EMPTY,
                        ("node", "http-5xx-ratio"): lambda v: v == EMPTY,
                        ("node-dm", "http-5xx-ratio"): lambda v: v == EMPTY,
                        ("haproxy", "http-5xx-ratio"): is_nan,
                        ("python", "target-down"): lambda v: True,
                        ("node", "target-down"): lambda v: True,
                        ("node-dm", "target-down"): near(1, 0),
                        ("haproxy", "target-down"): near(1, 0),
                        ("node_exporter", "oom-kills"): near(0, 0)}, None)
        phase("healthy", {("python", "http-5xx-ratio"): near(0, 0), ("go", "http-5xx-ratio"): near(0, 0),
                          ("node", "http-5xx-ratio"): near(0, 0), ("node-dm", "http-5xx-ratio"): near(0, 0),
                          ("haproxy", "http-5xx-ratio"): near(0, 0),
                          ("python", "p95-latency-regression"): is_num, ("go", "p95-latency-regression"): is_num,
                          ("node", "p95-latency-regression"): is_num, ("node-dm", "p95-latency-regression"): is_num,
                          ("haproxy", "mean-latency-regression"): is_num,
                          ("python", "target-down"): near(1, 0), ("go", "target-down"): near(1, 0),
                          ("node", "target-down"): near(1, 0), ("node-dm", "target-down"): near(1, 0),
                          ("haproxy", "target-down"): near(1, 0), ("node_exporter", "oom-kills"): near(0, 0)},
              lambda: [app.control(rps=RATE) for app in apps.values()])

        def bad():
            for app in apps.values():
                app.control(error_ratio=0.4)
            time.sleep(float(WINDOW[:-1]) + 1)  # a window of the bad release alone
            node.set_oom_kills(1)  # last, and read first: a kill stays in a 5 s window for 5 s

        phase("bad", {("node_exporter", "oom-kills"): lambda v: is_num(v) and v > 0,
                      ("python", "http-5xx-ratio"): near(0.4), ("go", "http-5xx-ratio"): near(0.4),
                      ("node", "http-5xx-ratio"): near(0.4), ("node-dm", "http-5xx-ratio"): near(0.4),
                      ("haproxy", "http-5xx-ratio"): near(0.4)},
              bad)
        phase("quiet", {("python", "http-5xx-ratio"): is_nan, ("go", "http-5xx-ratio"): is_nan,
                        ("node", "http-5xx-ratio"): is_nan, ("node-dm", "http-5xx-ratio"): is_nan,
                        ("haproxy", "http-5xx-ratio"): is_nan,
                        ("python", "target-down"): near(1, 0), ("go", "target-down"): near(1, 0),
                        ("node", "target-down"): near(1, 0), ("node-dm", "target-down"): near(1, 0)},
              lambda: [app.control(rps=0, error_ratio=0) for app in apps.values()])
        stop = threading.Event()
        clients = threading.Thread(target=drive, args=(proxy.url + "/", stop), daemon=True)

        def crash():
            clients.start()
            for app in apps.values():
                out.setdefault("exit", {})[app.what + app.target] = app.crash()

        try:
            phase("crash", {("python", "target-down"): near(0, 0), ("go", "target-down"): near(0, 0),
                            ("node", "target-down"): near(0, 0), ("node-dm", "target-down"): near(0, 0),
                            ("haproxy", "target-down"): near(0, 0),
                            ("python", "http-5xx-ratio"): lambda v: v == EMPTY,
                            ("go", "http-5xx-ratio"): lambda v: v == EMPTY,
                            ("node", "http-5xx-ratio"): lambda v: v == EMPTY,
                            ("node-dm", "http-5xx-ratio"): lambda v: v == EMPTY,
                            ("haproxy", "http-5xx-ratio"): near(1, 0.05)}, crash)
        finally:
            stop.set()
        for name in ("fresh", "healthy", "bad", "quiet", "crash"):
            print(f"\n{name:8}", "  ".join(f"{who}/{rule}={v if v == EMPTY else round(v, 3)}"
                                           for (who, rule), v in out[name].items()), end="")
        print("\nstart seconds:", {k: round(v, 2) for k, v in out["start_s"].items()},
              "phases:", {k: round(v, 1) for k, v in out.items() if k.endswith("_s") and k != "start_s"})
        yield out
    finally:
        for thing in reversed(things):
            thing.stop()


# -- fresh: no request served yet ------------------------------------------------------------

def test_a_fresh_python_process_without_requests_is_no_data_not_zero(world):
    assert world["fresh"][("python", "http-5xx-ratio")] == EMPTY


def test_a_fresh_go_process_without_requests_is_no_data_not_zero(world):
    assert world["fresh"][("go", "http-5xx-ratio")] == EMPTY


@pytest.mark.parametrize("who", ["node", "node-dm"])
def test_a_fresh_node_process_without_requests_is_no_data_not_zero(who, world):
    assert world["fresh"][(who, "http-5xx-ratio")] == EMPTY


def test_a_fresh_node_process_with_default_metrics_reads_up_before_its_first_request(world):
    assert world["fresh"][("node-dm", "target-down")] == 1.0


def test_haproxy_before_any_request_is_nan_its_counters_exist_at_zero(world):
    assert is_nan(world["fresh"][("haproxy", "http-5xx-ratio")])


# -- healthy: evidence, not "no data" -------------------------------------------------------

@pytest.mark.parametrize("who", ["python", "go", "node", "node-dm", "haproxy"])
def test_healthy_traffic_without_any_5xx_series_reads_zero(who, world):
    assert world["healthy"][(who, "http-5xx-ratio")] == 0.0


@pytest.mark.parametrize("who,rule", [("python", "p95-latency-regression"), ("go", "p95-latency-regression"),
                                      ("node", "p95-latency-regression"), ("node-dm", "p95-latency-regression"),
                                      ("haproxy", "mean-latency-regression")])
def test_healthy_latency_is_a_number(who, rule, world):
    assert is_num(world["healthy"][(who, rule)])


@pytest.mark.parametrize("who", ["python", "go", "node", "node-dm", "haproxy"])
def test_a_serving_target_reads_up(who, world):
    assert world["healthy"][(who, "target-down")] == 1.0


def test_no_oom_kill_since_the_deploy_reads_zero(world):
    assert world["healthy"][("node_exporter", "oom-kills")] == 0.0


# -- bad --------------------------------------------------------------------------------------

@pytest.mark.parametrize("who", ["python", "go", "node", "node-dm", "haproxy"])
def test_forty_percent_5xx_reads_about_point_four(who, world):
    value = world["bad"][(who, "http-5xx-ratio")]
    assert near(0.4)(value), value


def test_an_oom_kill_reads_above_zero(world):
    value = world["bad"][("node_exporter", "oom-kills")]
    assert is_num(value) and value > 0, value


# -- quiet: neither convicts nor blesses --------------------------------------------------------

@pytest.mark.parametrize("who", ["python", "go", "node", "node-dm", "haproxy"])
def test_no_traffic_is_nan(who, world):
    assert is_nan(world["quiet"][(who, "http-5xx-ratio")])


@pytest.mark.parametrize("who", ["python", "go", "node", "node-dm"])
def test_a_quiet_process_still_reads_up(who, world):
    assert world["quiet"][(who, "target-down")] == 1.0


# -- crash: seen through up, not counter presence ----------------------------------------------

@pytest.mark.parametrize("who", ["python", "go", "node", "node-dm", "haproxy"])
def test_a_crashed_app_breaches_target_down(who, world):
    assert world["crash"][(who, "target-down")] == 0.0


@pytest.mark.parametrize("who", ["python", "go", "node", "node-dm"])
def test_a_crashed_apps_ratio_is_no_data(who, world):
    assert world["crash"][(who, "http-5xx-ratio")] == EMPTY


def test_haproxy_counts_its_own_503s_for_a_crashed_app(world):
    value = world["crash"][("haproxy", "http-5xx-ratio")]
    assert near(1, 0.05)(value), value


def test_the_crashes_were_real_exits(world):
    assert set(world["exit"].values()) == {3}
