"""The backtest replays a judge rule (`judge: sequential`) from its counters' raw samples, on the
code the live reader counts with (signals/counts.counts_at).

History backfilled into a real Prometheus (`promtool tsdb create-blocks-from openmetrics`), 15 s
scrapes, 10 requests/s at 0.5% 5xx; r2 deployed at DEPLOY fails 30% of its requests for good,
r3 deployed an hour later fails 50% for its first 45 s (a cold start), then 0.5% again.
"""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest

from support import PrometheusServer, free_port
from watcher.actions import backtest as bt
from watcher.config.load import load_config
from watcher.signals.prometheus import PrometheusSource

STEP = 15.0
RATE = 10.0
RULES = """rules:
  - name: http-5xx-judge
    judge: sequential
    errors: http_requests_total{code=~"5.."}
    total: http_requests_total
    above: 0.10
    WARMUP
    action: rollback
"""


def _share(t: float, bad: float, cold: float) -> float:
    if bad <= t < cold:
        return 0.30
    if cold <= t < cold + 45:
        return 0.50
    return 0.005


def _history(start: float, end: float, bad: float, cold: float) -> str:
    ok = err = 0.0
    lines_ok, lines_err = [], []
    t = start
    while t <= end:
        share = _share(t, bad, cold)
        ok += RATE * STEP * (1 - share)
        err += RATE * STEP * share
        lines_ok.append(f'http_requests_total{{code="200"}} {ok:.0f} {t:.0f}')
        lines_err.append(f'http_requests_total{{code="500"}} {err:.0f} {t:.0f}')
        t += STEP
    return "\n".join(["# HELP http_requests Requests.", "# TYPE http_requests counter", *lines_ok, *lines_err,
                      "# EOF", ""])


@pytest.fixture(scope="module")
def history(prometheus_bin: str, tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp("judge-backtest")
    start = (time.time() - 4 * 3600) // 3600 * 3600  # on the hour, so that blocks align
    bad, cold = start + 3600, start + 2 * 3600
    (work / "history.om").write_text(_history(start, start + 3 * 3600, bad, cold))
    promtool = shutil.which("promtool") or "/usr/bin/promtool"
    subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", str(work / "history.om"),
                    str(work / "data")], check=True, capture_output=True, timeout=60)
    server = PrometheusServer(work, [f"127.0.0.1:{free_port()}"], scrape_interval=15.0, binary=prometheus_bin)
    server.start()
    try:
        server.wait_for_series(f"http_requests_total @ {cold:.0f}", timeout=15)

        def config(warmup: str):
            rules = work / f"rules-{warmup or 'none'}.yaml"
            rules.write_text(RULES.replace("WARMUP", f"warmup: {warmup}" if warmup else ""))
            path = work / f"watcher-{warmup or 'none'}.yaml"
            path.write_text(f"service: shop\nprometheus: {{url: '{server.url}', scrape_interval: 15s, timeout: 10s}}\n"
                            f"rules: ['{rules}']\nstate_dir: {work / 'state'}\n")
            return load_config(path)

        yield {"config": config, "source": PrometheusSource(server.url, 10.0), "bad": bad, "cold": cold}
    finally:
        server.stop()


def _replay(h, warmup: str, release: str, at: float):
    return bt.run_backtest(h["config"](warmup), h["source"], at - 300, at + 600, STEP, [bt.Deploy(at, release)])


def test_a_judge_rule_would_have_rolled_back_the_30_percent_release_within_a_minute(history):
    (replay,) = _replay(history, "", "r2", history["bad"]).rules
    assert not replay.skipped
    assert [rb.release for rb in replay.rollbacks] == ["r2"]
    assert replay.rollbacks[0].at - history["bad"] <= 60
    assert "99.9% confidence" in replay.rollbacks[0].reason


def test_a_cold_start_inside_the_declared_warm_up_is_not_a_rollback(history):
    (replay,) = _replay(history, "60s", "r3", history["cold"]).rules
    assert replay.rollbacks == []
    (without,) = _replay(history, "", "r3", history["cold"]).rules
    assert [rb.release for rb in without.rollbacks] == ["r3"]  # the same burst, counted
