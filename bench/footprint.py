"""Footprint: RSS of `rollback-watcher run` with the default table over thousands of short
ticks (sampled from /proc/PID/status), and CLI start-up time."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
from common import BIN, REPO, Proc, median, slope, wait_for
from tickcost import default_table, write_config

from support import free_port


def rss_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def ticks_done(port: int) -> int | None:
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2, trust_env=False).text
    except httpx.HTTPError:
        return None
    for line in text.splitlines():
        if line.startswith("rollback_watcher_tick_duration_seconds_count"):
            return int(float(line.split()[-1]))
    return None


def bench_rss(results, env, seconds: float = 100.0, interval_ms: int = 40, log=print):
    work = Path(tempfile.mkdtemp(prefix="bench-rss-"))
    port = free_port()
    path, host = write_config(work, env, default_table(env), interval=f"{interval_ms}ms",
                              telemetry={"listen": f"127.0.0.1:{port}"}, scrape="15s")
    proc = Proc([str(BIN / "rollback-watcher"), "run", "--config", str(path)], work / "watcher.log")
    samples = []  # (ticks, seconds, rss_kb)
    try:
        wait_for(lambda: ticks_done(port), 30, what="the watcher's first tick")
        t0 = time.monotonic()
        log(f"    footprint: run at interval {interval_ms} ms for {seconds:.0f} s, sampling RSS")
        while time.monotonic() - t0 < seconds:
            n, kb = ticks_done(port), rss_kb(proc.pid)
            if n is not None and kb is not None:
                samples.append((n, time.monotonic() - t0, kb))
            time.sleep(1.0)
        alive = proc.proc.poll() is None
    finally:
        proc.stop()
        host.close()
        shutil.rmtree(work, ignore_errors=True)
    results.raw["rss"] = samples
    if not samples:
        results.add("footprint", "RSS", "no samples", "< 60 MB", False)
        return
    warm = [s for s in samples if s[0] >= samples[0][0] + 200] or samples  # after the first 200 ticks
    start_mb, end_mb, peak_mb = warm[0][2] / 1024, samples[-1][2] / 1024, max(s[2] for s in samples) / 1024
    ticks = samples[-1][0]
    per_1k = slope([(s[0] / 1000, s[2] / 1024) for s in warm])  # MB per 1,000 ticks
    results.add("footprint", f"RSS after {ticks:,} ticks (default table)", f"{end_mb:.1f} MB", "< 60 MB", end_mb < 60,
                note="" if alive else "watcher died")
    results.add("footprint", f"RSS after warm-up (tick {warm[0][0]}) -> end", f"{start_mb:.1f} -> {end_mb:.1f} MB")
    results.add("footprint", "RSS peak", f"{peak_mb:.1f} MB")
    results.add("footprint", "RSS slope per 1,000 ticks (flat: ~0)", f"{per_1k * 1024:+.0f} KB",
                "flat (< 256 KB)", abs(per_1k * 1024) < 256)
    results.add("footprint", "  => growth over 10,000 ticks", f"{per_1k * 10:+.1f} MB")


def time_cmd(argv, runs=10) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
        times.append(time.perf_counter() - t)
    return median(times)


def bench_startup(results, runs=10):
    exe = str(BIN / "rollback-watcher")
    time_cmd([exe, "--help"], 2)  # warm the page cache
    t_help = time_cmd([exe, "--help"], runs)
    t_check = time_cmd([exe, "check", "--config", "examples/watcher.yaml"], runs)
    t_python = time_cmd([str(BIN / "python"), "-c", "pass"], runs)
    results.raw["startup"] = {"help": t_help, "check": t_check, "python": t_python}
    results.add("startup", f"rollback-watcher --help (median of {runs})", f"{t_help * 1000:.0f} ms", "< 300 ms", t_help < 0.3)
    results.add("startup", "rollback-watcher check --config examples/watcher.yaml", f"{t_check * 1000:.0f} ms",
                "< 300 ms", t_check < 0.3)
    results.add("startup", "  (bare `python -c pass` on this machine)", f"{t_python * 1000:.0f} ms")
