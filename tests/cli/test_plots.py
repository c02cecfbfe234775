"""`explain RULE --plot FILE` and `incidents ID --plot FILE` (issue 24, item 2): the CLI as a
subprocess against a real Prometheus scraping the demo app (conftest.demo_stack)."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from support import run_cli

RATIO = 'sum(rate(http_requests_total{code=~"5..",job="demo"}[$window])) / sum(rate(http_requests_total{job="demo"}[$window]))'
RULES = f"""rules:
  - name: http-5xx-ratio
    query: '{RATIO}'
    above: 0.1
    for: 10s
    value_unit: "%"
    action: rollback
  - name: health
    http: http://127.0.0.1:9/health
    failures: 3
    action: rollback
"""


@pytest.fixture
def config(symlink_host, demo_stack):
    symlink_host.add_release("r1")
    symlink_host.deploy("r1")
    return symlink_host.write_config(RULES, prometheus={"url": demo_stack.prometheus.url, "scrape_interval": "1s"},
                                     min_window="3s", max_window="1m")


def png_size(data: bytes) -> tuple[int, int]:
    assert data.startswith(b"\x89PNG\r\n\x1a\n"), data[:16]
    image = Image.open(io.BytesIO(data))
    image.load()
    assert image.format == "PNG"
    return image.size


def test_explain_plot_writes_a_png_of_the_rule_and_says_where(config, tmp_path):
    path = tmp_path / "ratio.png"
    done = run_cli("explain", "http-5xx-ratio", "--plot", path, "--config", config)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "rule       http-5xx-ratio" in done.stdout  # the explanation is still printed
    assert f"wrote {path}: http-5xx-ratio from " in done.stdout
    assert png_size(path.read_bytes()) == (960, 540)


def test_explain_plot_with_json_keeps_stdout_for_the_json(config, tmp_path):
    import json

    path = tmp_path / "ratio.png"
    done = run_cli("explain", "http-5xx-ratio", "--json", "--plot", path, "--config", config)
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["rule"] == "http-5xx-ratio"
    assert f"wrote {path}" in done.stderr
    assert png_size(path.read_bytes()) == (960, 540)


def test_explain_plot_of_a_probe_says_there_is_nothing_to_plot_and_writes_nothing(config, tmp_path):
    path = tmp_path / "health.png"
    done = run_cli("explain", "health", "--plot", path, "--config", config)
    assert done.returncode == 1
    assert "health reads an HTTP probe: Prometheus has no series of it to plot" in done.stdout + done.stderr
    assert not path.exists()


def test_explain_plot_with_prometheus_down_says_so_and_writes_nothing(symlink_host, tmp_path):
    symlink_host.add_release("r1")
    symlink_host.deploy("r1")
    config = symlink_host.write_config(RULES, prometheus={"url": "http://127.0.0.1:9", "timeout": "1s"})
    path = tmp_path / "ratio.png"
    done = run_cli("explain", "http-5xx-ratio", "--plot", path, "--config", config)
    assert done.returncode == 1
    assert "cannot reach Prometheus" in done.stdout + done.stderr
    assert not path.exists()


def test_incidents_plot_needs_an_incident_id(config, tmp_path):
    done = run_cli("incidents", "--plot", tmp_path / "x.png", "--config", config)
    assert done.returncode == 2
    assert "--plot needs an incident ID" in done.stdout + done.stderr


def test_incidents_plot_of_an_unknown_incident_says_so(config, tmp_path):
    done = run_cli("incidents", "feedc0ffee00", "--plot", tmp_path / "x.png", "--config", config)
    assert done.returncode == 1
    assert "no incident 'feedc0ffee00'" in done.stdout + done.stderr
    assert not (tmp_path / "x.png").exists()
