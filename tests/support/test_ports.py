"""support/ports.py: the ports handed to servers that cannot bind port 0 themselves. Real
processes and real sockets; the lock directory is a temp dir where the test needs its own."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from support import free_port
from support.ports import LOOPBACK, PORT_RANGE, PortAllocator, PortsExhausted

TESTS = Path(__file__).resolve().parents[1]

# A process that reserves 60 ports (more than one block), prints them, and holds them until its
# stdin closes: what an xdist worker does while its servers run.
HOLDER = """
import json, sys
sys.path.insert(0, sys.argv[1])
from support import free_port
print(json.dumps([free_port() for _ in range(60)]), flush=True)
sys.stdin.read()
"""


def test_a_port_for_a_server_is_outside_the_kernels_ephemeral_range():
    # The kernel picks every bind to port 0 and every outgoing connection's source port from
    # this range: a port from it can be given to another process before the server binds it.
    low, high = (int(x) for x in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    ports = [free_port() for _ in range(5)]
    assert not [p for p in ports if low <= p <= high], (ports, low, high)


def test_processes_reserving_ports_at_once_never_get_the_same_one():
    holders = [subprocess.Popen([sys.executable, "-c", HOLDER, str(TESTS)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True) for _ in range(3)]
    try:
        got = [json.loads(h.stdout.readline()) for h in holders]
    finally:
        for h in holders:
            h.stdin.close()
            h.wait(timeout=30)
    every = [p for ports in got for p in ports]
    assert len(every) == 180 and len(set(every)) == 180, "two processes were handed the same port"
    assert all(p in PORT_RANGE for p in every)


def test_two_allocators_take_different_blocks_and_a_third_finds_none_left(tmp_path):
    ports = range(PORT_RANGE.start, PORT_RANGE.start + 100)
    a, b, c = (PortAllocator(ports, block=50, lock_dir=tmp_path) for _ in range(3))
    mine, theirs = a.ports(10), b.ports(10)
    assert not set(mine) & set(theirs)
    with pytest.raises(PortsExhausted):
        c.port()


def test_a_port_something_listens_on_is_never_handed_out(tmp_path):
    port = free_port()
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((LOOPBACK, port))
        listener.listen()
        with pytest.raises(PortsExhausted):
            PortAllocator(range(port, port + 1), block=1, lock_dir=tmp_path).port()
