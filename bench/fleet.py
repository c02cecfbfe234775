"""The fleet: how fast a verdict reaches N watchers, and what a host costs etcd and Prometheus.

    propagation   N = 5, 20, 50 watchers as processes (`rollback-watcher run`, interval 1 s), a
                  3-member etcd on loopback. Every host deploys r2; only host 0 sees it fail
                  (its /health answers 503), rolls back and writes the verdict at its rollback
                  intent. Measured from that verdict's `at` (host 0's clock, the same machine):
                  arrival at each other host (its `fleet_verdict` journal line) and its switch
                  (its `rollback_switched` line). Median and max over the N-1 others.
    etcd load     requests per host per minute while nothing happens (lease beat, membership,
                  the watch reopened every 30 s), read from the watchers' own telemetry.
    Prometheus    CPU seconds of a real Prometheus per host-tick: K watchers each evaluating the
                  two default PromQL rules of one demo app at interval 1 s.

Figures, not pass/fail; the machine is shared (see the load average printed at the start).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import time
from pathlib import Path

import httpx
from common import median, ms, sec

from support import DemoAppProcess, PrometheusServer, SymlinkHost, WatcherProcess, cpu_seconds, free_port, wait_for
from support.etcd import EtcdCluster
from watcher.core.model import ReleaseRecord
from watcher.store.state import State, StateStore

HEALTH_RULE = """rules:
  - name: health-endpoint
    http: HEALTH_URL
    expect_status: 200
    timeout: 2s
    failures: 2
    action: rollback
"""

PROM_RULES = """rules:
  - name: http-5xx-ratio
    query: sum(rate(http_requests_total{code=~"5..",SEL}[$window])) / sum(rate(http_requests_total{SEL}[$window]))
    above: 0.10
    for: 2m
    action: rollback
  - name: p95-latency
    query: histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket{SEL}[$window])))
    above: 0.5
    for: 2m
    action: rollback
