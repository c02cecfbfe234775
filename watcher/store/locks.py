"""The deploy lock (docs/design.md section 5): a deploy script holds it with flock(1) while it
deploys; the watcher waits while it is held, and holds it itself while it switches, so that a
deploy cannot start half-way through a rollback."""

from __future__ import annotations

import fcntl
import hashlib
import os
import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from watcher.base.errors import StateError


class LockBusy(Exception):
    pass


def held_by_other(path: Path | None) -> bool:
    """Whether another process holds an flock on `path` (a missing file is not held)."""
    if path is None or not path.exists():
        return False
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


class DeployLock:
    def __init__(self, path: Path | None):
        self.path = Path(path) if path else None

    def held_by_other(self) -> bool:
        return held_by_other(self.path)

    @contextmanager
    def hold(self) -> Iterator[None]:
        """Hold the lock for the block; raise LockBusy at once when a deploy holds it. Without
        a configured path, or where its directory does not exist, nothing can hold it."""
        if self.path is None or not self.path.parent.is_dir():
            yield
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise LockBusy(f"a deploy holds {self.path}") from None
            yield
        finally:
            os.close(fd)


class HostLock:
    """One watcher per watched host, whatever its state dir (issue 16): two watchers with
    different state dirs on one `current` would both roll it back.

    The lock is an abstract-namespace Unix socket named after the backend's identity
    (backends.host_identity): it needs no file, so it works under the unit's
    ProtectSystem=strict and PrivateTmp= (which give each unit its own /tmp and a read-only
    /run), and the kernel frees it when the holder dies, even by SIGKILL. A second watcher that
    cannot bind the name connects to it and reads the holder's PID with SO_PEERCRED, to name it.
    It is per network namespace: watchers in separate containers do not see each other's.
    """

    def __init__(self, identity: str):
        self.identity = identity
        digest = hashlib.sha256(identity.encode()).hexdigest()[:32]
        self.address = f"\0rollback-watcher/host/{digest}"
        self._sock: socket.socket | None = None

    def acquire(self) -> None:
        """Take the lock or raise LockBusy naming the running watcher's PID."""

        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(self.address)
        except OSError:
            sock.close()
            raise LockBusy(self._busy_message()) from None
        sock.listen(16)
        self._sock = sock
        # Accept and close at once: a second watcher only connects to read our PID.
        threading.Thread(target=_answer_peers, args=(sock,), name="host-lock", daemon=True).start()

    def holder_pid(self) -> int | None:

        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(2.0)
        try:
            probe.connect(self.address)
            creds = probe.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        except OSError:
            return None
        finally:
            probe.close()
        pid, _uid, _gid = struct.unpack("3i", creds)
        return pid or None

    def _busy_message(self) -> str:
        pid = self.holder_pid()
        who = f"PID {pid}" if pid else "a process whose PID cannot be read"
        return (f"another watcher ({who}) already watches {self.identity}; two watchers must never act on one "
                "host, whatever their state_dir. Stop it first (or watch another host).")

    def release(self) -> None:

        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
            except OSError:
                pass
            self._sock.close()
            self._sock = None


def _answer_peers(sock: socket.socket) -> None:
    while True:
        try:
            conn, _ = sock.accept()
        except OSError:
            return  # the lock was released: the socket is closed
        conn.close()


def acquire_host(identity: str | None) -> HostLock | None:
    """The instance lock of the watched host, by its backend's identity
    (backends.host_identity), taken beside the state dir's: two watchers with different state
    dirs on one `current` must not both act. None without a backend (such a watcher never
    acts). Raises StateError naming the running watcher's PID; permanent, as for the state
    dir's lock: a restart every RestartSec would find it held again."""

    if identity is None:
        return None
    lock = HostLock(identity)
    try:
        lock.acquire()
    except LockBusy as exc:
        raise StateError(str(exc), permanent=True) from None
    return lock
