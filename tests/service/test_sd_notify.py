"""The sd_notify messages of a real `rollback-watcher run`, read from a NOTIFY_SOCKET datagram
socket as systemd would (a file path, and an abstract '@' address)."""

from __future__ import annotations

import os
import socket
import tempfile
import time
import uuid

import pytest

RULES = """rules:
  - name: health
    http: HEALTH_URL
    failures: 2
    action: rollback
"""


def receive_until(sock: socket.socket, wanted: set[str], timeout: float = 30.0) -> list[dict[str, str]]:
    """Datagrams as {key: value}, until every wanted key has been seen."""
    got: list[dict[str, str]] = []
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    while not wanted <= seen:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no {sorted(wanted - seen)} within {timeout}s; got {got}")
        sock.settimeout(left)
        data = sock.recv(4096).decode()
        fields = dict(line.split("=", 1) for line in data.splitlines() if "=" in line)
        got.append(fields)
        seen |= {f"{k}={v}" if k in ("READY", "WATCHDOG", "STOPPING") else k for k, v in fields.items()}
    return got


@pytest.fixture
def path_socket():
    d = tempfile.mkdtemp(prefix="rw-notify-", dir="/tmp")  # a short path: sun_path holds 108 bytes
    path = os.path.join(d, "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    yield sock, path
    sock.close()
    os.unlink(path)
    os.rmdir(d)


@pytest.fixture
def abstract_socket():
    name = f"rw-notify-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    yield sock, "@" + name
    sock.close()


def run_and_listen(host, start_watcher, sock, address):
    host.add_release("r1")
    host.deploy("r1")
    config = host.write_config(RULES)
    w = start_watcher(config, env={"NOTIFY_SOCKET": address})
    got = receive_until(sock, {"READY=1", "STATUS", "WATCHDOG=1"})
    w.proc.send_signal(15)
    got += receive_until(sock, {"STOPPING=1"})
    assert w.proc.wait(timeout=30) == 0
    return got


def test_run_sends_ready_status_and_watchdog_to_a_socket_path(symlink_host, start_watcher, path_socket):
    got = run_and_listen(symlink_host, start_watcher, *path_socket)
    ready = next(m for m in got if m.get("READY") == "1")
    assert ready["STATUS"].startswith("release ")  # "release ?" before the first tick on an empty state
    assert int(ready["MAINPID"]) > 0
    ticks = [m for m in got if m.get("WATCHDOG") == "1"]
    assert ticks and "release r1" in ticks[0]["STATUS"] and "no rule firing" in ticks[0]["STATUS"]
    assert got.index(ready) < got.index(ticks[0])
    assert got[-1] == {"STOPPING": "1"}


def test_run_sends_ready_and_watchdog_to_an_abstract_address(symlink_host, start_watcher, abstract_socket):
    got = run_and_listen(symlink_host, start_watcher, *abstract_socket)
    assert any(m.get("READY") == "1" for m in got)
    assert any(m.get("WATCHDOG") == "1" for m in got)


def test_sighup_sends_reloading_then_ready(symlink_host, start_watcher, path_socket):
    sock, address = path_socket
    host = symlink_host
    host.add_release("r1")
    host.deploy("r1")
    w = start_watcher(host.write_config(RULES), env={"NOTIFY_SOCKET": address})
    receive_until(sock, {"READY=1", "WATCHDOG=1"})
    w.proc.send_signal(1)
    got = receive_until(sock, {"RELOADING"})
    got += receive_until(sock, {"READY=1"})
    reloading, ready = [m for m in got if "RELOADING" in m or "READY" in m][:2]
    assert reloading["RELOADING"] == "1" and int(reloading["MONOTONIC_USEC"]) > 0  # newer systemd wants it
    assert ready == {"READY": "1"}
    assert w.stop() == 0
