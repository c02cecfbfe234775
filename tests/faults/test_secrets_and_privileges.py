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
from faultlib import BadHttpServer, free_port

from support import HEALTH_PROBE_RULES, UP_BREACH_RULES, WatcherProcess, wait_for
from support import run_cli as cli  # config paths are absolute: any cwd works
from watcher.base.errors import ConfigError
from watcher.config.load import load_config

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
    config = host.write_config(HEALTH_PROBE_RULES, telemetry={"listen": f"127.0.0.1:{metrics_port}"}, notify=[
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
    cfg = load_config(host.write_config(HEALTH_PROBE_RULES.replace("HEALTH_URL", "http://127.0.0.1:1/"), telemetry={}))
    assert cfg.telemetry.listen.startswith("127.0.0.1:")


@pytest.mark.parametrize("listen", ["0.0.0.0:9464", "[::]:9464", "10.1.2.3:9464", "example.com:9464"])
def test_non_loopback_metrics_bind_is_refused_unless_allowed(symlink_host, listen):
    host = symlink_host
    with pytest.raises(ConfigError) as err:
        load_config(host.write_config(HEALTH_PROBE_RULES, telemetry={"listen": listen}))
    assert "telemetry.listen" in str(err.value) and "allow_remote" in str(err.value)
    cfg = load_config(host.write_config(HEALTH_PROBE_RULES, telemetry={"listen": listen, "allow_remote": True}))
    assert cfg.telemetry.listen == listen


PROM_USER = "promuser"
PROM_PASS = "promPw-8Kd2Qx7Lz"
PROM_TOKEN = "promTok-5Rf9Wb1Nc3Xa"
def _prom_secrets() -> list[str]:
    import base64

    basic = base64.b64encode(f"{PROM_USER}:{PROM_PASS}".encode()).decode()
    return [PROM_PASS, PROM_TOKEN, basic]


@pytest.mark.parametrize("auth", ["userinfo_401", "header_401", "userinfo_down"])
def test_prometheus_credentials_never_leak_when_prometheus_refuses_or_is_down(symlink_host, tmp_path, auth):
    """Issue 17: a Prometheus that answers 401 and echoes the credential in its body (a real
    loopback server, faultlib.UnauthorizedPrometheus), or one that is down, with the credential
    in the URL's userinfo or in an Authorization header from ${VAR}. The watcher goes blind and
    says so to a real loopback receiver; then every output is scanned: `run`'s log, the journal,
    state.json, `history`, `status`, `explain`, `eval --json`, `check --online`, and what the
    receiver got (the "blind" notification)."""
    from faultlib import UnauthorizedPrometheus

    host = symlink_host
    prom = UnauthorizedPrometheus()
    receiver = BadHttpServer("ok")
    host.add_release("r1")
    host.add_release("r2")
    host.deploy("r2")
    port = free_port() if auth == "userinfo_down" else prom.port
    if auth == "header_401":
        prometheus = {"url": f"http://127.0.0.1:{port}", "timeout": "1s",
                      "headers": {"Authorization": "Bearer ${PROM_TOKEN}"}}
    else:
        prometheus = {"url": f"http://{PROM_USER}:${{PROM_PASS}}@127.0.0.1:{port}", "timeout": "1s"}
    config = host.write_config(UP_BREACH_RULES, prometheus=prometheus, error_limit=2,
                               notify=[f"json://127.0.0.1:{receiver.port}/hook"])
    env = {"PROM_PASS": PROM_PASS, "PROM_TOKEN": PROM_TOKEN}
    outputs = {}
    try:
        w = WatcherProcess(config, tmp_path / "run.log", env=env)
        try:
            wait_for(lambda: any(e.get("transition") == "blind" for e in host.journal()), timeout=40,
                     what="the watcher to say it is blind")
            wait_for(lambda: any(b"blind" in r for r in receiver.requests), timeout=30,
                     what="the blind notification to arrive")
            outputs["status"] = cli("status", "--json", "--config", config, env=env)
        finally:
            code = w.stop()
        assert code == 0
        for name, args in {"history": ("history", "--all", "--json"), "explain": ("explain", "up-breach"),
                           "explain json": ("explain", "up-breach", "--json"), "eval": ("eval", "--json"),
                           "eval text": ("eval",), "check": ("check", "--online"),
                           "check json": ("check", "--online", "--json")}.items():
            outputs[name] = cli(*args, "--config", config, env=env)
    finally:
        prom.close()
        receiver.close()
    if auth != "userinfo_down":
        # the credential did reach Prometheus: the test would be empty if it never left config
        assert any(PROM_PASS.encode() in r or PROM_TOKEN.encode() in r or b"Basic " in r for r in prom.requests)
    assert outputs["check"].returncode == 1  # Prometheus could not be read
    assert "blind" in w.output()

    written = {"run output": w.output(), "received notifications": b"".join(receiver.requests).decode(errors="replace")}
    for name, result in outputs.items():
        written[f"{name} stdout"] = result.stdout
        written[f"{name} stderr"] = result.stderr
    for path in host.state_dir.rglob("*"):
        if path.is_file():
            written[str(path)] = path.read_bytes().decode(errors="replace")
    for where, text in written.items():
        for secret in _prom_secrets():
            assert secret not in text, f"{secret!r} leaked into {where}:\n{text[:3000]}"


def test_prometheus_authorization_header_and_url_userinfo_together_are_refused_by_check(symlink_host):
    """requests lets the URL's userinfo replace a configured Authorization header: one of the
    two would be silently dropped, so the combination is a config error."""
    host = symlink_host
    config = host.write_config(UP_BREACH_RULES, prometheus={
        "url": f"http://{PROM_USER}:{PROM_PASS}@127.0.0.1:9090",
        "headers": {"authorization": f"Bearer {PROM_TOKEN}"}})
    result = cli("check", "--config", config)
    assert result.returncode == 1
    assert "prometheus.headers" in result.stderr and "userinfo" in result.stderr
    for secret in _prom_secrets():
        assert secret not in result.stdout + result.stderr


def test_every_edge_scrubs_the_config_secrets_even_from_a_text_nobody_cleaned(symlink_host, tmp_path):
    """The edges do not trust the error texts they are given (a future source may not clean
    its own): the journal, state.json, the notifier and the log formatter each scrub the
    config's secrets, in their raw, URL-encoded and Basic forms."""
    import base64
    import logging

    from watcher.config.scrub import RedactingFormatter
    from watcher.core.envelope import Message
    from watcher.core.rules import RuleState
    from watcher.notify.notifier import Severity
    from watcher.service.build import build_watcher

    host = symlink_host
    receiver = BadHttpServer("ok")
    host.add_release("r1")
    host.deploy("r1")
    basic = base64.b64encode(f"{PROM_USER}:{PROM_PASS}".encode()).decode()
    dirty = f"echoed {PROM_PASS} / Basic {basic} / Bearer {PROM_TOKEN} / {PROM_PASS.replace('-', '%2D')}"
    os.environ["PROM_PASS_EDGE"] = PROM_PASS
    try:
        cfg = load_config(host.write_config(UP_BREACH_RULES, prometheus={
            "url": f"http://{PROM_USER}:${{PROM_PASS_EDGE}}@127.0.0.1:9", "headers": {"X-Api-Key": PROM_TOKEN}},
            notify=[f"json://127.0.0.1:{receiver.port}/hook"]))
    finally:
        del os.environ["PROM_PASS_EDGE"]
    w = build_watcher(cfg)
    try:
        w.start()
        w.journal("backend_error", reason=dirty)
        w.state.rules["up-breach"] = RuleState(last_detail=dirty)
        w.save()
        w.notify(Message("test", Severity.CRITICAL, f"title {dirty}", f"body {dirty}"))
        w.tell()
        assert w.notifier.flush(15)
    finally:
        w.notifier.close(1)
        w.reader.close()
        receiver.close()
    record = logging.LogRecord("watcher", logging.ERROR, __file__, 1, "failed reason=%s", (dirty,), None)
    written = {
        "journal": (host.state_dir / "journal.jsonl").read_text(),
        "state.json": (host.state_dir / "state.json").read_text(),
        "notification": b"".join(receiver.requests).decode(errors="replace"),
        "log line": RedactingFormatter(logging.Formatter("%(message)s"), w.store.redact).format(record),
    }
    assert "***" in written["notification"] and "echoed" in written["journal"]
    for where, text in written.items():
        for secret in _prom_secrets():
            assert secret not in text, f"{secret!r} leaked into {where}"
