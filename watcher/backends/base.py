"""What every rollback backend offers, and the Release it deals in (docs/design.md section 6)."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from watcher.base.errors import UnsafeReleaseId
from watcher.base.process import Progress
from watcher.core.model import Release as Release  # re-exported: every backend deals in Releases

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


class OptionKind(StrEnum):
    """What a backend option holds; config/load.py reads each kind with its value check."""

    PATH = "path"  # a file or directory, relative to watcher.yaml; `check` looks that it exists
    ARGV = "argv"  # a command as a list of arguments, never a shell string
    TEXT = "text"
    TEXTS = "texts"  # a list of strings
    NAMES = "names"  # a mapping of names to strings
    DURATION = "duration"  # longer than 0s
    COUNT = "count"  # a whole number >= 1


@dataclass(frozen=True)
class Option:
    """One key of a backend's `backend:` section; the backend's constructor takes it by name."""

    kind: OptionKind
    required: bool = False


def resolved(path: str | os.PathLike[str]) -> str:
    """A path with its directory resolved and its own name kept (`current` itself is a symlink
    to a release): two spellings of one host give one identity."""
    path = os.fspath(path)
    return os.path.join(os.path.realpath(os.path.dirname(path) or "."), os.path.basename(path))


def argv_identity(argv: Iterable[str]) -> str:
    return json.dumps(list(argv))


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


class BackendType(Protocol):
    """A backend class as backends.BACKENDS holds it: its `backend:` keys, what it acts on, and
    its constructor, which takes the validated options by name."""

    OPTIONS: dict[str, Option]

    def identity(self, options: Mapping[str, Any]) -> str: ...

    def __call__(self, *args: Any, **kwargs: Any) -> Backend: ...


@runtime_checkable
class Restarts(Protocol):
    """A backend whose switch ends with a restart command (symlink `restart:`). Its switch takes
    `progress` (process.Progress) and tells it of each command it runs, so that the watcher can
    record them; after a crash in the middle of the switch, rollback.reconcile runs the restart
    again when the recorded one neither finished nor still runs."""

    def switch(self, target: Release, reason: str = "", progress: Progress | None = None) -> str:
        ...

    def run_restart(self, target: Release, progress: Progress | None = None) -> str:
        """The restart for `target`, once `current` names it; "" when none is configured."""
        ...


@runtime_checkable
class Prunable(Protocol):
    """A backend that can delete old releases (`keep:`)."""

    def prune(self, protected: set[str], newest_first: Sequence[str] | None = None) -> list[str]:
        """Delete releases beyond the `keep` newest of `newest_first`, never one in `protected`."""
        ...
