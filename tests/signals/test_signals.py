"""Signals against real things: a real Prometheus scraping the demo app, real HTTP servers on
127.0.0.1, a vmstat file the test writes."""

import json
import subprocess
import sys
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from support import free_port
from watcher.base.errors import SourceError
from watcher.core.rules import HostCheck, HttpCheck, Outcome, Phase, Rule, RuleState, classify, step
from watcher.signals.host import HostSignals, counter_increase
from watcher.signals.probe import HttpProbe
from watcher.signals.prometheus import PrometheusSource, parse_vector

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def stack(prometheus_bin, tmp_path_factory):
    """Two demo apps, one healthy and one answering 30% 5xx, scraped every second."""
    from support import DemoAppProcess, PrometheusServer

    work = tmp_path_factory.mktemp("signals")
    with DemoAppProcess(work / "good", "good") as good, DemoAppProcess(work / "bad", "bad", settings={"error_ratio": 0.3}) as bad:
        with PrometheusServer(work / "prom", [good.target, bad.target], binary=prometheus_bin) as prom:
            prom.wait_for_series('count_over_time(up{job="demo"}[1m]) >= 4', timeout=30)
            yield prom, good, bad


def ratio_query(instance: str) -> str:
    return (f'sum(rate(http_requests_total{{code=~"5..",instance="{instance}"}}[$window])) '
            f'/ sum(rate(http_requests_total{{instance="{instance}"}}[$window]))')


def test_eval_shows_a_breaching_rule_as_breaching_and_a_healthy_one_as_not(stack, tmp_path):
    prom, good, bad = stack
    (tmp_path / "rules.yaml").write_text(
        "rules:\n"
        f"  - name: bad-5xx\n    query: '{ratio_query(bad.target)}'\n    above: 0.1\n    action: rollback\n"
        f"  - name: good-5xx\n    query: '{ratio_query(good.target)}'\n    above: 0.1\n    action: rollback\n"
    )
    (tmp_path / "watcher.yaml").write_text(json.dumps({
        "service": "t", "rules": ["rules.yaml"], "state_dir": str(tmp_path / "state"), "telemetry": False,
        "prometheus": {"url": prom.url, "scrape_interval": "1s", "timeout": "5s"}, "min_window": "3s", "max_window": "10s",
    }))
    out = subprocess.run([sys.executable, "-m", "watcher", "eval", "--config", str(tmp_path / "watcher.yaml"), "--json"],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    rows = {r["rule"]: r for r in json.loads(out.stdout)["rules"]}
    assert rows["bad-5xx"]["outcome"] == "breach" and rows["bad-5xx"]["state"] == "firing"
    assert 0.15 < rows["bad-5xx"]["value"] < 0.45
    assert rows["good-5xx"]["outcome"] == "ok" and rows["good-5xx"]["state"] == "inactive"
    table = subprocess.run([sys.executable, "-m", "watcher", "eval", "--config", str(tmp_path / "watcher.yaml")],
                           cwd=REPO, capture_output=True, text=True, timeout=60)
    line = next(line for line in table.stdout.splitlines() if line.startswith("bad-5xx"))
    assert "breach" in line and "firing" in line


def test_prometheus_source_returns_samples_with_labels(stack):
    prom, good, bad = stack
    src = PrometheusSource(prom.url, timeout=5)
    samples = src.query('up{job="demo"}')
    assert {s.labels["instance"] for s in samples} == {good.target, bad.target}
    assert all(s.value == 1 for s in samples)


def test_prometheus_bad_promql_is_a_source_error(stack):
    prom, _, _ = stack
    with pytest.raises(SourceError, match="Prometheus answered"):
        PrometheusSource(prom.url, timeout=5).query("sum(")


def test_closed_port_fails_at_once_without_hidden_retries():
    src = PrometheusSource(f"http://127.0.0.1:{free_port()}", timeout=5)
    start = time.monotonic()
    with pytest.raises(SourceError, match="cannot reach Prometheus"):
        src.query("up")
    # prometheus-api-client's default retries take ~6 s here; ours must not retry at all.
    assert time.monotonic() - start < 2


def test_baseline_is_the_median_before_the_deploy(stack):
    prom, _, bad = stack
    src = PrometheusSource(prom.url, timeout=5)
    value = src.baseline(ratio_query(bad.target).replace("$window", "5s"), time.time(), 20, 1)
    assert value is not None and 0.15 < value < 0.45
    assert src.baseline("nonexistent_metric", time.time(), 20, 1) is None


@pytest.mark.parametrize(
    "result, expected",
    [
        ([{"metric": {"a": "1"}, "value": [1.0, "0.5"]}], [0.5]),
        ([1.0, "3"], [3.0]),  # a scalar
        ([{"metric": {}, "value": [1.0, "NaN"]}], ["nan"]),
    ],
)
def test_parse_vector_accepts_vectors_and_scalars(result, expected):
    got = [str(s.value) if s.value != s.value else s.value for s in parse_vector(result)]
    assert got == expected


@pytest.mark.parametrize(
    "result",
    [{"resultType": "matrix"}, [{"metric": {}, "values": [[1, "1"]]}], [{"metric": {}, "value": [1, "abc"]}],
     [{"metric": {}, "value": [1, None]}], "x", [[1, 2, 3]]],
)
def test_parse_vector_refuses_other_shapes_with_a_source_error(result):
    with pytest.raises(SourceError):
        parse_vector(result)


# --- HTTP probes ------------------------------------------------------------------------------


@pytest.fixture
def http_server():
    behaviours = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            kind = behaviours.get(self.path, "ok")
            if kind == "slow":
                time.sleep(1.5)
            if kind == "abitslow":
                time.sleep(0.4)
            if kind == "redirect":
                self.send_response(302)
                self.send_header("Location", self.path)
                self.end_headers()
                return
            status = 503 if kind == "503" else 200
            body = b"ok healthy" if kind != "wrongbody" else b"degraded"
            try:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except BrokenPipeError:
                pass  # the probe gave up first: that is the point of the slow case

        def log_message(self, *a):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", behaviours
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    "kind, check_kw, ok, detail",
    [
        ("ok", {}, True, "200 in"),
        ("503", {}, False, "status 503"),
        ("ok", {"expect_body": "healthy"}, True, "200 in"),
        ("wrongbody", {"expect_body": "healthy"}, False, "body lacks 'healthy'"),
        ("slow", {"timeout": 0.3}, False, "timeout after 0.3s"),
        ("redirect", {}, False, "status 302"),
    ],
)
def test_probe_outcomes(http_server, kind, check_kw, ok, detail):
    base, behaviours = http_server
    behaviours["/h"] = kind
    result = HttpProbe().probe(HttpCheck(base + "/h", **check_kw))
    assert result.ok is ok and detail in result.detail


