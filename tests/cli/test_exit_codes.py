"""A command that could not do its job exits non-zero; `--json` always prints JSON."""

from __future__ import annotations

import json

from support import free_port, run_cli, wait_for

RULES = "rules:\n  - name: health\n    http: HEALTH_URL\n    failures: 3\n    action: rollback\n"
PROM_RULES = "rules:\n  - name: errors\n    query: sum(rate(http_requests_total[5m]))\n    above: 1\n    action: rollback\n"


def test_mark_with_an_unsafe_id_is_refused_with_exit_1_while_a_watcher_runs(symlink_host, start_watcher):
    host = symlink_host
    host.add_release("r1")
    host.deploy("r1")
    config = host.write_config(RULES)
    start_watcher(config)
    wait_for(lambda: "deploy" in host.kinds(), 30, what="the first tick")
    done = run_cli("mark", "good", "../etc", "--config", config)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "path separator" in done.stderr
    assert not [e for e in host.journal() if e["kind"] == "mark"]


def test_backtest_with_every_query_failing_exits_1_and_says_so(symlink_host):
    config = symlink_host.write_config(PROM_RULES, prometheus={"url": f"http://127.0.0.1:{free_port()}", "timeout": "1s"})
    done = run_cli("backtest", "--since", "5m", "--step", "1m", "--config", config)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "every query of every step failed" in done.stdout
    assert "no rollback would have happened" not in done.stdout
    as_json = run_cli("backtest", "--since", "5m", "--step", "1m", "--config", config, "--json")
    assert as_json.returncode == 1 and json.loads(as_json.stdout)["every_step_failed"] is True


def test_check_json_on_an_invalid_config_prints_the_problems_as_json(tmp_path):
    config = tmp_path / "watcher.yaml"
    config.write_text("service: x\nintervl: 15s\nrules: []\n")
    done = run_cli("check", "--config", config, "--json")
    assert done.returncode == 1
    data = json.loads(done.stdout)
    assert data["valid"] is False and data["error"] == "ConfigError"
    assert {"file": str(config), "line": 2, "key": "intervl"}.items() <= data["problems"][0].items()
    assert "unknown key" in data["problems"][0]["message"]
    assert "intervl: unknown key" in done.stderr  # people still read stderr


def test_json_error_of_any_command_is_json(tmp_path):
    done = run_cli("status", "--json", "--config", tmp_path / "missing.yaml")
    assert done.returncode == 1
    assert json.loads(done.stdout)["error"] == "ConfigError"


def test_eval_with_every_query_failing_exits_1(symlink_host):
    config = symlink_host.write_config(PROM_RULES, prometheus={"url": f"http://127.0.0.1:{free_port()}", "timeout": "1s"})
    done = run_cli("eval", "--config", config)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "errors" in done.stdout and "no rule's signal could be read" in done.stderr
    as_json = run_cli("eval", "--config", config, "--json")
    assert as_json.returncode == 1 and json.loads(as_json.stdout)["every_signal_failed"] is True
