"""The demo app on its own: settings, the latency mix, and its HTTP endpoints."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from support import SandboxError, cpu_seconds
from watcher.demo.app import BUCKETS, QUANTILE, LatencyMix, Metrics, Settings, Traffic


def _histogram_quantile(q: float, metrics: Metrics) -> float:
    """Prometheus' histogram_quantile on the app's own buckets (linear inside a bucket)."""
    get = metrics.registry.get_sample_value
    counts = [get("http_request_duration_seconds_bucket", {"le": str(b)}) for b in BUCKETS]
    rank = q * get("http_request_duration_seconds_count")
    for i, count in enumerate(counts):
        if count >= rank:
            lo = BUCKETS[i - 1] if i else 0.0
            below = counts[i - 1] if i else 0.0
            return lo + (BUCKETS[i] - lo) * (rank - below) / (count - below)
    return BUCKETS[-1]


@pytest.mark.parametrize("latency_s", [0.001, 0.008, 0.05, 0.15, 0.4, 0.0049, 0.25, 2.0])
def test_latency_mix_makes_histogram_quantile_report_configured_p95(latency_s):
    metrics = Metrics("r1")
    Traffic(metrics).record(Settings(latency_s=latency_s, rps=50), seconds=60)
    assert _histogram_quantile(QUANTILE, metrics) == pytest.approx(latency_s, rel=0.01)


def test_latency_mix_shares_are_fractions():
    for latency_s in (0.0003, 0.001, 0.0026, 0.3, 4.9, 7.0):
        mix = LatencyMix.for_p95(latency_s)
        assert 0 <= mix.below <= 1 and 0 <= mix.above <= 1 and mix.below + mix.above <= 1


def test_traffic_records_exact_error_share_even_in_short_windows():
    metrics = Metrics("r1")
    traffic = Traffic(metrics)
    settings = Settings(error_ratio=0.3, rps=50)
    for _ in range(10):  # 2 s in ticks of 0.2 s
        traffic.record(settings, 0.2)
    errors = metrics.registry.get_sample_value("http_requests_total", {"code": "500"})
    ok = metrics.registry.get_sample_value("http_requests_total", {"code": "200"})
    assert ok + errors == 100
    assert errors == 30


def test_settings_unknown_key_is_refused_with_its_name():
    with pytest.raises(ValueError, match="error_rate"):
        Settings().updated({"error_rate": 0.3})


@pytest.mark.parametrize("changes", [{"rps": True}, {"error_ratio": "0.3"}, {"error_ratio": 1.5}, {"latency_s": 0}])
def test_settings_wrong_type_or_range_is_refused(changes):
    with pytest.raises(ValueError):
        Settings().updated(changes)


def test_settings_accept_int_for_float():
    assert Settings().updated({"rps": 10}).rps == 10.0


def test_health_and_version_answer_by_default(demo_app):
    app = demo_app("r7")
    assert httpx.get(f"{app.url}/health").text == "ok\n"
    assert httpx.get(f"{app.url}/version").text == "r7\n"
    metrics = httpx.get(f"{app.url}/metrics").text
    assert 'app_build_info{release="r7"} 1.0' in metrics
    assert 'http_requests_total{code="500"}' in metrics  # present before the first error
    assert "demo_oom_kills_total 0.0" in metrics


def test_control_health_status_makes_health_fail_then_recover(demo_app):
    app = demo_app()
    assert app.control(health_status=503)["health_status"] == 503
    assert httpx.get(f"{app.url}/health").status_code == 503
    app.control(health_status=200)
    assert httpx.get(f"{app.url}/health").status_code == 200


def test_control_health_hang_makes_probe_time_out(demo_app):
    app = demo_app()
    app.control(health_hang=True)
    with pytest.raises(httpx.TimeoutException):
        httpx.get(f"{app.url}/health", timeout=0.5)
    app.control(health_hang=False)
    assert httpx.get(f"{app.url}/health", timeout=2).status_code == 200


def test_control_unknown_setting_is_refused_and_nothing_changes(demo_app):
    app = demo_app(error_ratio=0.2)
    with pytest.raises(SandboxError, match="unknown setting"):
        app.control(error_rate=0.5)
    assert httpx.get(f"{app.url}/control").json()["error_ratio"] == 0.2


def test_control_crash_exits_process_with_status_3(demo_app):
    app = demo_app()
    app.control(crash=True)
    assert app.proc.wait(timeout=5) == 3


def test_settings_file_with_crash_fails_start_with_log_tail(demo_app):
    with pytest.raises(SandboxError, match="crash requested"):
        demo_app(crash=True)


def test_settings_file_error_fails_start_naming_the_key(demo_app):
    with pytest.raises(SandboxError, match="unknown setting 'eror_ratio'"):
        demo_app(eror_ratio=0.3)


def test_sighup_rereads_settings_file_and_changes_release(demo_app, tmp_path):
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"error_ratio": 0.0}))
    app = demo_app("r1", settings_file=settings)
    settings.write_text(json.dumps({"error_ratio": 0.4, "release": "r2"}))
    app.reload()
    deadline = time.monotonic() + 5
    while httpx.get(f"{app.url}/version").text != "r2\n" and time.monotonic() < deadline:
        time.sleep(0.05)  # the signal is handled asynchronously
    assert httpx.get(f"{app.url}/version").text == "r2\n"
    assert httpx.get(f"{app.url}/control").json()["error_ratio"] == 0.4
    metrics = httpx.get(f"{app.url}/metrics").text
    assert 'app_build_info{release="r2"} 1.0' in metrics
    assert 'release="r1"' not in metrics


def test_demo_app_at_default_rps_uses_under_5_percent_of_a_core(demo_app):
    app = demo_app()
    before = cpu_seconds(app.pid)
    time.sleep(2)
    assert (cpu_seconds(app.pid) - before) / 2 < 0.05  # measured ~0.2%
