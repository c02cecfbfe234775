"""The backtest against a real Prometheus whose history was backfilled with
`promtool tsdb create-blocks-from openmetrics`: a known incident at a known time, hours ago.

History (15 s scrapes, from 6 h ago to 1 h ago): 10 requests/s, 1% 5xx; release r1, then a
deploy of r2 at INCIDENT (3 h in) after which half the requests fail for 15 minutes.
Prometheus 2.42 loads backfilled blocks at start (overlapping blocks are allowed by default
since 2.39); the head is empty, so every block is older than it.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from support import PrometheusServer, free_port
from watcher.actions import backtest as bt
from watcher.config.load import load_config
from watcher.signals.prometheus import PrometheusSource

REPO = Path(__file__).resolve().parents[2]
STEP = 15.0
RATE = 10.0  # requests per second


def _history(start: float, end: float, incident: float) -> str:
    """OpenMetrics text: counters of 200s and 500s and an info metric naming the release."""
    times = [start + i * STEP for i in range(int((end - start) / STEP) + 1)]
    ok, err = 0.0, 0.0
    lines_ok, lines_err, lines_info = [], [], []
    for t in times:
        bad = incident <= t < incident + 900
        share = 0.5 if bad else 0.01
        ok += RATE * STEP * (1 - share)
        err += RATE * STEP * share
        lines_ok.append(f'http_requests_total{{code="200"}} {ok:.0f} {t:.0f}')
        lines_err.append(f'http_requests_total{{code="500"}} {err:.0f} {t:.0f}')
        lines_info.append(f'app_build_info{{release="{"r2" if t >= incident else "r1"}"}} 1 {t:.0f}')
    return "\n".join(
        ["# HELP http_requests Requests.", "# TYPE http_requests counter", *lines_ok, *lines_err,
         "# HELP app_build_info Build.", "# TYPE app_build_info gauge", *lines_info, "# EOF", ""]
    )


@pytest.fixture(scope="module")
def history(prometheus_bin: str, tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp("backfill")
    now = time.time()
    start = (now - 6 * 3600) // 3600 * 3600  # on the hour, so that blocks align
    end = start + 5 * 3600
    incident = start + 3 * 3600
    (work / "history.om").write_text(_history(start, end, incident))
    promtool = shutil.which("promtool") or "/usr/bin/promtool"
    subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", str(work / "history.om"), str(work / "data")],
                   check=True, capture_output=True, timeout=60)
    server = PrometheusServer(work, [f"127.0.0.1:{free_port()}"], scrape_interval=15.0, binary=prometheus_bin)
    server.start()
    try:
        server.wait_for_series(f'http_requests_total @ {incident:.0f}', timeout=15)
        (work / "watcher.yaml").write_text(
            f"service: shop\nprometheus: {{url: '{server.url}', scrape_interval: 15s, timeout: 10s}}\n"
            f"rules: ['{REPO / 'rules' / 'default.yaml'}']\nstate_dir: {work / 'state'}\n"
        )
        yield {"cfg": load_config(work / "watcher.yaml"), "source": PrometheusSource(server.url, 10.0),
               "start": start, "end": end, "incident": incident}
    finally:
        server.stop()


def test_incident_after_deploy_is_reported_as_rollback_of_r2_within_one_step(history):
    h = history
    result = bt.run_backtest(h["cfg"], h["source"], h["start"] + 3600, h["end"], STEP,
                             [bt.Deploy(h["incident"], "r2")])
    rollbacks = result.rollbacks()
    assert [(r.release, r.rule) for r in rollbacks] == [("r2", "http-5xx-ratio")]
    # Breaching from the first step after the deploy, firing 2m (`for`) later.
    expected = h["incident"] + 120
    assert expected <= rollbacks[0].at <= expected + STEP
    ratio = next(r for r in result.rules if r.rule.name == "http-5xx-ratio")
    [episode] = ratio.episodes
    assert episode.peak == pytest.approx(0.5, abs=0.02) and episode.margin == pytest.approx(0.4, abs=0.02)
    assert h["incident"] + 900 <= episode.end <= h["incident"] + 900 + 4 * STEP
    skipped = {r.rule.name: r.skipped for r in result.rules if r.skipped}
    assert "not replayed" in skipped["health-endpoint"]
    assert result.queries <= 6 * 4  # chunked range queries plus the few short-window steps


def test_quiet_period_reports_nothing_pending_and_no_rollback(history):
    h = history
    result = bt.run_backtest(h["cfg"], h["source"], h["start"] + 600, h["incident"] - 600, STEP,
                             [bt.Deploy(h["start"] + 3600, "r1")])
    assert result.rollbacks() == []
    assert all(r.episodes == [] for r in result.rules)
    ratio = next(r for r in result.rules if r.rule.name == "http-5xx-ratio")
    assert ratio.closest == pytest.approx(0.01, abs=0.005)
    assert "no rollback would have happened" in bt.render_text(result, str)


def test_auto_deploys_find_the_release_change_of_the_info_metric(history):
    h = history
    found = bt.auto_deploys(h["source"], "app_build_info", "release", h["start"], h["end"], STEP)
    assert [d.release for d in found] == ["r2"]
    assert abs(found[0].at - h["incident"]) <= STEP


def test_range_longer_than_11000_points_from_a_fractional_start_is_chunked_and_finds_the_incident(history):
    h = history
    # A 1 s step over 4 h is 14,401 points: Prometheus refuses that in one query. A start with
    # sub-millisecond parts (`--since 7d` is now - 7d) must still line the answers up.
    result = bt.run_backtest(h["cfg"], h["source"], h["start"] + 3600.12345, h["end"], 1.0,
                             [bt.Deploy(h["incident"], "r2")], ["http-5xx-ratio"])
    [rb] = result.rollbacks()
    assert rb.release == "r2" and h["incident"] + 120 <= rb.at <= h["incident"] + 120 + STEP
