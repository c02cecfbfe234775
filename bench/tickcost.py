"""Tick cost: Watcher.tick() in this process against the Env's Prometheus, with 10, 100 and
1,000 Prometheus rules plus 50 HTTP probes, and the default rule table. Wall time with
perf_counter, CPU time with time.process_time() (all threads of this process)."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from common import REPO, SymlinkHost, median, ms

from support import cpu_seconds
from watcher.config.load import load_config
from watcher.service.build import build_watcher


def rule_table(n: int, env, probes: int = 50, fleet: bool = True) -> list[dict]:
    """n Prometheus rules over the Env's series, plus `probes` HTTP probes. With fleet=True one
    rule in ten aggregates over the whole fleet (~2,000 series each); without, every rule
    selects one target or pod (a few to ~20 series), as a per-service table would."""
    apps = [a.target for a in env.apps]
    rules = []
    for i in range(n):
        app, pod = apps[i % len(apps)], f"pod-{i % env.pods}"
        k = i % 10
        if k <= 3:
            q = (f'sum(rate(http_requests_total{{instance="{app}",code=~"5.."}}[$window])) / '
                 f'sum(rate(http_requests_total{{instance="{app}"}}[$window]))')
            r = {"query": q, "above": 0.10, "for": "2m"}
        elif k == 4:
            q = f'histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket{{instance="{app}"}}[5m])))'
            r = {"query": q, "above": 0.5, "for": "2m"}
        elif k in (5, 6):
            q = (f'sum(rate(bench_http_requests_total{{pod="{pod}",code=~"5.."}}[1m])) / '
                 f'sum(rate(bench_http_requests_total{{pod="{pod}"}}[1m]))')
            r = {"query": q, "above": 0.5}
        elif k == 7:
            q = f'histogram_quantile(0.95, sum by (le) (rate(bench_http_request_duration_seconds_bucket{{pod="{pod}"}}[5m])))'
            r = {"query": q, "above": 20}
        elif k == 8 and not fleet:
            q = (f'sum by (path) (rate(bench_http_requests_total{{pod="{pod}",code=~"5.."}}[1m])) / '
                 f'sum by (path) (rate(bench_http_requests_total{{pod="{pod}"}}[1m]))')
            r = {"query": q, "above": 0.5}
        elif k == 8:
            q = ('sum by (path) (rate(bench_http_requests_total{code=~"5.."}[1m])) / '
                 'sum by (path) (rate(bench_http_requests_total[1m]))')
            r = {"query": q, "above": 0.5}
        else:
            q = 'max(rate(prometheus_http_requests_total[1m]))'
            r = {"query": q, "above": 1e6}
        rules.append({"name": f"rule-{i}", **r, "action": "notify"})
    for j in range(probes):
        rules.append({"name": f"probe-{j}", "http": f"{env.health_url}?p={j}", "failures": 3, "timeout": "2s",
                      "action": "notify"})
    return rules


def default_table(env) -> list[dict]:
    import yaml
    doc = yaml.safe_load((REPO / "rules" / "default.yaml").read_text())
    for r in doc["rules"]:
        if "http" in r:
            r["http"] = env.health_url
    return doc["rules"]


def write_config(work: Path, env, rules: list[dict], concurrency: int = 8, interval: str = "15s",
                 telemetry=False, scrape: str | None = None) -> tuple[Path, SymlinkHost]:
    host = SymlinkHost(work / "host", releases=("r1", "r2"), serve=False)
    host.deploy("r1")
    (work / "rules.yaml").write_text(json.dumps({"rules": rules}))
    cfg = {
        "service": "bench", "host": "bench", "interval": interval,
        "prometheus": {"url": env.prom.url, "timeout": "5s", "scrape_interval": scrape or f"{env.scrape_s:g}s",
                       "max_concurrency": concurrency},
        "rules": [str(work / "rules.yaml")], "watch_window": "30m",
        "backend": {"type": "symlink", "releases": str(host.releases), "current": str(host.current)},
        "verify": {"url": env.health_url, "attempts": 3, "every": "1s"},
        "state_dir": str(host.state_dir), "telemetry": telemetry,
    }
    path = work / "watcher.yaml"
    path.write_text(json.dumps(cfg))
    return path, host


def measure(env, rules: list[dict], concurrency: int = 8, ticks: int = 5, scrape: str | None = None) -> dict:
    work = Path(tempfile.mkdtemp(prefix="bench-tick-"))
    path, host = write_config(work, env, rules, concurrency, scrape=scrape)
    w = build_watcher(load_config(path), notify=False)
    w.start()
    try:
        w.tick()  # the first start: a deploy, baselines
        w.tick()
        walls, cpus, prom_cpus = [], [], []
        for _ in range(ticks):
            p0 = cpu_seconds(env.prom.pid)
            c0, t0 = time.process_time(), time.perf_counter()
            report = w.tick()
            walls.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
            prom_cpus.append(cpu_seconds(env.prom.pid) - p0)
        errors = sum(1 for r in report.rows if r["outcome"] == "error")
    finally:
        w.reader.close()
        import shutil
        shutil.rmtree(work, ignore_errors=True)
    n_prom = sum(1 for r in rules if "query" in r)
    wall = median(walls)
    return {"wall": wall, "cpu": median(cpus), "qps": n_prom / wall if wall else None, "errors": errors,
            "walls": walls, "cpus": cpus, "prom_cpu": median(prom_cpus)}


def bench(results, env, log=print):
    raw = results.raw.setdefault("tick", {})
    results.add("tick", "Prometheus head series (realistic load)", f"{env.series():,}")
    for n in (10, 100, 1000):
        m = measure(env, rule_table(n, env), 8, ticks=5 if n < 1000 else 4)
        raw[f"{n}+50probes@8"] = m
        target, ok = ("< 1 s wall", m["wall"] < 1.0) if n == 1000 else ("", None)
        results.add("tick", f"{n} rules + 50 probes, concurrency 8: wall/tick", ms(m["wall"]), target, ok,
                    note=f"errors {m['errors']}")
        results.add("tick", f"{n} rules + 50 probes, concurrency 8: CPU/tick", ms(m["cpu"]))
        results.add("tick", f"{n} rules + 50 probes, concurrency 8: queries/s", f"{m['qps']:.0f}")
        results.add("tick", f"{n} rules + 50 probes: Prometheus' own CPU/tick", ms(m["prom_cpu"]))
    w10, w100, w1000 = (raw[f"{n}+50probes@8"]["wall"] for n in (10, 100, 1000))
    results.add("tick", "growth: wall(1000) / wall(100)  (linear: <= ~10)", f"{w1000 / w100:.1f}x")
    results.add("tick", "CPU per Prometheus rule at 1000 (CPU/tick / 1050 signals)",
                f"{raw['1000+50probes@8']['cpu'] / 1050 * 1000:.2f} ms")
    m = raw["1000+50probes@8"]
    floor = (m["cpu"] + m["prom_cpu"]) / 2
    results.add("tick", "1000 rules: (watcher + Prometheus CPU) / 2 cores = wall floor", ms(floor),
                note="the machine is shared")
    m = measure(env, rule_table(1000, env, fleet=False), 8, ticks=4)
    raw["1000selective+50probes@8"] = m
    results.add("tick", "1000 selective rules (no fleet-wide sums) + 50 probes: wall/tick", ms(m["wall"]), "< 1 s wall",
                m["wall"] < 1.0)
    results.add("tick", "  same: watcher CPU / Prometheus CPU per tick", f"{ms(m['cpu'])} / {ms(m['prom_cpu'])}")
    for c in (1, 4, 16):
        m = measure(env, rule_table(1000, env), c, ticks=3)
        raw[f"1000+50probes@{c}"] = m
        results.add("tick", f"1000 rules + 50 probes, concurrency {c:>2}: wall/tick", ms(m["wall"]),
                    note=f"{m['qps']:.0f} q/s")
    # scrape_interval 15s as in examples/watcher.yaml: with a shorter one the p95 rule's baseline
    # range query asks for step "7.5s", which Prometheus refuses (see bench/README.md).
    m = measure(env, default_table(env), 8, ticks=7, scrape="15s")
    raw["default"] = m
    pct = m["cpu"] / 15.0 * 100
    results.add("tick", "default table: wall/tick", ms(m["wall"]))
    results.add("tick", "default table: CPU/tick", ms(m["cpu"]))
    results.add("tick", "default table: CPU share of one core at 15 s", f"{pct:.3f} %", "< 5 %", pct < 5)
