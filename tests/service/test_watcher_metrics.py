"""The watcher's own /metrics from a real `rollback-watcher run`: what monitoring/alerts.yml
alerts on (halted, paused, paused-until, undelivered per target, rollbacks by result) is
exported and follows the state, and docs/metrics.md names exactly the families exported.

The undelivered target is a json:// URL on a closed loopback port: every delivery is refused.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from support import free_port, run_cli, wait_for

REPO = Path(__file__).resolve().parents[2]
RULES = "rules:\n  - name: health\n    http: HEALTH_URL\n    failures: 2\n    action: rollback\n"


def cli(*args, **kwargs):
    kwargs.setdefault("cwd", REPO)
    return run_cli(*args, **kwargs)


class Metrics:
    def __init__(self, url: str):
        self.url = url

    def families(self) -> dict:
        try:
            text = httpx.get(self.url, timeout=5).text
        except httpx.HTTPError:
            return {}
        return {f.name: f for f in text_string_to_metric_families(text)}

    def value(self, name: str, **labels) -> float | None:
        for family in self.families().values():
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    return sample.value
        return None

    def samples(self, name: str) -> list:
        return [s for f in self.families().values() for s in f.samples if s.name == name]


def documented() -> set[str]:
    text = (REPO / "docs" / "metrics.md").read_text()
    return set(re.findall(r"^\| `(rollback_watcher_[a-z_]+)` \|", text, re.M))


def test_halted_paused_undelivered_and_rollback_results_are_exported_and_documented(symlink_host, start_watcher):
    host = symlink_host
    host.add_release("r1")
    host.add_release("r2", health=503)
    host.deploy("r1")
    port = free_port()
    dead_target = f"json://127.0.0.1:{free_port()}/hook"
    cfg = host.write_config(RULES, telemetry={"listen": f"127.0.0.1:{port}"}, notify=[{"url": dead_target}])
    cli("mark", "good", "r1", "--config", cfg, check=True)
    start_watcher(cfg)
    m = Metrics(f"http://127.0.0.1:{port}/metrics")
    wait_for(lambda: m.value("rollback_watcher_last_tick_timestamp_seconds"), 60, what="the first tick's metrics")

    assert m.value("rollback_watcher_halted") == 0
    assert m.value("rollback_watcher_paused") == 0
    assert m.value("rollback_watcher_paused_until_timestamp_seconds") == 0
    for result in ("verified", "not_verified", "failed"):
        # Present at 0 before the first rollback, so that increase() sees the first one.
        assert m.value("rollback_watcher_rollbacks_total", result=result) == 0, result

    cli("pause", "--for", "1h", "--config", cfg, check=True)
    wait_for(lambda: m.value("rollback_watcher_paused") == 1, 30, what="paused = 1")
    until = m.value("rollback_watcher_paused_until_timestamp_seconds")
    assert time.time() + 3000 < until < time.time() + 3700
    cli("resume", "--config", cfg, check=True)
    wait_for(lambda: m.value("rollback_watcher_paused") == 0, 30, what="paused = 0")
    assert m.value("rollback_watcher_paused_until_timestamp_seconds") == 0

    # The rollback target answers 503 too: the rollback does not verify and the watcher halts.
    (host.releases / "r1" / "health_status").write_text("503\n")
    host.deploy("r2")
    wait_for(lambda: m.value("rollback_watcher_halted") == 1, 90, what="halted = 1")
    assert m.value("rollback_watcher_rollbacks_total", result="not_verified") == 1
    assert m.value("rollback_watcher_rollbacks_total", result="verified") == 0

    undelivered = wait_for(lambda: [s for s in m.samples("rollback_watcher_undelivered_messages") if s.value >= 1],
                           90, what="an undelivered message counted for the dead target")
    assert "127.0.0.1" in undelivered[0].labels["target"]

    cli("resolve", "--config", cfg, check=True)
    wait_for(lambda: m.value("rollback_watcher_halted") == 0, 30, what="halted = 0 after resolve")

    # prometheus_client's text format shows each counter's and histogram's `_created` series as
    # a family of its own; docs/metrics.md mentions them once, not per metric.
    exported = {f.name + ("_total" if f.type == "counter" else "") for f in m.families().values()
                if not f.name.endswith("_created")}
    assert exported == documented(), "docs/metrics.md must name exactly the exported families"
