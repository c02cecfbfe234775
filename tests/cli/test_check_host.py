"""`check` catches what cannot work on this host: backend paths and a deploy lock's directory
that do not exist, notify URLs Apprise cannot parse (offline, by Apprise itself), a telemetry
port that is taken; `check --online` counts signals and notify targets apart and flags rules
whose metrics Prometheus does not have."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys

import pytest

from support import JOB_NAME, run_cli

RULES = "rules:\n  - name: health\n    http: HEALTH_URL\n    failures: 3\n    action: rollback\n"


@pytest.fixture
def cache_env(tmp_path):
    """Each test its own Apprise verdict cache (targetcheck), not the user's ~/.cache."""
    return {"XDG_CACHE_HOME": str(tmp_path / "cache")}


@pytest.fixture
def host(symlink_host):
    symlink_host.add_release("r1")
    symlink_host.deploy("r1")
    return symlink_host


def test_backend_paths_that_do_not_exist_fail_check_with_their_lines(host, tmp_path, cache_env):
    config = host.write_config(RULES)
    shutil.rmtree(host.releases)
    host.current.unlink()
    done = run_cli("check", "--config", config, env=cache_env)
    assert done.returncode == 1, done.stdout
    assert f"backend.releases: {host.releases} does not exist on this host" in done.stderr
    assert f"backend.current: {host.current} does not exist on this host" in done.stderr
    assert done.stderr.startswith(f"{config}:1: ")  # the JSON config is one line
    assert "Traceback" not in done.stderr


def test_deploy_lock_in_a_missing_directory_fails_check(host, tmp_path, cache_env):
    config = host.write_config(RULES, deploy_lock=str(tmp_path / "nowhere" / "deploy.lock"))
    done = run_cli("check", "--config", config, env=cache_env)
    assert done.returncode == 1
    assert f"deploy_lock: directory {tmp_path / 'nowhere'} does not exist" in done.stderr


def test_deploy_lock_in_an_existing_directory_passes(host, tmp_path, cache_env):
    config = host.write_config(RULES, deploy_lock=str(tmp_path / "deploy.lock"))
    done = run_cli("check", "--config", config, env=cache_env)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("url, says", [
    ("slakc://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ", "Apprise does not understand slakc://"),
    ("ntfy:/shop-api", "ntfy:/... is neither a URL"),
    ("https://", "Apprise does not understand https://"),
])
def test_notify_url_apprise_cannot_parse_fails_offline_check(host, cache_env, url, says):
    config = host.write_config(RULES, notify=[{"url": "json://127.0.0.1:9/ok"}, {"url": url}])
    done = run_cli("check", "--config", config, env=cache_env)
    assert done.returncode == 1, done.stdout
    assert "notify[1]: " in done.stderr and says in done.stderr, done.stderr
    assert "notify[0]" not in done.stderr


def test_an_accepted_target_is_remembered_so_the_next_check_does_not_import_apprise(host, cache_env, tmp_path):
    secret = "tk_4f9d2c8e7a1b3c5d"
    config = host.write_config(RULES, notify=[{"url": f"ntfys://user:{secret}@ntfy.example.com/shop"}])
    first = run_cli("check", "--config", config, env=cache_env)
    assert first.returncode == 0, first.stderr
    cached = (tmp_path / "cache" / "rollback-watcher" / "notify-targets.json").read_text()
    assert secret not in cached and len(json.loads(cached)["accepted"]) == 1
    # The second check, in a process that reports whether Apprise was imported.
    code = ("import sys; sys.argv = ['rollback-watcher', 'check', '--config', sys.argv[1]]\n"
            "from watcher.cli.app import main\n"
            "try:\n    main()\nexcept SystemExit as e:\n    print('exit', e.code, 'apprise' in sys.modules)\n")
    second = subprocess.run([sys.executable, "-c", code, str(config)], capture_output=True, text=True, timeout=60,
                            env={**__import__("os").environ, **cache_env})
    assert second.stdout.strip().endswith("exit 0 False"), second.stdout + second.stderr


def test_online_counts_signals_and_notify_targets_apart(host, cache_env):
    rules = RULES + "  - name: health-again\n    http: HEALTH_URL\n    failures: 3\n    action: notify\n"
    config = host.write_config(rules, notify=[{"url": "json://127.0.0.1:9/hook"}])
    done = run_cli("check", "--online", "--config", config, env=cache_env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "online: 2 of 2 signals answered; notify: 1 target(s) valid" in done.stdout


def test_online_flags_a_rule_whose_metric_prometheus_does_not_have(host, cache_env, prometheus, demo_app):
    app = demo_app()
    prom = prometheus([app.target])
    prom.wait_for_series(f'count_over_time(up{{job="{JOB_NAME}"}}[1m]) >= 1')
    rules = ("rules:\n"
             "  - name: oom-kills\n    query: increase(node_vmstat_oom_kill[5m])\n    above: 0\n    action: rollback\n"
             f"  - name: up\n    query: min(up{{job=\"{JOB_NAME}\"}})\n    below: 1\n    action: notify\n")
    config = host.write_config(rules, prometheus={"url": prom.url}, notify=[{"url": "json://127.0.0.1:9/hook"}])
    done = run_cli("check", "--online", "--config", config, "--json", env=cache_env)
    data = json.loads(done.stdout)
    assert done.returncode == 0, done.stdout + done.stderr  # a warning, not a failure
    [warning] = data["warnings"]
    assert "rule oom-kills: Prometheus has no series named node_vmstat_oom_kill" in warning
    rows = {r["rule"]: r for r in data["rules"]}
    assert rows["oom-kills"]["missing_metrics"] == ["node_vmstat_oom_kill"]
    assert "missing_metrics" not in rows["up"]


@pytest.fixture
def taken_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_online_reports_a_taken_telemetry_port(host, cache_env, taken_port):
    config = host.write_config(RULES, telemetry={"listen": f"127.0.0.1:{taken_port}"})
    done = run_cli("check", "--online", "--config", config, env=cache_env)
    assert done.returncode == 1
    assert f"FAIL: telemetry.listen 127.0.0.1:{taken_port} is already in use" in done.stdout


def test_run_with_the_telemetry_port_taken_exits_78_with_one_line(host, cache_env, taken_port):
    config = host.write_config(RULES, telemetry={"listen": f"127.0.0.1:{taken_port}"})
    done = run_cli("run", "--config", config, env=cache_env, timeout=120)
    assert done.returncode == 78, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"cannot start: telemetry.listen 127.0.0.1:{taken_port} is already in use")


