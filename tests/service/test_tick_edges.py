"""The edges of a decision (issue 13, items 7, 8, 10, 14, 15), one tick at a time with a fake
clock on a real symlink host (release dirs, the `current` link, a /health endpoint that follows
it), real HTTP endpoints on 127.0.0.1, real flock(2) deploy locks and, for the command backend,
real scripts. Only time is simulated.

    7   a rollback is verified when the rules that fired clear on the restored release, else
        "probably not the cause" and the watcher stops acting
    8   a deploy lock held while a rollback rule fires does not use up the watch window
    10  a broken `current` is said once, rules are still evaluated, nothing is acted on
    14  one failure to list releases is a wait, not a critical "cannot act"
    15  SIGHUP applies every change (a removed backend, new notify targets) or refuses and
        says what needs a restart
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from support import run_cli
from support.ticking import Clock, oom_counter, ticks
from watcher.config.load import load_config
from watcher.service.build import build_watcher
from watcher.service.daemon import reload

HEALTH_RULE = "rules:\n  - name: health\n    http: HEALTH_URL\n    failures: 2\n    action: rollback\n"


class Endpoint:
    """An HTTP endpoint on 127.0.0.1 whose status the test sets (`status`); records bodies."""

    def __init__(self, status: int = 200):
        self.status = status
        self.bodies: list[bytes] = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    endpoint.bodies.append(self.rfile.read(length))
                self.send_response(endpoint.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            do_GET = do_POST = _answer  # noqa: N815 - http.server's names

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoint():
    started = []

    def start(status: int = 200) -> Endpoint:
        started.append(Endpoint(status))
        return started[-1]

    yield start
    for e in started:
        e.close()


@pytest.fixture
def host(symlink_host):
    symlink_host.add_release("r1")
    symlink_host.add_release("r2", health=503)
    symlink_host.deploy("r1")
    return symlink_host


def watcher(host, clock, rules=HEALTH_RULE, notify=False, **extra):
    """A started Watcher on r1, marked known-good, after its first tick."""
    extra.setdefault("watch_window", "10m")
    cfg = load_config(host.write_config(rules, **extra), environ={})
    w = build_watcher(cfg, notify=notify, clock=clock)
    w.sleep = lambda s: None  # verification attempts pass in simulated time
    w.start()
    w.apply_request("mark", {"release": "r1", "mark": "good"}, clock())
    ticks(w, clock, 1)
    return w


def verdicts(host) -> list[tuple[str, str]]:
    return [(e["action"], e["check"]) for e in host.journal() if e["kind"] == "verdict"]


# --- 7: verified means the fired rules clear on the restored release -------------------------


OOM_RULE = "rules:\n  - name: oom\n    host: oom_kills\n    path: {path}\n    window: 10s\n    above: 0\n    action: rollback\n"


def test_a_rollback_whose_fired_rule_never_clears_is_not_verified_and_the_watcher_stops(host, tmp_path):
    """OOM kills go on after the switch (the deploy was not their cause), while the restored
    release's health endpoint, the verify URL, answers 200: not verified."""
    path, kill = oom_counter(tmp_path)
    clock = Clock()
    w = watcher(host, clock, OOM_RULE.format(path=path), verify={"url": host.health_url, "attempts": 3,
                                                               "every": "1s", "clear_within": "15s"})
    host.deploy("r2")
    ticks(w, clock, 1)
    reports = []
    for _ in range(25):
        kill()
        reports += ticks(w, clock, 1)
    assert [r.acted for r in reports].count("rolled_back") == 1
    assert host.current_id() == "r1"
    kinds = host.kinds()
    assert "rollback_not_cleared" in kinds and "rollback_verified" not in kinds
    assert "probably not the cause" in w.state.halted
    assert kinds.count("rollback_intent") == 1  # never rolls back further
    # no false "firing on r1 (outside window)" while the rollback was being confirmed
    assert ("notify", "outside_window") not in verdicts(host)
    status = json.loads(run_cli("status", "--json", "--config", w.config.path, check=True).stdout)
    assert "probably not the cause" in status["halted"]


def test_a_rollback_is_verified_once_the_fired_rule_clears_on_the_restored_release(host, tmp_path):
    path, kill = oom_counter(tmp_path)
    clock = Clock()
    w = watcher(host, clock, OOM_RULE.format(path=path), verify={"url": host.health_url, "attempts": 3,
                                                               "every": "1s", "clear_within": "30s"})
    host.deploy("r2")
    ticks(w, clock, 1)
    kill()
    reports = ticks(w, clock, 2)
    assert "rolled_back" in [r.acted for r in reports]
    assert "rollback_confirming" in host.kinds()
    ticks(w, clock, 15)  # no more kills: host counters count from the switch, so the rule clears
    kinds = host.kinds()
    verified = [e for e in host.journal() if e["kind"] == "rollback_verified"]
    assert len(verified) == 1 and verified[0]["rules"] == ["oom"]
    assert kinds.index("rollback_confirming") < kinds.index("rollback_verified")
    assert w.state.halted is None and w.state.confirming is None
    assert [e for e in host.journal() if e["kind"] == "incident"][-1]["resolution"] == "rolled_back"


