"""Issue 13 items 13, 16, 17 at the CLI: bad input that changes decisions, two watchers on one
host, and secrets in every output. The real console entry point in subprocesses, a sandbox
symlink host (tests/support), and for 17 a loopback HTTP server that answers 401 and echoes
the credentials it got, as some proxies do (a stand-in for a misconfigured Prometheus: the real
one cannot be made to echo them)."""

from __future__ import annotations

import base64
import json
import time
from http.server import BaseHTTPRequestHandler

import pytest

from support import LoopbackServer, NotificationReceiver, WatcherProcess, run_cli, wait_for

pytestmark = pytest.mark.decisions

PROBE_RULES = """
rules:
  - name: health
    http: HEALTH_URL
    timeout: 1s
    action: rollback
"""


@pytest.fixture
def host(symlink_host):
    for rid in ("r1", "r2", "r3"):
        symlink_host.add_release(rid)
    symlink_host.deploy("r2")
    return symlink_host


def state_releases(host) -> dict:
    path = host.state_dir / "state.json"
    return json.loads(path.read_text()).get("releases", {}) if path.exists() else {}


# ---------------------------------------------------------------------------------------------
# 13. mark validates what it is given


@pytest.mark.parametrize("what", ["good", "bad", "barrier"])
def test_mark_refuses_a_release_the_backend_does_not_list(host, what):
    config = host.write_config(PROBE_RULES)
    result = run_cli("mark", what, "r9-typo", "--config", config)
    assert result.returncode != 0, f"`mark {what} r9-typo` was accepted:\n{result.stdout}{result.stderr}"
    assert "r9-typo" in result.stdout + result.stderr
    assert "r9-typo" not in state_releases(host)


def test_mark_good_with_force_accepts_a_release_not_listed_yet(host):
    config = host.write_config(PROBE_RULES)
    result = run_cli("mark", "good", "r4", "--force", "--config", config)
    assert result.returncode == 0, result.stdout + result.stderr
    assert state_releases(host)["r4"]["mark"] == "good"


def test_mark_deployed_refuses_a_release_that_is_not_current(host):
    config = host.write_config(PROBE_RULES)
    result = run_cli("mark", "deployed", "r1", "--config", config)
    assert result.returncode != 0, f"`mark deployed r1` (current is r2) was accepted:\n{result.stdout}"
    assert "r1" in result.stdout + result.stderr


@pytest.mark.parametrize("at", ["nan", "inf", "-inf"])
def test_mark_deployed_refuses_a_time_that_is_not_finite_and_state_stays_usable(host, at):
    config = host.write_config(PROBE_RULES)
    result = run_cli("mark", "deployed", "r2", "--at", at, "--config", config)
    assert result.returncode != 0, f"`--at {at}` was accepted:\n{result.stdout}{result.stderr}"
    rec = state_releases(host).get("r2", {})
    assert rec.get("mark") != "good", rec
    status = run_cli("status", "--config", config)
    assert status.returncode == 0 and "Traceback" not in status.stderr, status.stderr


# ---------------------------------------------------------------------------------------------
# 16. One watcher per watched host, whatever its state_dir


def test_a_second_watcher_on_the_same_current_refuses_naming_the_running_pid(host, tmp_path):
    first_config = host.write_config(PROBE_RULES)
    first = WatcherProcess(first_config, tmp_path / "first.log")
    second = None
    try:
        wait_for(lambda: "start" in host.kinds(), timeout=60, what="the first watcher to start")
        cfg = json.loads(first_config.read_text())
        cfg["state_dir"] = str(tmp_path / "other-state")
        second_config = tmp_path / "second.yaml"
        second_config.write_text(json.dumps(cfg))
        second = WatcherProcess(second_config, tmp_path / "second.log")
        try:
            second.proc.wait(timeout=45)
        except Exception:  # noqa: BLE001 - still running: asserted below
            pass
        assert second.proc.poll() is not None, "a second watcher runs against the same `current`"
        assert second.proc.returncode != 0
        assert str(first.proc.pid) in second.output(), second.output()
    finally:
        if second is not None:
            second.stop()
        first.stop()


# ---------------------------------------------------------------------------------------------
# 17. Prometheus credentials are redacted in every output, errors included

PROM_PASS = "pp-Kx93LqzW7vT"
PROM_TOKEN = "bearer-Hj28MnQa0xE"


class EchoingUnauthorized:
    """Answers every request 401 with a body that repeats the credentials it was sent."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                auth = self.headers.get("Authorization", "")
                decoded = ""
                if auth.startswith("Basic "):
                    decoded = base64.b64decode(auth[6:]).decode(errors="replace")
                body = f"401 unauthorized: bad credentials {decoded!r} / {auth!r} for {self.path}".encode()
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="prometheus"')
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_GET

            def log_message(self, *args):
                pass

        self._http = LoopbackServer(Handler)
        self.port = self._http.port

    def close(self) -> None:
        self._http.close()


@pytest.mark.parametrize("how", ["userinfo", "header"])
def test_prometheus_credentials_never_reach_any_output(host, tmp_path, how):
    server = EchoingUnauthorized()
    rules = PROBE_RULES + """
  - name: error-ratio
    query: sum(rate(http_requests_total{code=~"5.."}[$window])) / sum(rate(http_requests_total[$window]))
    above: 0.1
    action: rollback
"""
    prometheus = {"url": f"http://127.0.0.1:{server.port}", "timeout": "1s", "scrape_interval": "1s"}
    if how == "userinfo":
        prometheus["url"] = f"http://scott:${{PROM_PASS}}@127.0.0.1:{server.port}"
    else:
        prometheus["headers"] = {"Authorization": "Bearer ${PROM_TOKEN}"}
    receiver = NotificationReceiver()
    config = host.write_config(rules, prometheus=prometheus, error_limit=2,
                               notify=[{"url": receiver.url, "min_severity": "info"}])
    env = {"PROM_PASS": PROM_PASS, "PROM_TOKEN": PROM_TOKEN}
    outputs: dict[str, str] = {}
    try:
        w = WatcherProcess(config, tmp_path / "run.log", env=env)
        try:
            wait_for(lambda: any("blind" in t for t in receiver.titles()), timeout=60, what="the blind message")
            time.sleep(1)
        finally:
            w.stop()
        outputs["run"] = w.output()
        for args in (("history", "--json"), ("history",), ("status", "--json"), ("explain", "error-ratio"),
                     ("explain", "error-ratio", "--json"), ("eval", "--json"), ("check", "--online")):
            result = run_cli(*args, "--config", config, env=env, timeout=90)
            outputs[" ".join(args)] = result.stdout + result.stderr
        outputs["notifications"] = json.dumps(receiver.messages)
        for path in host.state_dir.rglob("*"):
            if path.is_file():
                outputs[str(path)] = path.read_bytes().decode(errors="replace")
    finally:
        server.close()
        receiver.close()
    assert "401" in outputs["check --online"] or "unauthor" in outputs["check --online"].lower(), outputs["check --online"]
    for where, text in outputs.items():
        for secret in (PROM_PASS, PROM_TOKEN, base64.b64encode(f"scott:{PROM_PASS}".encode()).decode()):
            assert secret not in text, f"a Prometheus credential leaked into {where}"
