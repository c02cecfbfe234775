"""The backtest replays the trailing window the live tick reads beside a `[$window]` rule, so a
warm-up burst that live would not roll back is not reported as "would have rolled back".

History backfilled into a real Prometheus (`promtool tsdb create-blocks-from openmetrics`),
15 s scrapes: 10 requests/s with 0.5% 5xx, a deploy of r2 at DEPLOY whose first 45 s answer
half the requests with 500, then 0.5% again. With `max_window: 5m` the ratio since the deploy
stays above 10% for about 3.5 minutes (the burst dominates it), the 45 s trailing window for
about 1.5 minutes: with `for: 2m`, only the rule without a trailing window fires.
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
BURST = 45.0
RULES = """rules:
  - name: http-5xx-ratio
    query: sum(rate(http_requests_total{code=~"5.."}[$window])) / sum(rate(http_requests_total[$window]))
    above: 0.10
    for: 2m
    action: rollback
    TRAILING
"""


def _history(start: float, end: float, deploy: float) -> str:
    ok = err = 0.0
    lines_ok, lines_err = [], []
    t = start
    while t <= end:
        share = 0.5 if deploy <= t < deploy + BURST else 0.005
        ok += RATE * STEP * (1 - share)
        err += RATE * STEP * share
        lines_ok.append(f'http_requests_total{{code="200"}} {ok:.0f} {t:.0f}')
        lines_err.append(f'http_requests_total{{code="500"}} {err:.0f} {t:.0f}')
        t += STEP
    return "\n".join(["# HELP http_requests Requests.", "# TYPE http_requests counter", *lines_ok, *lines_err,
                      "# EOF", ""])


@pytest.fixture(scope="module")
def warmup(prometheus_bin: str, tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp("warmup")
    start = (time.time() - 4 * 3600) // 3600 * 3600  # on the hour, so that blocks align
    end, deploy = start + 2 * 3600, start + 3600
    (work / "history.om").write_text(_history(start, end, deploy))
    promtool = shutil.which("promtool") or "/usr/bin/promtool"
    subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", str(work / "history.om"),
                    str(work / "data")], check=True, capture_output=True, timeout=60)
    server = PrometheusServer(work, [f"127.0.0.1:{free_port()}"], scrape_interval=15.0, binary=prometheus_bin)
    server.start()
    try:
        server.wait_for_series(f"http_requests_total @ {deploy:.0f}", timeout=15)

        def config(trailing: str):
            rules = work / f"rules-{trailing or 'default'}.yaml"
            rules.write_text(RULES.replace("TRAILING", f'trailing: "{trailing}"' if trailing else ""))
            path = work / f"watcher-{trailing or 'default'}.yaml"
            path.write_text(f"service: shop\nprometheus: {{url: '{server.url}', scrape_interval: 15s, timeout: 10s}}\n"
                            f"max_window: 5m\nrules: ['{rules}']\nstate_dir: {work / 'state'}\n")
            return load_config(path)

        yield {"config": config, "source": PrometheusSource(server.url, 10.0), "deploy": deploy}
    finally:
        server.stop()


def _replay(h, trailing: str):
    deploy = h["deploy"]
    return bt.run_backtest(h["config"](trailing), h["source"], deploy - 600, deploy + 900, STEP,
                           [bt.Deploy(deploy, "r2")])


def test_a_warm_up_burst_is_not_a_rollback_with_the_trailing_window_live_reads(warmup):
    result = _replay(warmup, "")
    assert result.rollbacks() == [], bt.render_text(result, str)
    [ratio] = result.rules
    # It breached (pending) while the burst dominated the deploy window, `for` (2m) ran out,
    # and the trailing window, clean by then, held the firing back until the breach ended.
    assert ratio.episodes and all(e.end is not None and e.fired_at is None for e in ratio.episodes)
    assert max(e.end - e.start for e in ratio.episodes) > 120, ratio.episodes


def test_the_same_burst_would_have_rolled_back_without_it(warmup):
    result = _replay(warmup, "off")
    assert [(r.release, r.rule) for r in result.rollbacks()] == [("r2", "http-5xx-ratio")]
    fired = result.rollbacks()[0].at - warmup["deploy"]
    assert 120 <= fired <= 120 + 3 * STEP, fired
