"""The watcher's own /metrics and /healthz, served by a real `rollback-watcher run`."""

import httpx

from support import free_port, run_cli, wait_for
from watcher.service.telemetry import Telemetry

RULES = "rules:\n  - name: health\n    http: HEALTH_URL\n    failures: 2\n    action: rollback\n"


def metric(text: str, series: str) -> float | None:
    """The value of one exposition line, named with its labels as printed."""
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        if name == series:
            return float(value)
    return None


def test_metrics_and_healthz_report_rules_release_and_rollbacks(symlink_host, start_watcher):
    host = symlink_host
    host.add_release("r1")
    host.add_release("r2", health=503)
    host.deploy("r1")
    port = free_port()
    cfg = host.write_config(RULES, telemetry={"listen": f"127.0.0.1:{port}"})
    w = start_watcher(cfg)
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: _get(base + "/healthz") == 200, 20, what="/healthz 200 after the first tick")
    body = httpx.get(base + "/metrics", timeout=5).text
    assert metric(body, 'rollback_watcher_rule_state{rule="health"}') == 0
    assert metric(body, 'rollback_watcher_release_info{mark="unmarked",release="r1"}') == 1
    assert metric(body, "rollback_watcher_last_tick_timestamp_seconds") > 0
    assert metric(body, "rollback_watcher_in_watch_window") == 1

    run_cli("mark", "good", "r1", "--config", cfg, check=True)
    host.deploy("r2")
    wait_for(lambda: "rollback_verified" in host.kinds(), 20, what="the rollback")
    wait_for(lambda: metric(httpx.get(base + "/metrics", timeout=5).text,
                            'rollback_watcher_rollbacks_total{result="verified"}') == 1, 10, what="the counter")
    assert w.stop() == 0


def _get(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return None


def test_healthz_is_503_when_ticks_stop():
    now = [1000.0]
    t = Telemetry(interval=15, clock=lambda: now[0])
    assert not t.healthy()  # no tick yet
    t.tick_done(0.01)
    assert t.healthy()
    now[0] += 3 * 15 + 31
    assert not t.healthy()
