"""`rollback-watcher test` on the shipped table and on a wrong expectation, and `explain`
against a hand-written state dir and a real Prometheus."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from watcher.actions.ruletest import expand

REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "watcher"]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=60, cwd=REPO)


@pytest.mark.parametrize("text, values", [
    ("1 2", [1.0, 2.0]),
    ("0.5x2", [0.5, 0.5, 0.5]),
    ("1+1x3", [1.0, 2.0, 3.0, 4.0]),
    ("10-2x2", [10.0, 8.0, 6.0]),
    ("_ _x2 stale", [None, None, None, None]),
    ("errorx2", ["error", "error"]),
])
def test_expanding_notation_follows_promtool(text, values):
    assert expand(text) == values


def test_bad_token_in_values_is_rejected_with_the_token():
    with pytest.raises(ValueError, match="'1x'"):
        expand("1x")


def test_shipped_default_table_tests_pass_with_exit_0():
    done = _cli("test", "rules/tests/default_test.yaml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert " 0 failed" in done.stdout


def test_wrong_expectation_fails_with_a_diff_and_the_history_and_exit_1(tmp_path):
    (tmp_path / "wrong_test.yaml").write_text(f"""
rule_files: ['{REPO / 'rules' / 'default.yaml'}']
interval: 15s
tests:
  - name: firing one step too early
    deploys: [{{at: 0s, release: r2}}]
    input_series:
      - {{rule: http-5xx-ratio, values: 0.3x10}}
    expect:
      - {{eval_time: 1m45s, rule: http-5xx-ratio, state: firing}}
      - {{eval_time: 1m45s, rollback: r2}}
""")
    done = _cli("test", str(tmp_path / "wrong_test.yaml"))
    assert done.returncode == 1
    out = done.stdout
    assert "FAIL  firing one step too early" in out
    assert "- expected: firing" in out and "+ got:      pending" in out
    assert "- expected: r2" in out and "+ got:      none" in out
    assert ">    1m45s         0.3  breach   pending" in out  # the failing step, marked, in its history
    assert "0 passed, 1 failed" in out


def test_unknown_rule_in_test_file_is_a_config_problem_with_file_and_line(tmp_path):
    path = tmp_path / "bad_test.yaml"
    path.write_text(f"rule_files: ['{REPO / 'rules' / 'default.yaml'}']\ntests:\n  - name: x\n"
                    "    input_series: [{rule: nope, values: '1'}]\n"
                    "    expect: [{eval_time: 0s, rollback: none}]\n")
    done = _cli("test", str(path))
    assert done.returncode == 1
    assert f"{path}:4:" in done.stderr and "must name a rule" in done.stderr


def test_inline_rules_given_as_a_mapping_are_a_config_problem_not_a_traceback(tmp_path):
    path = tmp_path / "bad_test.yaml"
    path.write_text("rules:\n  name: x\n  query: up\n  above: 1\n  action: rollback\n"
                    "tests:\n  - expect: [{eval_time: 0s, rollback: none}]\n")
    done = _cli("test", str(path))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert f"{path}:1: rules: expected a list of rules, got a mapping" in done.stderr


def test_values_yaml_read_as_a_number_are_refused_not_taken_as_one_value(tmp_path):
    path = tmp_path / "hex_test.yaml"
    path.write_text(f"rule_files: ['{REPO / 'rules' / 'default.yaml'}']\ntests:\n  - name: x\n"
                    "    input_series:\n      - rule: http-5xx-ratio\n        values: 0x40\n"
                    "    expect: [{eval_time: 0s, rollback: none}]\n")
    done = _cli("test", str(path))
    assert done.returncode == 1
    assert f"{path}:6:" in done.stderr and "the number 64" in done.stderr and "quote it" in done.stderr


def _state_dir(tmp_path: Path, now: float) -> Path:
    state = tmp_path / "state"
    state.mkdir()
    deployed = now - 300
    (state / "state.json").write_text(json.dumps({
        "version": 1, "current": "r2", "deployed_at": deployed, "window_ends": deployed + 1800,
        "baselines": {"latency": 0.1},
        "rules": {"ratio": {"phase": "pending", "active_since": now - 70, "breach_since": now - 70, "failures": 5}},
    }))
    events = [
        {"time": deployed, "kind": "deploy", "release": "r2"},
        {"time": deployed + 1, "kind": "baseline", "rule": "latency", "release": "r2", "value": 0.1,
         "window": 1800, "end": deployed},
        {"time": now - 70, "kind": "rule", "rule": "ratio", "transition": "phase", "before": "inactive",
         "after": "pending", "reason": "value 25.0%"},
    ]
    (state / "journal.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    return state


def test_explain_shows_query_values_for_progress_baseline_source_and_transitions(tmp_path, prometheus):
    prom = prometheus([])
    now = time.time()
    state = _state_dir(tmp_path, now)
    (tmp_path / "rules.yaml").write_text(
        "rules:\n"
        "  - {name: ratio, query: 'label_replace(vector(0.25), \"range\", \"$window\", \"\", \"\")', above: 0.1, for: 2m,"
        " value_unit: '%', action: rollback}\n"
        "  - {name: latency, query: 'vector(0.9)', above_baseline: 5, for: 2m, action: rollback}\n")
    (tmp_path / "watcher.yaml").write_text(
        f"service: shop\nprometheus: {{url: '{prom.url}', scrape_interval: 15s}}\nrules: [rules.yaml]\n"
        f"state_dir: {state}\n")
    done = _cli("explain", "ratio", "-c", str(tmp_path / "watcher.yaml"))
    assert done.returncode == 0, done.stderr
    out = done.stdout
    # 5 minutes after the deploy, $window is max_window (1m), rendered into the query.
    assert '"60s"' in out and "[$window] = 60s" in out
    assert "25.0%" in out and "BREACH" in out
    # Pending since 70 s before `now`; the CLI starts a moment later, a second or more on a loaded
    # machine, so the elapsed part is read, not matched to the second.
    elapsed = re.search(r"pending 1m(\d+)s of 2m", out)
    assert elapsed and 10 <= int(elapsed.group(1)) <= 40, out
    assert "inactive -> pending" in out

    done = _cli("explain", "latency", "-c", str(tmp_path / "watcher.yaml"), "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["baseline"] == 0.1 and data["series"][0]["breaches"] is True
    assert data["baseline_source"].startswith("median over 30m before the deploy of r2")


def test_explain_of_an_unknown_rule_names_the_rules_and_exits_1(tmp_path):
    (tmp_path / "rules.yaml").write_text("rules:\n  - {name: ratio, query: 'vector(1)', above: 0.1, action: rollback}\n")
    (tmp_path / "watcher.yaml").write_text(
        f"service: shop\nprometheus: {{url: 'http://127.0.0.1:9'}}\nrules: [rules.yaml]\nstate_dir: {tmp_path / 's'}\n")
    done = _cli("explain", "nope", "-c", str(tmp_path / "watcher.yaml"))
    assert done.returncode == 1 and "the rules are: ratio" in done.stderr
