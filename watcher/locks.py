"""The deploy lock (docs/design.md section 5): a deploy script holds it with flock(1) while it
deploys; the watcher waits while it is held, and holds it itself while it switches, so that a
deploy cannot start half-way through a rollback."""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


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