def test_check_warns_when_a_backend_has_no_way_to_verify(host):
    cfg = host.write_config("rules:\n  - name: up\n    query: up\n    above: 0.5\n    action: rollback\n",
                            prometheus={"url": "http://127.0.0.1:9"}, verify={})
    result = run_cli("check", "--config", cfg)
    assert result.returncode == 0, result.stderr
    assert "warning: no verify.url and no http rollback rule" in result.stdout
    with_probe = run_cli("check", "--config", host.write_config(HEALTH_RULE, notify=["json://127.0.0.1:9/hook"]))
    assert with_probe.returncode == 0 and "warning" not in with_probe.stdout, with_probe.stdout


# --- 8: a held deploy lock does not use up the watch window ---------------------------------


def test_a_deploy_lock_held_past_the_window_end_delays_the_rollback_and_is_said_once(host, tmp_path):
    lock = tmp_path / "deploy.lock"
    clock = Clock()
    w = watcher(host, clock, watch_window="1m", deploy_lock=str(lock), lock_timeout="30s")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # a deploy script holding it, as flock(1) does
        host.deploy("r2")
        reports = ticks(w, clock, 12, every=10.0)  # two minutes: twice the window
        assert all(r.acted is None for r in reports)
        assert w.state.releases["r2"].mark != "good" and w.state.in_watch_window(clock())
        assert ("wait", "deploy_lock") in verdicts(host)
        assert host.kinds().count("lock_wait_long") == 1
    finally:
        os.close(fd)  # the deploy is done
    reports = ticks(w, clock, 2, every=10.0)
    assert "rolled_back" in [r.acted for r in reports]
    assert host.current_id() == "r1"
    assert "lock_wait_ended" in host.kinds()


# --- 10: a broken `current` ------------------------------------------------------------------


@pytest.mark.parametrize("breakage", ["outside", "dangling", "real_directory"])
def test_a_broken_current_is_said_once_rules_are_still_evaluated_and_nothing_is_acted_on(host, tmp_path, breakage):
    clock = Clock()
    w = watcher(host, clock)
    host.current.unlink()
    if breakage == "outside":
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        (elsewhere / "health_status").write_text("503\n")
        host.current.symlink_to(elsewhere)
    elif breakage == "dangling":
        host.current.symlink_to(host.releases / "gone")
    else:
        host.current.mkdir()
        (host.current / "health_status").write_text("503\n")
    reports = ticks(w, clock, 5)
    assert all(r.rows for r in reports)  # the rules are still evaluated
    assert all(r.acted is None for r in reports)
    assert host.kinds().count("current_unreadable") == 1
    assert "rollback_intent" not in host.kinds()
    assert all(action != "rollback" for action, _ in verdicts(host))
    status = json.loads(run_cli("status", "--json", "--config", w.config.path, check=True).stdout)
    assert status["current_problem"] and str(host.current) in status["current_problem"]
    if host.current.is_dir() and not host.current.is_symlink():
        for f in host.current.iterdir():
            f.unlink()
        host.current.rmdir()
    else:
        host.current.unlink()
    host.deploy("r1")
    ticks(w, clock, 2)
    assert host.kinds().count("current_readable") == 1 and w.state.current_problem is None


# --- 14: listing releases fails once --------------------------------------------------------


def command_backend(host, tmp_path) -> tuple[dict, Path]:
    """The command backend with real scripts over the symlink host; listing fails while
    `flag` exists (a deploy tool's API timing out once, a registry hiccup)."""
    flag = tmp_path / "list-fails"
    scripts = {
        "current": f'#!/bin/sh\nbasename "$(readlink {host.current})"\n',
        "releases": f'#!/bin/sh\nif [ -e {flag} ]; then echo "registry timed out" >&2; exit 1; fi\necho r2\necho r1\n',
        "switch": f'#!/bin/sh\nln -sfn "releases/$1" {host.root}/.cur.tmp && mv -T {host.root}/.cur.tmp {host.current}\n',
    }
    backend = {"type": "command"}
    for name, text in scripts.items():
        path = tmp_path / f"{name}.sh"
        path.write_text(text)
        path.chmod(0o755)
        backend[name] = [str(path), "{target}"] if name == "switch" else [str(path)]
    return backend, flag