def test_probe_connect_error_is_a_failure():
    result = HttpProbe().probe(HttpCheck(f"http://127.0.0.1:{free_port()}/h"))
    assert not result.ok and result.detail == "connect error"


# --- host signals -----------------------------------------------------------------------------


def write_vmstat(path: Path, oom: int) -> None:
    path.write_text(f"nr_free_pages 1000\noom_kill {oom}\npgfault 5\n")


def host_rule(path: Path) -> Rule:
    return Rule("oom", HostCheck("oom_kills", window=60, path=str(path)), "rollback", above=0.0)


def run_host_rule(path: Path, values: list[int]) -> list[Phase]:
    rule, reader, state = host_rule(path), HostSignals(), RuleState()
    phases = []
    for i, v in enumerate(values):
        write_vmstat(path, v)
        now = 1000.0 + i * 15
        obs = classify(rule, reader.read(rule, now))
        state, _ = step(rule, state, obs, now)
        phases.append(state.phase)
    return phases


def test_host_oom_rule_fires_when_the_counter_grows(tmp_path):
    phases = run_host_rule(tmp_path / "vmstat", [3, 3, 4, 4, 4, 4, 4, 4])
    assert phases[:2] == [Phase.INACTIVE] * 2
    assert phases[2] is Phase.FIRING  # grew by one
    assert phases[-1] is Phase.INACTIVE  # the growth left the 60 s window


