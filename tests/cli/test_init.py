"""`rollback-watcher init` against a fresh real Prometheus scraping the Python app on the real
prometheus_client (lazy labels, no request served yet) and Debian's node_exporter: it writes a
config that passes `check --online`, says what it chose and why, and never replaces a file."""

from __future__ import annotations

import os
import time

import pytest
import yaml

from support import PrometheusServer, free_port, run_cli
from support.realapps import NodeExporter, PythonApp


@pytest.fixture(scope="module")
def host(prometheus_bin, tmp_path_factory):
    work = tmp_path_factory.mktemp("init")
    app = PythonApp(work / "app", "r1")
    node = NodeExporter(work / "node")
    prom = PrometheusServer(work / "prom", [app.target, node.target], binary=prometheus_bin)
    with prom, app, node:
        prom.wait_for_series('count(up{job="demo"} == 1) == 2', timeout=30)
        yield prom, app, node, work


def srv(work):
    releases = work / "srv" / "releases"
    (releases / "r1").mkdir(parents=True, exist_ok=True)
    current = work / "srv" / "current"
    if not current.is_symlink():
        os.symlink("releases/r1", current)
    return releases, current


def init(prom, config, *extra, work):
    releases, current = srv(work)
    return run_cli("init", "--prometheus", prom.url, "--config", config, "--state-dir", work / "state",
                   "--releases", releases, "--current", current, "--telemetry", f"127.0.0.1:{free_port()}", *extra,
                   timeout=120)


def test_init_writes_a_config_that_passes_check_online_and_says_why(host, tmp_path):
    prom, app, node, work = host
    config = tmp_path / "etc" / "watcher.yaml"
    done = init(prom, config, "--health-url", f"{app.url}/health", work=work)
    assert done.returncode == 0, done.stdout + done.stderr
    text = done.stdout
    assert f"app: {app.target}" in text and "pack python-prometheus-client" in text and "python_info" in text
    assert f"host: {node.target}" in text and "pack node-exporter" in text
    assert "valid;" in text and "signals answered" in text
    # A fresh app with lazy labels: the ratio has no data yet, and check says what follows: its
    # health probe (--health-url) sees it serving, so releases can still become known-good.
    assert "no data now from" in text and "http-5xx-ratio" in text, text
    assert "releases can still become known-good: health" in text, text
    cfg = yaml.safe_load(config.read_text())
    assert cfg["prometheus"]["labels"] == {"instance": app.target}
    assert cfg["vars"] == {"node_exporter": node.target}
    assert sorted(p.name for p in (config.parent / "rules").iterdir()) == [
        "health.yaml", "node-exporter.yaml", "python-prometheus-client.yaml"]


def test_once_the_app_serves_its_rules_read_data_and_the_known_good_warning_goes(host, tmp_path):
    prom, app, node, work = host
    config = tmp_path / "etc" / "watcher.yaml"
    app.control(rps=10)
    try:
        prom.wait_for_series(f'sum(rate(http_requests_total{{instance="{app.target}"}}[5s])) > 0', timeout=30)
        time.sleep(1)
        done = init(prom, config, "--health-url", f"{app.url}/health", work=work)
    finally:
        app.control(rps=0)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "releases cannot become known-good" not in done.stdout, done.stdout
    assert "pack python-prometheus-client: it exports http_request_duration_seconds_bucket, http_requests_total" \
        in done.stdout


def test_a_second_init_keeps_every_file(host, tmp_path):
    prom, app, node, work = host
    config = tmp_path / "watcher.yaml"
    assert init(prom, config, work=work).returncode == 0
    config.write_text(config.read_text() + "# edited by hand\n")
    done = init(prom, config, work=work)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("kept ") == 3 and "wrote" not in done.stdout
    assert config.read_text().endswith("# edited by hand\n")


def test_an_instance_prometheus_does_not_scrape_exits_2_listing_the_targets(host, tmp_path):
    prom, app, node, work = host
    done = init(prom, tmp_path / "watcher.yaml", "--instance", "web-9:8000", work=work)
    assert done.returncode == 2
    assert "no target with instance 'web-9:8000'" in done.stdout and app.target in done.stdout
    assert not (tmp_path / "watcher.yaml").exists()