"""


def _host(root: Path, i: int, endpoints: list[str], fleet: str, rules: str, extra: dict) -> tuple[SymlinkHost, Path]:
    host = SymlinkHost(root / f"h{i}", ("r1",))
    host.add_release("r2", health=503 if i == 0 else 200)
    host.deploy("r1")
    # r1 known-good from the start, as `mark good r1` would make it (50 CLI runs cost minutes).
    store = StateStore(host.state_dir)
    store.ensure_dir()
    store.save(State(releases={"r1": ReleaseRecord("r1", mark="good")}))
    cfg = {"host": f"h{i}", "watch_window": "10m",
           "telemetry": {"listen": f"127.0.0.1:{free_port()}"},
           "fleet": {"etcd": endpoints, "name": fleet, "host": f"h{i}", "lease": "15s", "timeout": "2s"},
           **extra}
    path = host.write_config(rules, **cfg)
    return host, path


def _metric(listen: str, name: str) -> float | None:
    try:
        text = httpx.get(f"http://{listen}/metrics", timeout=5, trust_env=False).text
    except httpx.HTTPError:
        return None
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def _journal_time(host: SymlinkHost, kind: str, **match) -> float | None:
    for e in host.journal():
        if e["kind"] == kind and all(e.get(k) == v for k, v in match.items()):
            return e["time"]
    return None


def propagation(n: int, endpoints: list[str], log) -> dict:
    root = Path(tempfile.mkdtemp(prefix=f"bench-fleet-{n}-"))
    hosts, procs = [], []
    try:
        for i in range(n):
            hosts.append(_host(root, i, endpoints, f"bench{n}", HEALTH_RULE, {}))
        for i, (_host_config, path) in enumerate(hosts):
            procs.append(WatcherProcess(path, root / f"h{i}.log"))
        wait_for(lambda: all(h.journal() for h, _ in hosts), 240, every=0.5, what=f"{n} watchers started")
        time.sleep(3)  # every watcher ticking and joined
        # etcd requests per host per minute, while nothing happens
        listens = [json.loads(p.read_text())["telemetry"]["listen"] for _, p in hosts]
        quiet = 30.0
        before = [_metric(listen, "rollback_watcher_fleet_etcd_requests") for listen in listens[:5]]
        time.sleep(quiet)
        after = [_metric(listen, "rollback_watcher_fleet_etcd_requests") for listen in listens[:5]]
        per_min = [(a - b) * 60 / quiet for a, b in zip(after, before, strict=True) if a is not None and b is not None]
        for host, _ in hosts:
            host.deploy("r2")
        deployed = time.time()
        wait_for(lambda: all(_journal_time(h, "rollback_switched", release="r2") for h, _ in hosts), 300,
                 every=0.5, what=f"all {n} hosts switched back")
        verdict_at = next(e for e in hosts[0][0].journal() if e["kind"] == "rollback_intent")["time"]
        # `delay` of a fleet_verdict line: from the verdict's write to its arrival by the watch;
        # the line's own time is the next tick, which takes it into account.
        learned = [next((e for e in h.journal() if e["kind"] == "fleet_verdict" and e.get("release") == "r2"), None)
                   for h, _ in hosts[1:]]
        arrive = [e["delay"] for e in learned if e is not None]
        taken = [e["time"] - verdict_at for e in learned if e is not None]
        switched = [_journal_time(h, "rollback_switched", release="r2") for h, _ in hosts[1:]]
        switch = [s - verdict_at for s in switched if s is not None]
        return {"n": n, "arrival_median": median(arrive), "arrival_max": max(arrive) if arrive else None,
                "tick_median": median(taken), "tick_max": max(taken) if taken else None,
                "switch_median": median(switch), "switch_max": max(switch) if switch else None,
                "detect": verdict_at - deployed, "etcd_req_per_min": median(per_min)}
    finally:
        stoppers = [threading.Thread(target=p.stop) for p in procs]
        for t in stoppers:
            t.start()
        for t in stoppers:
            t.join()
        for host, _ in hosts:
            host.close()
        shutil.rmtree(root, ignore_errors=True)


def prometheus_cost(k: int, endpoints: list[str], log, ticks_s: float = 30.0) -> dict:
    """Prometheus CPU per host-tick with k watchers, each with the two PromQL rules of the
    default table on one demo app, interval 1 s."""
    root = Path(tempfile.mkdtemp(prefix="bench-fleet-prom-"))
    app = DemoAppProcess(root / "app", "r1").start()
    prom = PrometheusServer(root / "prom", [app.target]).start()
    procs, hosts = [], []
    try:
        prom.wait_for_series('count_over_time(up{job="demo"}[1m]) >= 3', timeout=60)
        rules = PROM_RULES.replace("SEL", f'instance="{app.target}"')
        for i in range(k):
            host, path = _host(root, i, endpoints, "benchprom", rules,
                               {"prometheus": {"url": prom.url, "timeout": "5s", "scrape_interval": "1s"}})
            hosts.append(host)
            procs.append(WatcherProcess(path, root / f"h{i}.log"))
        wait_for(lambda: all(h.journal() for h in hosts), 240, every=0.5, what=f"{k} watchers started")
        time.sleep(5)
        idle0 = cpu_seconds(prom.pid)
        for p in procs:
            p.proc.send_signal(19)  # SIGSTOP: Prometheus alone (scrapes, TSDB) for the baseline
        time.sleep(ticks_s / 2)
        idle = (cpu_seconds(prom.pid) - idle0) / (ticks_s / 2)
        for p in procs:
            p.proc.send_signal(18)  # SIGCONT
        time.sleep(2)
        c0, t0 = cpu_seconds(prom.pid), time.monotonic()
        time.sleep(ticks_s)
        busy = (cpu_seconds(prom.pid) - c0) / (time.monotonic() - t0)
        per_host_tick = max(0.0, busy - idle) / k  # interval 1 s: one tick per host per second
        return {"k": k, "prom_cpu_per_s": busy, "prom_idle_per_s": idle, "per_host_tick": per_host_tick}
    finally:
        for p in procs:
            p.stop()
        for h in hosts:
            h.close()
        prom.stop()
        app.stop()
        shutil.rmtree(root, ignore_errors=True)


def bench(results, log=print, sizes=(5, 20, 50)):
    raw = results.raw.setdefault("fleet", {})
    with EtcdCluster(Path(tempfile.mkdtemp(prefix="bench-etcd-"))) as etcd:
        for n in sizes:
            log(f"  fleet: {n} watchers, one bad deploy (about {20 + n} s)")
            m = propagation(n, etcd.endpoints, log)
            raw[f"propagation_{n}"] = m
            results.add("fleet", f"N={n}: verdict -> arrival by watch, median / max",
                        f"{ms(m['arrival_median'])} / {ms(m['arrival_max'])}")
            results.add("fleet", f"N={n}: verdict -> taken by the next tick, median / max",
                        f"{sec(m['tick_median'])} / {sec(m['tick_max'])}")
            results.add("fleet", f"N={n}: verdict -> last host switched, median / max",
                        f"{sec(m['switch_median'])} / {sec(m['switch_max'])}", "< 1 s + 1 tick (2 s)",
                        m["switch_max"] is not None and m["switch_max"] < 2.0)
            results.add("fleet", f"N={n}: etcd requests per host per minute (quiet)", f"{m['etcd_req_per_min']:.1f}")
        log("  fleet: Prometheus CPU per host-tick, 20 watchers x 2 PromQL rules")
        p = prometheus_cost(20, etcd.endpoints, log)
        raw["prometheus"] = p
        results.add("fleet", "Prometheus CPU per host-tick (2 default PromQL rules)", f"{p['per_host_tick'] * 1000:.2f} ms",
                    note=f"busy {p['prom_cpu_per_s']:.3f} / idle {p['prom_idle_per_s']:.3f} CPU-s/s")