def test_check_warns_when_no_notify_target_would_hear_of_a_rollback(host, cache_env):
    config = host.write_config(RULES)
    done = run_cli("check", "--config", config, env=cache_env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "warning: " in done.stdout and "no notify targets: nobody will hear of a rollback" in done.stdout
    data = json.loads(run_cli("check", "--json", "--config", config, env=cache_env).stdout)
    assert any("no notify targets" in w for w in data["warnings"])


TYPED = [
    ("ntfy://alice:hunter2@ntfy.example.com/shop", "hunter2", "has a password typed in"),
    ("json://hooks.example.com/hook?team=web&token=abc123", "abc123", "has its token value typed in"),
    ("json://hooks.example.com/hook?+X-Api-Key=k3y-v4lue", "k3y-v4lue", "has its X-Api-Key header typed in"),
    ("slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/#ops", "TIiajkdnlazkcOXrIdevi7FQ",
     "has a token in its address typed in"),
    ("ntfy://tk_AgQdq7mVBoFD37zQVN29RhuMzNIz2@ntfy.example.com/shop", "tk_AgQdq7mVBoFD37zQVN29RhuMzNIz2",
     "has an access token as its user typed in"),
]


@pytest.mark.parametrize("url, secret, says", TYPED, ids=[t[2].split()[1] + "-" + t[0].split(":")[0] for t in TYPED])
def test_check_warns_of_a_credential_typed_into_a_notify_url_without_printing_it(host, cache_env, url, secret, says):
    config = host.write_config(RULES, notify=[{"url": "ntfy://ntfy.example.com/ok"}, {"url": url}])
    done = run_cli("check", "--config", config, env=cache_env)
    assert done.returncode == 0, done.stdout + done.stderr
    warning = next(line for line in done.stdout.splitlines() if "notify[1]" in line)
    assert warning.startswith(f"warning: {config}:") and says in warning, warning
    assert "${VAR}" in warning and "EnvironmentFile=" in warning
    as_json = run_cli("check", "--json", "--config", config, env=cache_env)
    for output in (done.stdout + done.stderr, as_json.stdout + as_json.stderr):
        assert secret not in output  # never the secret itself
    assert not [line for line in done.stdout.splitlines() if "notify[0]" in line]  # nothing typed in there


def test_check_does_not_warn_of_credentials_that_come_from_the_environment(host, cache_env):
    config = host.write_config(RULES, notify=[{"url": "ntfy://alice:${NTFY_PASSWORD}@ntfy.example.com/shop"},
                                              {"url": "json://hooks.example.com/hook?token=${HOOK_TOKEN}"},
                                              {"url": "slack://${SLACK_WEBHOOK}/#ops"}])
    env = {**cache_env, "NTFY_PASSWORD": "hunter2", "HOOK_TOKEN": "abc123",
           "SLACK_WEBHOOK": "T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ"}
    done = run_cli("check", "--config", config, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "typed in" not in done.stdout and "warning: " not in done.stdout, done.stdout
    assert "hunter2" not in done.stdout + done.stderr and "abc123" not in done.stdout + done.stderr


@pytest.mark.parametrize("for_, warned", [("0s", True), ("15s", True), ("30s", False), ("1m", False)])
def test_check_warns_of_an_instant_rollback_rule_a_lockless_restart_fires(host, cache_env, for_, warned):
    """An instant query (`up < 1`) with a `for` shorter than two scrape intervals (15 s by default)
    rolls a healthy release back on a restart the watcher cannot see (sim seed 22000561)."""
    rules = RULES + (f"  - name: app-up\n    query: min(up)\n    below: 1\n    for: {for_}\n    action: rollback\n"
                     "  - name: quick-ratio\n    query: sum(rate(x[$window]))\n    above: 1\n    action: rollback\n")
    config = host.write_config(rules, notify=[{"url": "ntfy://ntfy.example.com/ok"}],
                               prometheus={"url": "http://127.0.0.1:9", "scrape_interval": "15s"})
    done = run_cli("check", "--config", config, env=cache_env)
    assert done.returncode == 0, done.stdout + done.stderr
    says = [line for line in done.stdout.splitlines() if "instant query" in line]
    assert bool(says) is warned, done.stdout
    if warned:
        [line] = says
        assert line.startswith("warning: ") and "rules.yaml:" in line and "app-up" in line, line
    assert "quick-ratio: an instant" not in done.stdout, "a `[$window]` query is no instant query"
