"""Loopback ports for the servers a test starts, without races between test processes.

Why not "bind port 0, close, hand the number on" (watcher.demo.rig.free_port): that number comes
from the kernel's ephemeral range, the range the kernel also draws from for every bind to port 0
and for the source port of every outgoing connection. Between the close and the server's own
bind, another pytest-xdist worker, another test run on the machine, or any client connecting to
Prometheus may be given the same number (seen: a notification receiver answered 501 on a demo
app's port). Prometheus, nginx, etcd and the demo app cannot bind port 0 and report the port
back, and a scenario rig must know its apps' ports before Prometheus starts (its targets).

So a port comes from PORT_RANGE, below the ephemeral range (32768-60999 on Debian): the kernel
never hands those out by itself. Processes that allocate here never hand out the same port: each
takes blocks of BLOCK ports, a block by an exclusive flock(2) on its own file in LOCK_DIR, a
directory shared by every test process on the machine (each xdist worker, each worktree's run),
held until the process exits (the kernel drops the lock then, also on SIGKILL). Inside a block,
ports are handed out once, in order. Each one is also checked free (a bind with SO_REUSEADDR,
as servers bind) against anything else on the machine that listens there.

What remains: a program outside this allocator that binds a fixed port in PORT_RANGE between
the check and the server's start. Every test that needs a port number takes it here
(tests/faults/faultlib.py and tests/sandbox too); the other binds to port 0 in tests/ keep their
socket open, so no number is handed over.

Servers that can bind port 0 themselves do so instead (the in-process HTTP servers of
support.receiver and SymlinkHost): no number is handed over, so nothing can race for it.
"""

from __future__ import annotations

import fcntl
import os
import random
import socket
import tempfile
import threading
from pathlib import Path

LOOPBACK = "127.0.0.1"
PORT_RANGE = range(10000, 20000)
BLOCK = 20  # 500 blocks: every concurrent test process on the machine holds a few
LOCK_DIR = Path(tempfile.gettempdir()) / "rollback-watcher-test-ports"


class PortsExhausted(RuntimeError):
    """Every block of PORT_RANGE is held by some process (or its ports are all in use)."""


def _is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


class PortAllocator:
    """Hands out ports of the blocks this process holds (see the module docstring)."""

    def __init__(self, ports: range = PORT_RANGE, block: int = BLOCK, lock_dir: Path = LOCK_DIR):
        self._starts = list(range(ports.start, ports.stop - block + 1, block))
        self._block = block
        self._lock_dir = lock_dir
        self._held: list[int] = []  # fds of the block lock files: closing one would free its block
        self._pending: list[int] = []
        self._mutex = threading.Lock()  # scenario rigs allocate from many threads

    def port(self) -> int:
        with self._mutex:
            while True:
                if not self._pending:
                    self._pending = self._take_block()
                port = self._pending.pop(0)
                if _is_free(port):
                    return port

    def ports(self, n: int) -> list[int]:
        return [self.port() for _ in range(n)]

    def _take_block(self) -> list[int]:
        self._lock_dir.mkdir(mode=0o1777, parents=True, exist_ok=True)
        # A random first block: concurrent processes rarely try the same lock file first.
        first = random.randrange(len(self._starts))
        for start in self._starts[first:] + self._starts[:first]:
            fd = os.open(self._lock_dir / f"{start}.lock", os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            self._held.append(fd)
            return list(range(start, start + self._block))
        raise PortsExhausted(f"every block of ports {self._starts[0]}-{self._starts[-1] + self._block - 1} "
                             f"is held by another process (lock files in {self._lock_dir})")


# One allocator per process: its blocks are the process's reservation. A forked child must not
# hand out its parent's blocks (the flock is shared through fork), so it gets its own.
_allocators: dict[int, PortAllocator] = {}
_allocators_lock = threading.Lock()


def allocator() -> PortAllocator:
    with _allocators_lock:
        return _allocators.setdefault(os.getpid(), PortAllocator())


def free_port() -> int:
    """A loopback port reserved for this process, free now, that no other test process and no
    bind to port 0 will take: hand it to a server that cannot bind port 0 itself."""
    return allocator().port()


def free_ports(n: int) -> list[int]:
    return allocator().ports(n)
