"""`make bench`: the performance figures of issue 9, against a real Prometheus on loopback.

    python bench/run.py [--only reaction,multiwindow,judge,tick,footprint,startup,pictures,switch,backtest,fleet]
                        [--reaction-reps N] [--rss-seconds S] [--json FILE]

Prints each figure as it is measured, then one table with the targets beside them. Every
process started here is stopped here (each in its own process group). Figures are medians;
the machine may be shared and noisy, so read ratios rather than single values.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
# The test rigs (tests/support) are shared with the benchmarks.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from common import Results  # noqa: E402

SECTIONS = ("reaction", "multiwindow", "judge", "tick", "footprint", "startup", "pictures", "switch", "backtest",
            "fleet")


def machine() -> str:
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    load = os.getloadavg()
    return (f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M}Z, {os.cpu_count()} cores, {mem_gib:.0f} GiB, "
            f"Python {platform.python_version()}, load average at start {load[0]:.1f}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default=",".join(SECTIONS))
    ap.add_argument("--reaction-reps", type=int, default=1)
    ap.add_argument("--rss-seconds", type=float, default=90.0)
    ap.add_argument("--judge-runs", type=int, default=10_000, help="judge: runs per cell at or below the limit")
    ap.add_argument("--json", type=Path, help="also write every raw figure here")
    args = ap.parse_args(argv)
    only = set(args.only.split(","))
    started = time.monotonic()
    print(f"rollback-watcher benchmarks: {machine()}", flush=True)
    results = Results()
    env = None

    def log(msg):
        print(msg, flush=True)

    try:
        if only & {"tick", "footprint"}:
            # Started first, so that its TSDB fills (rate windows full) while the reaction
            # benchmark runs; its load (3 demo apps, one exporter, scrapes at 1 s) is light.
            from env import Env
            log("  starting the tick-cost Prometheus (3 demo apps + a ~3,400-series exporter)")
            env = Env().__enter__()
        if "reaction" in only:
            import reaction
            log("  reaction: one demo app, Prometheus, Alertmanager, two watchers (about 2.5 minutes)")
            reaction.bench(results, args.reaction_reps, log)
        if "multiwindow" in only:
            import multiwindow
            log("  multiwindow: a fault and a warm-up burst, with and without the trailing window (about 1.5 minutes)")
            multiwindow.bench(results, args.reaction_reps, log)
        if "judge" in only:
            import judge
            log("  judge: held thresholds and the sequential judge on simulated counter streams (about 2 minutes)")
            judge.bench(results, log, runs=args.judge_runs)
        if "tick" in only:
            import tickcost
            tickcost.bench(results, env, log)
        if "footprint" in only:
            import footprint
            footprint.bench_rss(results, env, seconds=args.rss_seconds, log=log)
        if env is not None:
            env.__exit__()
            env = None
        if "startup" in only:
            import footprint
            footprint.bench_startup(results)
        if "pictures" in only:
            import picture_cost
            picture_cost.bench(results, log)
        if "switch" in only:
            import switch
            switch.bench(results, log)
        if "backtest" in only:
            import backtest_speed
            backtest_speed.bench(results, log)
        if "fleet" in only:
            import fleet
            fleet.bench(results, log)
    finally:
        if env is not None:
            env.__exit__()
    total = time.monotonic() - started
    print()
    print(f"rollback-watcher benchmarks: {machine()}")
    print(results.table())
    print(f"\nbench wall time {total:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "rows": [r.__dict__ for r in results.rows],
                                         "raw": results.raw, "seconds": total}, indent=1, default=str))
    missed = [r for r in results.rows if r.ok is False]
    if missed:
        print(f"{len(missed)} target(s) missed: see bench/README.md for what limits them")
    return 0


if __name__ == "__main__":
    sys.exit(main())
