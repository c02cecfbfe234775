"""The health endpoint and the notifier misbehave.

A probe that cannot get its expected answer in time is a failed probe (docs/design.md section 4),
bounded by its timeout whatever the peer does. A notifier that is down or hangs never delays
or breaks a rollback (section 7): delivery runs on its own threads, failures are journaled.
"""

from __future__ import annotations

import time

import pytest
from faultlib import BadHttpServer, free_port

from support import HEALTH_PROBE_RULES
from watcher.config.load import load_config
from watcher.core.rules import HttpCheck, Rule
from watcher.service.build import build_watcher
from watcher.signals.probe import HttpProbe
from watcher.signals.reader import SignalReader

TIMEOUT = 1.0
BOUND = TIMEOUT + 1.5  # the timeout plus a loaded machine's scheduling


@pytest.mark.parametrize("mode,expect_body", [
    ("reset", None), ("slow", None), ("redirect", None), ("stream", "healthy"), ("hang", None),
])
def test_misbehaving_health_endpoint_is_a_failed_probe_in_bounded_time(mode, expect_body):
    server = BadHttpServer(mode, delay=5.0)
    probe = HttpProbe()
    try:
        check = HttpCheck(f"{server.url}/health", 200, expect_body, TIMEOUT)
        started = time.monotonic()
        result = probe.probe(check)
        took = time.monotonic() - started
    finally:
        probe.close()
        server.close()
    assert not result.ok, (mode, result)
    assert took <= BOUND, f"{mode}: the probe took {took:.2f}s"


def test_health_endpoint_trickling_headers_is_cut_at_the_probe_timeout():
    """httpx's timeout applies to each read: a peer sending its status line a byte at a time
    never trips it. The reader bounds the whole probe (fixed in signals.SignalReader)."""
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    stop = threading.Event()

    def serve():
        conn, _ = listener.accept()
        conn.recv(65536)
        for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok":
            if stop.wait(0.3):
                break
            conn.sendall(bytes([byte]))
        conn.close()

    threading.Thread(target=serve, daemon=True).start()
    rule = Rule(name="health", signal=HttpCheck(f"http://127.0.0.1:{listener.getsockname()[1]}/", 200, None, TIMEOUT),
                action="rollback")
    reader = SignalReader(None, HttpProbe(), None)
    try:
        started = time.monotonic()
        result, _ = reader.read_all([rule], time.time(), 60)["health"]
        took = time.monotonic() - started
    finally:
        stop.set()
        reader.close()
        listener.close()
    assert not result.ok and "timeout" in result.detail
    assert took <= BOUND


@pytest.mark.parametrize("notifier", ["closed", "hanging"])
def test_notifier_down_or_hanging_does_not_delay_the_rollback(symlink_host, notifier):
    hang = BadHttpServer("hang")
    port = free_port() if notifier == "closed" else hang.port
    host = symlink_host
    host.add_release("r1")
    host.add_release("r2", health=500)
    host.deploy("r2")
    cfg = load_config(host.write_config(HEALTH_PROBE_RULES, notify=[f"json://127.0.0.1:{port}/hook",
                                                                    f"ntfy://127.0.0.1:{port}/topic"]))
    w = build_watcher(cfg)
    try:
        w.start()
        w.apply_request("mark", {"release": "r1", "mark": "good"}, w.clock())
        report = w.tick()
    finally:
        w.reader.close()
        if w.notifier is not None:
            w.notifier.close(timeout=1)
        hang.close()
    assert report.acted == "rolled_back"
    assert host.current_id() == "r1"
    # probe (<= 1 s) + switch + verify (first attempt passes at once): a tick that waited for
    # the hanging notification would take its 10 s; 8 s leaves a loaded machine its slack.
    assert report.seconds < 8.0, f"the rollback tick took {report.seconds:.2f}s: it waited for a notification"
    kinds = host.kinds()
    # switched and probed in this tick; "verified" once the fired rule clears at a later one
    assert kinds.count("rollback_switched") == 1 and "rollback_confirming" in kinds
