"""Secrets never leave the config, and what the watcher exposes and writes is closed by default.

One full incident (a failing health probe rule, a rollback, its verification) with
secret-bearing notification URLs (a password, an ntfy ?token=, a +X-Api-Key= header) that all
point at a loopback receiver, one of them built from a secret environment variable through
${VAR}; then every byte the watcher wrote is scanned: stdout/stderr of `run`, the journal,
state.json, the metrics endpoint body, `status --json`, `history --json`, `check`.
"""

from __future__ import annotations

import os
import stat
import urllib.request

import pytest

from support import WatcherProcess, wait_for
from support import run_cli as cli  # config paths are absolute: any cwd works
from faultlib import BadHttpServer, free_port

from watcher.config import load_config
from watcher.errors import ConfigError


RULES = """
rules:
  - name: health
    http: HEALTH_URL
    timeout: 1s
    action: rollback
"""
PASSWORD = "pw-Zq81vX3kTe"
TOKEN = "tk_9fhQ2LmWbYs0"
API_KEY = "key-77Gh3Ja0xRrN"
ENV_SECRET = "envsecret-Pp4Lo2Vn"
SECRETS = [PASSWORD, TOKEN, API_KEY, ENV_SECRET]


def test_full_incident_leaks_no_secret_anywhere(symlink_host, tmp_path):
    host = symlink_host
    receiver = BadHttpServer("ok")
    metrics_port = free_port()
    host.add_release("r1")
    host.add_release("r2", health=500)
    host.deploy("r2")
    r = receiver.port
    config = host.write_config(RULES, telemetry={"listen": f"127.0.0.1:{metrics_port}"}, notify=[
        f"json://alerts:{PASSWORD}@127.0.0.1:{r}/hook",
        f"ntfy://127.0.0.1:{r}/rollbacks?token={TOKEN}",
        f"json://127.0.0.1:{r}/hook?+X-Api-Key={API_KEY}",
        f"json://ops:${{HOOK_SECRET}}@127.0.0.1:{r}/env",
    ])
    env = {"HOOK_SECRET": ENV_SECRET}
    outputs = {}
    try:
        outputs["mark"] = cli("mark", "good", "r1", "--config", config, env=env, check=True)
        w = WatcherProcess(config, tmp_path / "run.log", env=env)
        try:
            wait_for(lambda: "rollback_verified" in host.kinds(), timeout=40, what="the rollback to verify")
            wait_for(lambda: len(receiver.requests) >= 4, timeout=20, what="notifications to arrive")
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as resp:
                metrics = resp.read().decode()
            outputs["status"] = cli("status", "--json", "--config", config, env=env)
        finally:
            code = w.stop()
        assert code == 0
        outputs["history"] = cli("history", "--json", "--config", config, env=env)
        outputs["check"] = cli("check", "--config", config, env=env)
    finally:
        receiver.close()
    assert host.current_id() == "r1"
    # the secrets did reach the receiver: the test would be empty if they never left config
    sent = b"".join(receiver.requests)
    assert PASSWORD.encode() in sent or API_KEY.encode() in sent

    written = {"run output": w.output(), "metrics": metrics}
    for name, result in outputs.items():
        written[f"{name} stdout"] = result.stdout
        written[f"{name} stderr"] = result.stderr
    for path in host.state_dir.rglob("*"):
        if path.is_file():
            written[str(path)] = path.read_bytes().decode(errors="replace")
    assert "rollback" in written["history stdout"]
    for where, text in written.items():
        for secret in SECRETS:
            assert secret not in text, f"{secret!r} leaked into {where}"

    # files the watcher created are not world-readable (nor group-readable)
    for path in [host.state_dir, host.state_dir / "state.json", host.state_dir / "journal.jsonl",
                 host.state_dir / "watcher.lock", host.state_dir / "requests"]:
        mode = stat.S_IMODE(os.stat(path).st_mode)
        assert mode & 0o077 == 0, f"{path} is {oct(mode)}"


def test_metrics_endpoint_binds_to_loopback_by_default(symlink_host):
    host = symlink_host
    cfg = load_config(host.write_config(RULES.replace("HEALTH_URL", "http://127.0.0.1:1/"), telemetry={}))
    assert cfg.telemetry.listen.startswith("127.0.0.1:")


@pytest.mark.parametrize("listen", ["0.0.0.0:9464", "[::]:9464", "10.1.2.3:9464", "example.com:9464"])
def test_non_loopback_metrics_bind_is_refused_unless_allowed(symlink_host, listen):
    host = symlink_host
    with pytest.raises(ConfigError) as err:
        load_config(host.write_config(RULES, telemetry={"listen": listen}))
    assert "telemetry.listen" in str(err.value) and "allow_remote" in str(err.value)
    cfg = load_config(host.write_config(RULES, telemetry={"listen": listen, "allow_remote": True}))
    assert cfg.telemetry.listen == listen
