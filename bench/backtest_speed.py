"""Backtest speed: 7 days at a 15 s step for the default rule table against a local Prometheus
whose TSDB holds 7 days of backfilled history (promtool tsdb create-blocks-from openmetrics)."""

from __future__ import annotations

import json
import math
import random
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from common import REPO, median

DAY = 86400.0
STEP = 15.0
LES = ("0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "+Inf")


def write_history(path: Path, start: float, end: float, bad: list[tuple[float, float]]) -> int:
    """7 days of the default table's metrics; 30% 5xx inside the `bad` intervals."""
    times = [start + i * STEP for i in range(int((end - start) / STEP))]
    rng = random.Random(7)
    ok, err = [], []
    c_ok = c_err = 0.0
    for t in times:
        is_bad = any(a <= t < b for a, b in bad)
        n = 50 * STEP
        c_err += n * (0.3 if is_bad else 0.001)
        c_ok += n * (0.7 if is_bad else 0.999)
        ok.append(c_ok)
        err.append(c_err)
    lines = []
    base = 'instance="127.0.0.1:8000",job="app"'

    def family(name, series):
        lines.append(f"# TYPE {name} gauge")
        for labels, values in series:
            lab = "{" + ",".join([base] + [f'{k}="{v}"' for k, v in labels.items()]) + "}"
            lines.extend(f"{name}{lab} {v:.6g} {t:.0f}" for t, v in zip(times, values, strict=True))

    family("http_requests_total", [({"code": "200"}, ok), ({"code": "500"}, err)])
    total = [a + b for a, b in zip(ok, err, strict=True)]
    buckets = []
    for i, le in enumerate(LES):
        share = 1.0 if le == "+Inf" else min(1.0, (i + 1) / len(LES) + 0.2)
        buckets.append(({"le": le}, [x * share for x in total]))
    family("http_request_duration_seconds_bucket", buckets)
    family("node_vmstat_oom_kill", [({}, [0.0] * len(times))])
    cpu = []
    for c in ("0", "1"):
        idle = user = 0.0
        ivals, uvals = [], []
        for _ in times:
            busy = rng.uniform(0.05, 0.4)
            idle += STEP * (1 - busy)
            user += STEP * busy
            ivals.append(idle)
            uvals.append(user)
        cpu += [({"cpu": c, "mode": "idle"}, ivals), ({"cpu": c, "mode": "user"}, uvals)]
    family("node_cpu_seconds_total", cpu)
    lines.append("# EOF")
    path.write_text("\n".join(lines) + "\n")
    return len(lines)


def bench(results, log=print):
    try:
        from watcher.actions import backtest as bt
    except ImportError:
        results.add("backtest", "7 days @ 15 s, default table", "not measured", "< 5 s", note="no watcher/actions/backtest.py")
        return
    from support import PrometheusServer
    from watcher.config.load import load_config
    from watcher.signals.prometheus import PrometheusSource

    work = Path(tempfile.mkdtemp(prefix="bench-backtest-"))
    prom = None
    try:
        end = math.floor(time.time() / STEP) * STEP - 300
        start = end - 7 * DAY
        deploys = [start + d * DAY + 10 * 3600 for d in range(7)]
        bad = [(deploys[3], deploys[3] + 900)]  # one bad release: 30% 5xx for 15 min after its deploy
        t = time.perf_counter()
        n = write_history(work / "history.om", start - 3600, end, bad)
        prom = PrometheusServer(work / "prom", targets=[], scrape_interval=15, evaluation_interval=15)
        prom.targets = [f"127.0.0.1:{prom.port}"]
        subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", "--max-block-duration=24h",
                        str(work / "history.om"), str(prom.storage)], check=True, capture_output=True, timeout=300)
        prom.start(timeout=60)
        prep = time.perf_counter() - t
        log(f"    backtest: {n:,} samples backfilled and Prometheus up in {prep:.1f} s")
        rules = work / "rules.yaml"
        shutil.copy(REPO / "rules" / "default.yaml", rules)
        cfg_path = work / "watcher.yaml"
        cfg_path.write_text(json.dumps({
            "service": "bench", "host": "bench", "interval": "15s",
            "prometheus": {"url": prom.url, "timeout": "60s", "scrape_interval": "15s"},
            "rules": [str(rules)], "watch_window": "30m", "state_dir": str(work / "state"), "telemetry": False}))
        cfg = load_config(cfg_path)
        source = PrometheusSource(prom.url, timeout=60)
        dep = [bt.Deploy(at, f"r{i + 1}") for i, at in enumerate(deploys)]
        times, out = [], None
        for _ in range(3):
            t = time.perf_counter()
            out = bt.run_backtest(cfg, source, start, end, STEP, dep)
            times.append(time.perf_counter() - t)
        rolled = out.rollbacks() if out is not None and callable(getattr(out, "rollbacks", None)) else []
        results.raw["backtest"] = {"times": times, "queries": getattr(out, "queries", None)}
        m = median(times)
        results.add("backtest", "7 days @ 15 s, default table (median of 3)", f"{m:.2f} s", "< 5 s", m < 5,
                    note=f"first {times[0]:.2f} s")
        results.add("backtest", "  first (cold) run", f"{times[0]:.2f} s")
        results.add("backtest", "  queries sent per backtest", f"{getattr(out, 'queries', 'n/a')}")
        results.add("backtest", "  would have rolled back (1 bad deploy planted)",
                    ", ".join(f"{r.release} by {r.rule}" for r in rolled) or "none")
    finally:
        if prom:
            prom.stop()
        shutil.rmtree(work, ignore_errors=True)