def test_host_oom_rule_stays_quiet_when_the_counter_is_flat(tmp_path):
    assert set(run_host_rule(tmp_path / "vmstat", [7] * 8)) == {Phase.INACTIVE}


def test_host_counter_missing_file_is_an_error_not_a_breach(tmp_path):
    rule = host_rule(tmp_path / "missing")
    with pytest.raises(SourceError, match="cannot read") as exc:
        HostSignals().read(rule, 0.0)
    assert classify(rule, exc.value).outcome is Outcome.ERROR


def test_counter_increase_handles_resets_and_window():
    h = deque([(0, 5.0), (15, 6.0), (30, 1.0), (45, 2.0)])
    assert counter_increase(h, 45, 60) == 1 + 1 + 1  # 5->6, reset to 1, 1->2
    assert counter_increase(deque([(0, 5.0)]), 0, 60) == 0


def test_unit_restarts_reads_systemctl(tmp_path):
    """systemd is not PID 1 on these machines, so `systemctl show` cannot answer here: a fake
    `systemctl` executable at the process boundary prints NRestarts as systemd would."""
    counter = tmp_path / "n"
    counter.write_text("2")
    fake = tmp_path / "systemctl"
    fake.write_text(f"#!/bin/sh\ncat {counter}\n")
    fake.chmod(0o755)
    rule = Rule("restarts", HostCheck("unit_restarts", window=60, unit="shop.service"), "rollback", above=0.0)
    reader = HostSignals(systemctl=(str(fake),))
    assert reader.read(rule, 0.0)[0].value == 0
    counter.write_text("3")
    assert reader.read(rule, 15.0)[0].value == 1


def test_reads_queued_behind_a_narrow_pool_are_not_charged_for_the_wait(http_server):
    """Six probes of 0.4 s each through one worker take 2.4 s; each is within its own 1 s
    timeout, so none may be reported as timed out (a deadline counted from the tick's start
    would turn a long rule table into a "blind" watcher)."""
    from watcher.signals.reader import SignalReader

    base, behaviours = http_server
    behaviours["/h"] = "abitslow"
    rules = [Rule(f"p{i}", HttpCheck(base + "/h", timeout=1.0), "rollback") for i in range(6)]
    reader = SignalReader(None, HttpProbe(), None, max_concurrency=1)
    try:
        results = reader.read_all(rules, time.time(), 60)
    finally:
        reader.close()
    assert all(result.ok for result, _ in results.values()), {k: r.detail for k, (r, _) in results.items()}


def test_verification_probe_is_bounded_by_its_timeout(http_server):
    from watcher.signals.reader import SignalReader

    base, behaviours = http_server
    behaviours["/h"] = "slow"  # 1.5 s
    reader = SignalReader(None, HttpProbe(), None)
    start = time.monotonic()
    result = reader.probe_bounded(HttpCheck(base + "/h", timeout=0.3))
    reader.close()
    assert not result.ok and time.monotonic() - start < 1.2


def test_baseline_with_a_fractional_step_is_accepted_by_prometheus(stack):
    """The service asks for max(scrape_interval, baseline_window / 240): 7.5 s for the default
    30m window. Prometheus refuses a step written "7.5s"; it must be sent as plain seconds."""
    prom, _, bad = stack
    src = PrometheusSource(prom.url, timeout=5)
    series = src.query_range('up{job="demo"}', time.time() - 60, time.time(), 7.5)
    assert series and all(len(points) >= 2 for _, points in series)


def test_proxy_from_the_environment_is_still_used(monkeypatch):
    """Proxy settings are read once at start (not per request); a user behind HTTP_PROXY still
    reaches Prometheus through it. The "proxy" is a loopback server that answers like Prometheus."""
    seen = []

    class Proxy(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            seen.append(self.path)  # a proxy gets the absolute URL
            body = json.dumps({"status": "success", "data": {"resultType": "vector",
                               "result": [{"metric": {}, "value": [1, "0.5"]}]}}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{server.server_address[1]}")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        src = PrometheusSource("http://prometheus.example:9090", timeout=5)
        assert [s.value for s in src.query("up")] == [0.5]
        assert seen and seen[0].startswith("http://prometheus.example:9090/api/v1/query")
    finally:
        server.shutdown()
        server.server_close()
