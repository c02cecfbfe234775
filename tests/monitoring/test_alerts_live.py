"""monitoring/ against the real thing: a real Prometheus scrapes a real `rollback-watcher run`
(job="rollback-watcher", as monitoring/alerts.yml expects), loads alerts.yml, and answers every
dashboard query. A rollback that does not verify (the target's /health answers 503 too) must
make RollbackWatcherHalted and RollbackWatcherRollbackFailed fire in that Prometheus: the second
only because every rollback result is exported at 0 before the first rollback.
"""

from __future__ import annotations

import json
from pathlib import Path

from support import PrometheusServer, WatcherProcess, free_port, run_cli, wait_for

ROOT = Path(__file__).resolve().parents[2]
RULES = "rules:\n  - name: health\n    http: HEALTH_URL\n    failures: 2\n    action: rollback\n"


def firing(prom: PrometheusServer) -> set[str]:
    import httpx

    alerts = httpx.get(f"{prom.url}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
    return {a["labels"]["alertname"] for a in alerts if a["state"] == "firing"}


def test_a_real_prometheus_fires_halted_and_rollback_failed_for_a_rollback_that_did_not_verify(
    prometheus_bin, symlink_host, tmp_path
):
    host = symlink_host
    host.add_release("r1")
    host.add_release("r2", health=503)
    host.deploy("r1")
    port = free_port()
    cfg = host.write_config(RULES, telemetry={"listen": f"127.0.0.1:{port}"})
    run_cli("mark", "good", "r1", "--config", cfg, check=True)
    watcher = WatcherProcess(cfg, tmp_path / "watcher.log")
    prom = PrometheusServer(tmp_path / "prometheus", [], binary=prometheus_bin, evaluation_interval=1.0,
                            rule_files=[ROOT / "monitoring" / "alerts.yml"],
                            extra_config={"scrape_configs": [{"job_name": "rollback-watcher",
                                                              "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}]})
    try:
        prom.start()
        prom.wait_for_series('rollback_watcher_halted{job="rollback-watcher"} == 0', timeout=60)

        dashboard = json.loads((ROOT / "monitoring" / "dashboard.json").read_text())
        for panel in dashboard["panels"]:
            for target in panel["targets"]:
                prom.query(target["expr"].replace("$instance", ".*"))  # raises on a Prometheus error
        assert prom.query('rollback_watcher_release_info{job="rollback-watcher", release="r1", mark="good"}')

        (host.releases / "r1" / "health_status").write_text("503\n")  # the target will not verify
        host.deploy("r2")
        got = wait_for(lambda: {"RollbackWatcherHalted", "RollbackWatcherRollbackFailed"} <= firing(prom) and firing(prom),
                       timeout=120, what="RollbackWatcherHalted and RollbackWatcherRollbackFailed to fire")
        assert "RollbackWatcherDown" not in got and "RollbackWatcherNotTicking" not in got
    finally:
        prom.stop()
        watcher.stop()
