"""What every rollback backend offers, and the Release it deals in (DESIGN.md section 6)."""

from __future__ import annotations

import os
import re
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence, runtime_checkable

from watcher.errors import UnsafeReleaseId
from watcher.model import Release

# A release id names a directory, an image tag or a slot. Ids come from directory names and
# files written by deploy scripts, so they are checked before they are ever joined to a path.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_release_id(release_id: str) -> str:
    """Return the id unchanged, or raise UnsafeReleaseId saying why it is refused."""
    if not isinstance(release_id, str) or not release_id:
        raise UnsafeReleaseId("release id is empty")
    if _CONTROL.search(release_id):
        raise UnsafeReleaseId(f"release id {release_id!r} contains a control character")
    if "/" in release_id or "\\" in release_id:
        raise UnsafeReleaseId(f"release id {release_id!r} contains a path separator")
    if release_id in (".", "..") or ".." in release_id.split("/"):
        raise UnsafeReleaseId(f"release id {release_id!r} is a relative path")
    if len(release_id) > 255:
        raise UnsafeReleaseId("release id is longer than 255 characters")
    return release_id


def write_file_atomically(path: Path, text: str) -> None:
    """Replace `path` so that readers see the old text or the new, never a part: temp file in
    the same directory, fsync, rename over, fsync the directory. Keeps the old file's mode."""
    path = Path(path)
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        mode = 0o644
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class Backend(Protocol):
    """How the watcher changes what runs on the host."""

    def releases(self) -> list[Release]:
        """Every release the host has, newest first, the current one included."""
        ...

    def current(self) -> Release:
        """The release serving now."""
        ...

    def preflight(self, target: Release) -> None:
        """Raise RollbackError if `target` is missing or not whole. Changes nothing."""
        ...

    def switch(self, target: Release, reason: str = "") -> str:
        """Make `target` current. Returns captured output; raises RollbackError with the reason."""
        ...


@runtime_checkable
class Prunable(Protocol):
    """A backend that can delete old releases (`keep:`)."""

    def prune(self, protected: set[str], newest_first: Sequence[str] | None = None) -> list[str]:
        """Delete releases beyond the `keep` newest of `newest_first`, never one in `protected`."""
        ...