def test_one_failure_to_list_releases_is_a_wait_not_a_page(host, tmp_path):
    backend, flag = command_backend(host, tmp_path)
    clock = Clock()
    w = watcher(host, clock, backend=backend)
    flag.touch()
    host.deploy("r2")
    ticks(w, clock, 2)  # the rule fires on the second tick; listing fails
    assert verdicts(host) == [("wait", "backend_retry")]
    flag.unlink()
    reports = ticks(w, clock, 2)
    assert "rolled_back" in [r.acted for r in reports] and host.current_id() == "r1"
    assert ("refuse", "backend_unreadable") not in verdicts(host) and ("refuse", "no_target") not in verdicts(host)


def test_listing_that_keeps_failing_pages_after_error_limit_ticks(host, tmp_path):
    backend, flag = command_backend(host, tmp_path)
    clock = Clock()
    w = watcher(host, clock, backend=backend, error_limit=3)
    flag.touch()
    host.deploy("r2")
    ticks(w, clock, 6)
    assert verdicts(host) == [("wait", "backend_retry"), ("refuse", "backend_unreadable")]
    refusal = [e for e in host.journal() if e["kind"] == "verdict"][-1]
    assert "3 times in a row" in refusal["reason"] and "cannot list" in refusal["reason"]
    assert host.current_id() == "r2"


# --- 15: SIGHUP applies every change or refuses ---------------------------------------------


def test_reload_without_a_backend_stops_acting(host):
    clock = Clock()
    w = watcher(host, clock)
    host.write_config(HEALTH_RULE, watch_window="10m", backend=None)
    assert reload(w) is True
    assert w.backend is None and "backend_removed" in host.kinds()
    host.deploy("r2")
    reports = ticks(w, clock, 4)
    assert all(r.acted is None for r in reports)
    assert host.current_id() == "r2"


def test_reload_with_another_state_dir_or_host_is_refused_and_says_what_needs_a_restart(host, tmp_path):
    clock = Clock()
    w = watcher(host, clock)
    before = w.config
    host.write_config(HEALTH_RULE, watch_window="10m", state_dir=str(tmp_path / "elsewhere"))
    assert reload(w) is False
    refused = [e for e in host.journal() if e["kind"] == "reload_refused"][-1]
    assert refused["needs_restart"] and "state_dir" in refused["problems"][0] and "restart" in refused["problems"][0]
    assert w.config is before
    other = dict(json.loads(host.write_config(HEALTH_RULE).read_text())["backend"], current=str(tmp_path / "current"))
    host.write_config(HEALTH_RULE, watch_window="10m", backend=other)
    assert reload(w) is False
    assert "watching another host needs a restart" in host.journal()[-1]["problems"][0]


def test_reload_applies_new_notify_targets_and_names(host, endpoint):
    receiver = endpoint(200)
    clock = Clock()
    w = watcher(host, clock)
    assert w.notifier is None
    host.write_config(HEALTH_RULE, watch_window="10m", service="shop-api",
                      notify=[f"json://127.0.0.1:{receiver.server.server_address[1]}/hook"])
    try:
        assert reload(w) is True
        assert w.notifier is not None
        host.deploy("r2")
        ticks(w, clock, 1)
        assert w.notifier.flush(15)
        assert any(b"shop-api" in body for body in receiver.bodies)
    finally:
        if w.notifier is not None:
            w.notifier.close(1)


def test_the_clear_bound_waits_for_the_longest_range_a_fired_rule_reads(host, tmp_path):
    """A fixed `[5m]` holds the bad release's samples for five minutes after the switch: asking
    it to clear sooner would call a good rollback "probably not the cause"."""
    from watcher.service.confirm import clear_bound

    rules = ("rules:\n  - name: oom\n    query: increase(x[5m])\n    above: 0\n    action: rollback\n"
             "  - name: ratio\n    query: rate(e[$window]) / rate(r[$window])\n    above: 0.1\n    action: rollback\n")
    cfg = load_config(host.write_config(rules, prometheus={"url": "http://127.0.0.1:9"}), environ={})
    assert clear_bound(cfg, ["oom"]) == 300 + 3 * cfg.interval
    assert clear_bound(cfg, ["ratio"]) == cfg.max_window + 3 * cfg.interval
    cfg = load_config(host.write_config(rules, prometheus={"url": "http://127.0.0.1:9"},
                                        verify={"clear_within": "20s"}), environ={})
    assert clear_bound(cfg, ["oom"]) == 20
