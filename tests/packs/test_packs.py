"""Every rule pack (rules/packs/*.yaml) passes both of its test files:

- rules/packs/tests/NAME_test.yaml, `rollback-watcher test` (watcher/actions/ruletest.py): what the
  watcher does with the queries' results (healthy, 40% 5xx, no traffic, no data, crash);
- rules/packs/tests/NAME_promql_test.yaml, the real `promtool test rules`: what the queries
  return over input series named as the exporter names them. The pack is written beside it
  as recording rules `pack:RULE`, each query scoped with prometheus.labels (watcher/config/scoping.py)
  and `[$window]` rendered as 1m, the service's max_window.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from watcher.actions.ruletest import report, run_file
from watcher.config.rulefile import load_rule_file
from watcher.config.scoping import scope_query
from watcher.core.rules import PromQuery

REPO = Path(__file__).resolve().parents[2]
PACKS = REPO / "rules" / "packs"
NAMES = sorted(p.stem for p in PACKS.glob("*.yaml"))
# Each pack's promql test scopes it to its exporter's own target on host web-3.
SCOPES = {"node-exporter": {"instance": "web-3:9100"}, "cadvisor": {"instance": "web-3:8080"}}
DEFAULT_SCOPE = {"instance": "web-3:8000"}


def test_the_packs_are_there():
    assert len(NAMES) >= 11, NAMES


@pytest.mark.parametrize("name", NAMES)
def test_pack_has_both_test_files(name):
    assert (PACKS / "tests" / f"{name}_test.yaml").is_file()
    assert (PACKS / "tests" / f"{name}_promql_test.yaml").is_file()


@pytest.mark.parametrize("name", NAMES)
def test_pack_rule_tests_pass(name):
    path = PACKS / "tests" / f"{name}_test.yaml"
    results = run_file(path)
    assert results and all(r.ok for r in results), report(path, results)


def recording_rules(name: str) -> dict:
    """The pack as promtool recording rules, scoped as the service would scope them."""
    scope = SCOPES.get(name, DEFAULT_SCOPE)
    rules = []
    for rule in load_rule_file(PACKS / f"{name}.yaml", 60.0):
        assert isinstance(rule.signal, PromQuery), f"{name}: {rule.name} is not a PromQL rule"
        expr = scope_query(rule.signal.query, scope).replace("$window", "1m")
        rules.append({"record": "pack:" + rule.name.replace("-", "_"), "expr": expr})
    return {"groups": [{"name": name, "rules": rules}]}


@pytest.mark.parametrize("name", NAMES)
def test_pack_promql_tests_pass_in_promtool(name, tmp_path):
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: `make deps` installs the Debian prometheus package"
    (tmp_path / f"{name}.rules.yml").write_text(json.dumps(recording_rules(name), indent=1))
    test_file = tmp_path / f"{name}_promql_test.yaml"
    shutil.copy(PACKS / "tests" / test_file.name, test_file)
    result = subprocess.run([promtool, "test", "rules", test_file.name], capture_output=True, text=True,
                            timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
