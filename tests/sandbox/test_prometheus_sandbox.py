"""A real Prometheus scraping demo apps: what the e2e tests and the demo rely on."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support import LOOPBACK, DemoAppProcess, PrometheusServer, SandboxError, free_ports

RATIO_5XX = 'sum(rate(http_requests_total{{code=~"5..",{sel}}}[{w}])) / sum(rate(http_requests_total{{{sel}}}[{w}]))'
P95 = "histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket{{{sel}}}[{w}])))"
RECORDING_RULE = "groups:\n- name: g\n  rules:\n  - record: sandbox:one\n    expr: vector(1)\n"


@pytest.fixture(scope="module")
def slots(prometheus_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PrometheusServer, Iterator[int]]]:
    """A Prometheus that already scrapes ports where no app runs yet, and those ports.

    Prometheus applies new targets only on a 5 s tick (no flag for it in 2.42): an app on a
    port it already knows is scraped within one interval. Each test takes fresh ports, so no
    test sees another's series; queries must still select by instance.
    """
    ports = free_ports(8)  # below the ephemeral range, no other test process is given them
    workdir = tmp_path_factory.mktemp("slots")
    with PrometheusServer(workdir, [f"{LOOPBACK}:{p}" for p in ports], binary=prometheus_bin) as prom:
        prom.wait_for_series(f'count(up{{job="demo"}}) == {len(ports)}', timeout=15)
        yield prom, iter(ports)


def _wait_scraped(prom: PrometheusServer, app: DemoAppProcess, samples: int = 1) -> None:
    prom.wait_for_series(f'sum_over_time(up{{instance="{app.target}"}}[30s]) >= {samples}', timeout=samples + 10)


def _group_members(pgid: int) -> list[int]:
    """PIDs whose process group is `pgid`, from /proc (psutil is not installed)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # exited while we looked
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid:  # field 5 of stat(5): pgrp
            members.append(int(entry.name))
    return members


def test_error_ratio_and_p95_read_back_as_configured(slots, demo_app):
    prom, ports = slots
    cases = [(0.3, 0.4), (0.05, 0.05), (0.0, 0.008), (0.1, 0.001)]
    apps = [demo_app(f"r{i}", port=next(ports), error_ratio=e, latency_s=latency) for i, (e, latency) in enumerate(cases)]
    for app in apps:
        _wait_scraped(prom, app, samples=4)
    for app, (ratio, latency) in zip(apps, cases, strict=True):
        sel = f'instance="{app.target}"'
        assert prom.value(RATIO_5XX.format(sel=sel, w="3s")) == pytest.approx(ratio, abs=0.01)
        assert prom.value(P95.format(sel=sel, w="3s")) == pytest.approx(latency, rel=0.3)  # quantile of a few samples, bucket interpolation


def test_oom_kills_in_new_release_settings_show_as_increase(slots, demo_app):
    prom, ports = slots
    r1 = demo_app("r1", port=next(ports))
    _wait_scraped(prom, r1)
    r1.stop()
    # The new release's counter starts at 0 and jumps oom_delay_s (default 3 s) later, so
    # Prometheus sees the 0 first: increase() ignores the first sample of a series.
    r2 = demo_app("r2", port=r1.port, oom_kills=2)
    query = f'increase(demo_oom_kills_total{{instance="{r2.target}"}}[30s])'
    prom.wait_for_series(f"{query} > 0", timeout=15)
    # increase() extrapolates to the window's edges: "about 2", not exactly 2.
    assert prom.value(query) >= 1.5


def test_control_changes_what_prometheus_sees(slots, demo_app):
    prom, ports = slots
    app = demo_app(port=next(ports), error_ratio=0.0, latency_s=0.05)
    _wait_scraped(prom, app, samples=2)
    sel = f'instance="{app.target}"'
    assert prom.value(RATIO_5XX.format(sel=sel, w="3s")) == 0.0
    app.control(error_ratio=0.5, latency_s=0.4, oom_kills=3, oom_delay_s=0)
    prom.wait_for_series(f"{RATIO_5XX.format(sel=sel, w='3s')} > 0.49", timeout=10)
    prom.wait_for_series(f"{P95.format(sel=sel, w='3s')} > 0.39", timeout=10)
    prom.wait_for_series(f"increase(demo_oom_kills_total{{{sel}}}[10s]) > 0", timeout=10)


