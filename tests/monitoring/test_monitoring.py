"""The watcher's own alerting rules and dashboard (monitoring/), checked with the real promtool.

    promtool check rules monitoring/alerts.yml
    promtool test rules  monitoring/alerts_test.yml   (every alert has a firing case)
    monitoring/dashboard.json is what monitoring/build_dashboard.py writes
    every metric the rules and the dashboard use is documented in docs/metrics.md
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "monitoring"
METRIC = re.compile(r"\brollback_watcher_[a-z_]+")
SUFFIXES = ("_bucket", "_sum", "_count", "_created")


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("`promtool` is not installed (Debian package prometheus): run `make test`, which installs it",
                    pytrace=False)
    return path


def documented_metrics() -> set[str]:
    text = (ROOT / "docs" / "metrics.md").read_text()
    return set(re.findall(r"^\| `(rollback_watcher_[a-z_]+)` \|", text, re.M))


def family(name: str) -> str:
    """A series name's metric family as docs/metrics.md names it (counters keep `_total`)."""
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def test_promtool_check_rules_accepts_the_alerts(promtool):
    result = subprocess.run([promtool, "check", "rules", str(MONITORING / "alerts.yml")], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_of_the_alerts_pass(promtool):
    result = subprocess.run([promtool, "test", "rules", "alerts_test.yml"], cwd=MONITORING, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_unit_test_where_it_fires():
    alerts = {r["alert"] for g in yaml.safe_load((MONITORING / "alerts.yml").read_text())["groups"] for r in g["rules"]}
    tests = yaml.safe_load((MONITORING / "alerts_test.yml").read_text())["tests"]
    fired = {case["alertname"] for t in tests for case in t.get("alert_rule_test", []) if case.get("exp_alerts")}
    assert alerts - fired == set(), "alerts without a firing unit test"
    assert {"RollbackWatcherDown", "RollbackWatcherNotTicking", "RollbackWatcherBlind", "RollbackWatcherHalted",
            "RollbackWatcherPausedTooLong", "RollbackWatcherUndeliveredMessages",
            "RollbackWatcherRollbackFailed"} <= alerts


def test_dashboard_json_is_what_the_builder_writes():
    built = subprocess.run([sys.executable, str(MONITORING / "build_dashboard.py"), "--print"], capture_output=True,
                           text=True, timeout=60, check=True).stdout
    assert (MONITORING / "dashboard.json").read_text() == built, "run `python monitoring/build_dashboard.py`"
    dashboard = json.loads(built)
    assert dashboard["panels"] and all(p["targets"] for p in dashboard["panels"])


def test_every_metric_the_alerts_and_dashboard_use_is_documented():
    used = {family(m) for path in (MONITORING / "alerts.yml", MONITORING / "dashboard.json")
            for m in METRIC.findall(path.read_text())}
    assert used, "no metric found"
    assert used - documented_metrics() == set(), "metrics used but not in docs/metrics.md"


def test_every_dashboard_query_is_valid_promql():
    import promql_parser

    dashboard = json.loads((MONITORING / "dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    for expr in exprs:
        # Grafana fills $instance in before Prometheus sees the query.
        promql_parser.parse(expr.replace("$instance", ".*"))
    assert len(exprs) >= len(dashboard["panels"])
