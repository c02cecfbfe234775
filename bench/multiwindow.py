"""The trailing window's trade-off (issue 13, item 3b): detection delay of a real fault against
the false rollback of a warm-up burst, with and without the trailing window.

One Prometheus (scrape 1 s), two demo apps, four symlink hosts, four watchers with the SHIPPED
5xx rule (rules/default.yaml) at `for: 10s` and no `prometheus.scrape_interval` (learned):

    fault-trailing   30% 5xx from the deploy on; the default trailing window
    fault-off        the same fault; `trailing: off` (the since-deploy window alone)
    burst-trailing   50% 5xx for the first 6 s after the deploy, then healthy; default trailing
    burst-off        the same burst; `trailing: off`

Figures: onset -> firing for the fault (the cost of the trailing window: none while the fault
lasts), and whether the burst was rolled back (the benefit).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

import yaml
from common import PY, REPO, Proc, SymlinkHost, cli, median, sec, wait_for

from support import DemoAppProcess, PrometheusServer

PIPELINES = ("fault-trailing", "fault-off", "burst-trailing", "burst-off")
BURST_S = 6.0
WATCH_S = 45.0  # after the deploy: > the burst + `for` + the time its average takes to decay


def shipped_5xx(instance: str, trailing_off: bool) -> dict:
    rule = next(r for r in yaml.safe_load((REPO / "rules" / "default.yaml").read_text())["rules"]
                if r["name"] == "http-5xx-ratio")
    rule = dict(rule, **{"for": "10s"})
    rule["query"] = rule["query"].replace("http_requests_total{", f'http_requests_total{{instance="{instance}",')
    rule["query"] = rule["query"].replace("http_requests_total[", f'http_requests_total{{instance="{instance}"}}[')
    if trailing_off:
        rule["trailing"] = "off"
    return rule


def _config(host: SymlinkHost, prom_url: str, rule: dict) -> Path:
    rules = host.root / "rules.yaml"
    rules.write_text(json.dumps({"rules": [rule]}))
    cfg = {"service": "bench", "host": "bench", "interval": "1s", "prometheus": {"url": prom_url, "timeout": "2s"},
           "rules": [str(rules)], "watch_window": "10m",
           "backend": {"type": "symlink", "releases": str(host.releases), "current": str(host.current)},
           "verify": {"url": host.health_url, "attempts": 5, "every": "200ms"},
           "state_dir": str(host.state_dir), "telemetry": False}
    path = host.root / "watcher.yaml"
    path.write_text(json.dumps(cfg))
    return path


def run_once(work: Path, log=print) -> dict:
    procs: list = []
    hosts: dict[str, SymlinkHost] = {}
    apps: dict[str, DemoAppProcess] = {}
    prom = None
    try:
        apps = {kind: DemoAppProcess(work / f"app-{kind}", "r1", settings={"error_ratio": 0.0}).start()
                for kind in ("fault", "burst")}
        prom = PrometheusServer(work / "prom", targets=[a.target for a in apps.values()]).start()
        prom.wait_for_series('count(up{job="demo"} == 1) == 2', timeout=30)
        hosts = {p: SymlinkHost(work / p, releases=("r1", "r2")) for p in PIPELINES}
        for name, host in hosts.items():
            host.deploy("r1")
            app = apps[name.split("-")[0]]
            cfg = _config(host, prom.url, shipped_5xx(app.target, name.endswith("-off")))
            r = cli("mark", "good", "r1", "--config", cfg)
            if r.returncode != 0:
                raise RuntimeError(f"mark good failed: {r.stdout}{r.stderr}")
            procs.append(Proc([PY, "-m", "watcher", "run", "--config", str(cfg)], work / f"{name}.log"))
        for name in PIPELINES:
            wait_for(lambda name=name: any(e["kind"] == "start" for e in hosts[name].journal()), 60, what=f"{name} start")
        time.sleep(15)  # healthy traffic before the deploy
        onset = time.time()
        for host in hosts.values():
            host.deploy("r2")
        apps["fault"].control(error_ratio=0.3)
        apps["burst"].control(error_ratio=0.5)
        log(f"    multiwindow: deployed; 30% 5xx on one app, a {BURST_S:.0f} s burst of 50% on the other")
        time.sleep(max(0.0, onset + BURST_S - time.time()))
        apps["burst"].control(error_ratio=0.0)
        time.sleep(max(0.0, onset + WATCH_S - time.time()))
        out = {}
        for name, host in hosts.items():
            journal = host.journal()
            firing = next((e for e in journal if e["kind"] == "rule" and e.get("after") == "firing"
                           and e["time"] >= onset - 0.5), None)
            out[name] = {"firing": firing["time"] - onset if firing else None,
                         "rolled_back": any(e["kind"] == "rollback_switched" for e in journal)}
        return out
    finally:
        for p in reversed(procs):
            p.stop()
        if prom:
            prom.stop()
        for app in apps.values():
            app.stop()
        for h in hosts.values():
            h.close()


def bench(results, reps: int = 1, log=print):
    runs = []
    for _ in range(reps):
        work = Path(tempfile.mkdtemp(prefix="bench-multiwindow-"))
        try:
            runs.append(run_once(work, log))
        finally:
            shutil.rmtree(work, ignore_errors=True)
    results.raw["multiwindow"] = runs
    rep = f"{reps} run{'s' if reps > 1 else ''}"
    for name in ("fault-trailing", "fault-off"):
        results.add("multiwindow", f"{name}: 30% 5xx, onset -> firing", sec(median([r[name]["firing"] for r in runs])),
                    note=rep)
    for name in ("burst-trailing", "burst-off"):
        rolled = sum(r[name]["rolled_back"] for r in runs)
        results.add("multiwindow", f"{name}: 6 s warm-up burst rolled back", f"{rolled} of {len(runs)}",
                    "0" if name == "burst-trailing" else "(the false rollback)",
                    rolled == 0 if name == "burst-trailing" else None)