def test_new_release_on_same_port_replaces_build_info_at_once(slots, demo_app):
    prom, ports = slots
    r1 = demo_app("r1", port=next(ports))
    prom.wait_for_series(f'app_build_info{{instance="{r1.target}",release="r1"}}', timeout=10)
    r1.stop()
    r2 = demo_app("r2", port=r1.port)
    prom.wait_for_series(f'app_build_info{{instance="{r2.target}",release="r2"}}', timeout=10)
    # The old release's series went stale: no overlap for a deploy detector to trip on.
    assert prom.query(f'app_build_info{{instance="{r1.target}",release="r1"}}') == []


def test_rule_files_are_loaded_and_evaluated(prometheus, tmp_path):
    rules = tmp_path / "rules.yml"
    rules.write_text(RECORDING_RULE)
    prom = prometheus([], rule_files=[rules])
    prom.wait_for_series("sandbox:one", timeout=10)


def test_restart_keeps_stored_data_and_port(prometheus, tmp_path):
    # A recording rule gives data within one evaluation, without the 5 s wait for a scrape.
    rules = tmp_path / "rules.yml"
    rules.write_text(RECORDING_RULE)
    prom = prometheus([], rule_files=[rules])
    prom.wait_for_series("count_over_time(sandbox:one[1m]) >= 2", timeout=10)
    before = prom.value("count_over_time(sandbox:one[1m])")
    url = prom.url
    prom.restart()
    assert prom.url == url
    assert prom.value("count_over_time(sandbox:one[1m])") >= before


def test_stopped_prometheus_refuses_connections_until_started_again(prometheus):
    prom = prometheus([])
    prom.stop()
    with pytest.raises(httpx.ConnectError):
        prom.query("up")
    prom.start()
    assert prom.query("vector(1)")[0]["value"][1] == "1"


def test_set_targets_reloads_and_scrapes_new_target(prometheus, demo_app):
    prom = prometheus([])
    app = demo_app("r9")
    prom.set_targets([app.target])
    prom.wait_for_series('app_build_info{release="r9"}', timeout=15)


def test_stop_leaves_no_process_behind(prometheus_bin, tmp_path):
    app = DemoAppProcess(tmp_path).start()
    prom = PrometheusServer(tmp_path, [app.target], binary=prometheus_bin).start()
    pids = [app.pid, prom.pid]
    prom.stop()
    app.stop()
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}")
        assert _group_members(pid) == []
    prom.stop()  # a second stop is harmless


def test_context_managers_stop_processes_when_body_raises(prometheus_bin, tmp_path):
    pids = []
    with pytest.raises(RuntimeError):
        with DemoAppProcess(tmp_path) as app, PrometheusServer(tmp_path, [app.target], binary=prometheus_bin) as prom:
            pids = [app.pid, prom.pid]
            raise RuntimeError("test body failed")
    assert pids and not any(os.path.exists(f"/proc/{pid}") for pid in pids)


def test_missing_binary_fails_start_with_install_hint(tmp_path):
    with pytest.raises(SandboxError, match="make test"):
        PrometheusServer(tmp_path, [], binary="prometheus-not-installed").start()


def test_bad_config_fails_start_with_log_tail(prometheus_bin, tmp_path):
    server = PrometheusServer(tmp_path, [], binary=prometheus_bin, extra_config={"no_such_field": 1})
    with pytest.raises(SandboxError, match="no_such_field"):
        server.start()
    assert not server.running()


def test_demo_stack_is_ready_with_data(demo_stack):
    assert demo_stack.prometheus.value(RATIO_5XX.format(sel="", w="1m")) == 0.0
