"""Writes monitoring/dashboard.json, the Grafana dashboard for rollback-watcher itself.

The JSON is generated so that its panels stay a readable list here; run
`python monitoring/build_dashboard.py` after changing it (`--print` writes it to stdout) (tests/monitoring checks that the
committed file is what this script writes, and that every metric it uses is documented).
"""

from __future__ import annotations

import json
from pathlib import Path

SEL = 'job="rollback-watcher", instance=~"$instance"'

# (title, kind, width, height, [(expr, legend)], unit, description)
PANELS = [
    ("Current release", "stat", 8, 4, [(f"max by (instance, release, mark) (rollback_watcher_release_info{{{SEL}}})",
                                         "{{instance}} {{release}} ({{mark}})")], "none",
     "The release each watcher sees as current, and its mark (good, bad, unmarked)."),
    ("In watch window", "stat", 4, 4, [(f"rollback_watcher_in_watch_window{{{SEL}}}", "{{instance}}")], "none",
     "1 while the current release is inside its watch window: a firing rollback rule rolls it back."),
    ("Halted (needs a human)", "stat", 4, 4, [(f"rollback_watcher_halted{{{SEL}}}", "{{instance}}")], "none",
     "1 after a rollback failed or did not verify: nothing is done until `rollback-watcher resolve`."),
    ("Paused", "stat", 4, 4, [(f"rollback_watcher_paused{{{SEL}}}", "{{instance}}")], "none",
     "1 while paused (`rollback-watcher pause --for D`): it notifies, never acts."),
    ("Seconds since the last tick", "stat", 4, 4,
     [(f"time() - rollback_watcher_last_tick_timestamp_seconds{{{SEL}}}", "{{instance}}")], "s",
     "Should stay below the interval plus one tick's duration; alert RollbackWatcherNotTicking at 180 s."),
    ("Rule phase (0 inactive, 1 pending, 2 firing)", "timeseries", 12, 8,
     [(f"max by (instance, rule) (rollback_watcher_rule_state{{{SEL}}})", "{{instance}} {{rule}}")], "none",
     "Each rule's state machine."),
    ("Blind rules", "timeseries", 12, 8,
     [(f"max by (instance, rule) (rollback_watcher_rule_blind{{{SEL}}})", "{{instance}} {{rule}}")], "none",
     "1 while a rule cannot read its signal (error_limit consecutive errors): it would miss a bad deploy."),
    ("Evaluations by outcome /s", "timeseries", 12, 8,
     [(f"sum by (outcome) (rate(rollback_watcher_evaluations_total{{{SEL}}}[5m]))", "{{outcome}}")], "ops",
     "ok / breach / no_data / error, over all rules."),
    ("Signal read errors /s", "timeseries", 12, 8,
     [(f"sum by (instance, rule) (rate(rollback_watcher_query_errors_total{{{SEL}}}[5m]))", "{{instance}} {{rule}}")],
     "ops", "Prometheus queries and probes that failed (timeouts, 5xx, bad PromQL, connection refused)."),
    ("Signal read time p95", "timeseries", 12, 8,
     [(f"histogram_quantile(0.95, sum by (kind, le) (rate(rollback_watcher_query_duration_seconds_bucket{{{SEL}}}[5m])))",
       "{{kind}}")], "s", "Time to read one signal, by kind (PromQuery, HttpCheck, HostCheck)."),
    ("Tick duration p50 / p95", "timeseries", 12, 8,
     [(f"histogram_quantile(0.5, sum by (le) (rate(rollback_watcher_tick_duration_seconds_bucket{{{SEL}}}[5m])))", "p50"),
      (f"histogram_quantile(0.95, sum by (le) (rate(rollback_watcher_tick_duration_seconds_bucket{{{SEL}}}[5m])))", "p95")],
     "s", "A tick longer than the interval delays detection."),
    ("Rollbacks by result", "timeseries", 12, 8,
     [(f"sum by (instance, result) (increase(rollback_watcher_rollbacks_total{{{SEL}}}[1h]))", "{{instance}} {{result}}")],
     "none", "verified / not_verified / failed, per hour."),
    ("Undelivered messages by target", "timeseries", 12, 8,
     [(f"max by (instance, target) (rollback_watcher_undelivered_messages{{{SEL}}})", "{{instance}} {{target}}")],
     "none", "Messages that failed every retry and wait for the next; the target is shown redacted."),
]


def panel(pid: int, x: int, y: int, spec) -> dict:
    title, kind, w, h, targets, unit, description = spec
    p = {
        "id": pid, "type": kind, "title": title, "description": description,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": [{"refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend,
                     "datasource": {"type": "prometheus", "uid": "${datasource}"}}
                    for i, (expr, legend) in enumerate(targets)],
    }
    if kind == "stat":
        p["options"] = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                        "textMode": "value_and_name", "colorMode": "background"}
    return p


def dashboard() -> dict:
    panels, x, y, row_h = [], 0, 0, 0
    for i, spec in enumerate(PANELS, start=1):
        w, h = spec[2], spec[3]
        if x + w > 24:
            x, y, row_h = 0, y + row_h, 0
        panels.append(panel(i, x, y, spec))
        x, row_h = x + w, max(row_h, h)
    return {
        "title": "rollback-watcher",
        "uid": "rollback-watcher",
        "description": "The watcher itself: is it ticking, can it see, did it act, can it tell people. "
                       "Metrics: docs/metrics.md; alerts: monitoring/alerts.yml.",
        "tags": ["rollback-watcher"],
        "schemaVersion": 38,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": [
            {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Prometheus"},
            {"name": "instance", "type": "query", "label": "instance", "multi": True, "includeAll": True,
             "datasource": {"type": "prometheus", "uid": "${datasource}"},
             "query": {"query": 'label_values(rollback_watcher_last_tick_timestamp_seconds{job="rollback-watcher"}, instance)',
                       "refId": "instance"},
             "definition": 'label_values(rollback_watcher_last_tick_timestamp_seconds{job="rollback-watcher"}, instance)',
             "refresh": 2},
        ]},
        "annotations": {"list": []},
        "panels": panels,
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2) + "\n"


if __name__ == "__main__":
    import sys

    if "--print" in sys.argv[1:]:
        sys.stdout.write(render())
    else:
        (Path(__file__).parent / "dashboard.json").write_text(render())
