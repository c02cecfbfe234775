"""Capistrano/Deployer layout: `releases/<id>/` directories and a `current` symlink.

Each release dir carries its own code and virtualenv, so moving `current` moves both as one
unit (seed 000). The switch never leaves `current` missing: the new link is made beside it
and renamed over it, which rename(2) does atomically; `ln -sfn` unlinks first.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from watcher.backends.base import Option, OptionKind, Release, check_release_id, resolved
from watcher.base.errors import BrokenCurrent, RollbackError, UnsafeReleaseId
from watcher.base.process import Progress, run_or_127, transcript

log = logging.getLogger(__name__)


class SymlinkBackend:
    # The keys of `backend:` for `type: symlink` (config/load.py reads them with these kinds).
    OPTIONS = {
        "releases": Option(OptionKind.PATH, required=True),
        "current": Option(OptionKind.PATH, required=True),
        "restart": Option(OptionKind.ARGV),
        "restart_fallback": Option(OptionKind.ARGV),
        "restart_timeout": Option(OptionKind.DURATION),
        "keep": Option(OptionKind.COUNT),
    }

    @staticmethod
    def identity(options: Mapping[str, Any]) -> str:
        """What this backend acts on: the `current` link, resolved (see backends.host_identity)."""
        return f"symlink:{resolved(options['current'])}"

    def __init__(
        self,
        releases: Path,
        current: Path,
        restart: tuple[str, ...] | None = None,
        restart_fallback: tuple[str, ...] | None = None,
        restart_timeout: float = 60.0,
        keep: int | None = None,
    ):
        if keep is not None and keep < 1:
            raise ValueError("keep must be at least 1")
        self.releases_dir = Path(releases)
        self.current_link = Path(current)
        self.restart = tuple(restart) if restart else None
        self.restart_fallback = tuple(restart_fallback) if restart_fallback else None
        self.restart_timeout = restart_timeout
        self.keep = keep

    def releases(self) -> list[Release]:
        """Real directories directly inside `releases/`, newest first by their mtime (never by
        name: git-SHA names sort in no useful order; the watcher's own deploy timeline comes
        first where it has one, see decide.order_releases). Symlinks are never releases: a link could lead anywhere."""
        found = []
        try:
            entries = list(os.scandir(self.releases_dir))
        except OSError as e:
            raise RollbackError(f"cannot list {self.releases_dir}: {e.strerror}") from e
        for entry in entries:
            # Hidden names are our own work in progress (a release being pruned).
            if entry.name.startswith("."):
                continue
            try:
                check_release_id(entry.name)
            except UnsafeReleaseId as e:
                log.warning("skipping %s/%r: %s", self.releases_dir, entry.name, e.reason)
                continue
            if entry.is_symlink():
                log.warning("skipping %s: a symlink is not a release", entry.path)
                continue
            try:
                if not entry.is_dir(follow_symlinks=False):
                    continue
                mtime = entry.stat(follow_symlinks=False).st_mtime
            except FileNotFoundError:  # removed while we listed: a deploy script pruning
                continue
            found.append(Release(entry.name, location=entry.path, created=mtime))
        found.sort(key=lambda r: r.created or 0.0, reverse=True)
        return found

    def current(self) -> Release:
        """The release `current` points at. BrokenCurrent when the link itself is wrong (missing,
        dangling, a loop, a real directory, pointing outside releases/): waiting will not fix
        that. Any other OSError (permissions, I/O) is a plain RollbackError: it may pass."""
        try:
            resolved = self.current_link.resolve(strict=True)
        except (FileNotFoundError, RuntimeError) as e:
            raise BrokenCurrent(f"cannot resolve {self.current_link}: {e}") from e
        except OSError as e:
            raise RollbackError(f"cannot resolve {self.current_link}: {e}") from e
        if not self.current_link.is_symlink():
            raise BrokenCurrent(f"{self.current_link} is not a symlink")
        if resolved.parent != self.releases_dir.resolve() or not resolved.is_dir():
            raise BrokenCurrent(
                f"{self.current_link} points to {resolved}, not to a release directory "
                f"inside {self.releases_dir}"
            )
        release_id = check_release_id(resolved.name)
        return Release(release_id, location=str(resolved), created=resolved.stat().st_mtime)

    def preflight(self, target: Release) -> None:
        """The target must be a whole release: a real, non-empty directory directly inside
        `releases/`. Without this, a rollback could point `current` at nothing (seed 000)."""
        self._release_dir(target.id)

    def _release_dir(self, release_id: str) -> Path:
        check_release_id(release_id)
        path = self.releases_dir / release_id
        if path.is_symlink():
            raise RollbackError(f"release {release_id}: {path} is a symlink, not a release directory")
        if not path.exists():
            raise RollbackError(f"release {release_id}: {path} does not exist")
        if not path.is_dir():
            raise RollbackError(f"release {release_id}: {path} is not a directory")
        if path.resolve().parent != self.releases_dir.resolve():
            raise RollbackError(f"release {release_id}: {path} is outside {self.releases_dir}")
        if not any(path.iterdir()):
            raise RollbackError(f"release {release_id}: {path} is empty")
        return path

    def switch(self, target: Release, reason: str = "", progress: Progress | None = None) -> str:
        path = self._release_dir(target.id)
        self._replace_link(path)
        log.info("switched %s to release %s (%s)", self.current_link, target.id, reason or "no reason given")
        return self.run_restart(target, progress)

    def run_restart(self, target: Release, progress: Progress | None = None) -> str:
        """`restart`, then `restart_fallback` if it failed; raises RollbackError when the last
        one failed (the link has moved already). `progress` hears of each command."""
        if not self.restart:
            return ""
        results = [run_or_127(self.restart, self.restart_timeout, progress=progress)]
        if not results[-1].ok and self.restart_fallback:
            log.warning("restart failed (%s); trying the fallback", results[-1].describe())
            results.append(run_or_127(self.restart_fallback, self.restart_timeout, progress=progress))
        output = transcript(results)
        if not results[-1].ok:
            # The link has moved already; whoever reads this must not assume the old release runs.
            raise RollbackError(
                f"switched current to {target.id} but restart failed: "
                + "; ".join(r.describe() for r in results),
                output,
            )
        log.info("restarted after switch to %s: %s", target.id, results[-1].describe())
        return output

    def _replace_link(self, release_dir: Path) -> None:
        # Keep the style of the existing link: Deployer writes relative links, Capistrano absolute.
        try:
            relative = not os.path.isabs(os.readlink(self.current_link))
        except OSError:
            relative = False
        dest = os.path.relpath(release_dir, self.current_link.parent) if relative else release_dir.absolute()
        tmp = self.current_link.with_name(f".{self.current_link.name}.{uuid.uuid4().hex}.tmp")
        os.symlink(dest, tmp)
        try:
            os.replace(tmp, self.current_link)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise RollbackError(f"cannot replace {self.current_link}: {e.strerror}") from e
        # The rename must survive a power cut, or the host boots into the release we left.
        fd = os.open(self.current_link.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def prune(self, protected: set[str], newest_first: Sequence[str] | None = None) -> list[str]:
        """Delete releases older than the `keep` newest, never the current one nor any id in
        `protected` (known-good ones and the rollback target). `newest_first` is the watcher's
        order (its deploy timeline first); without it, this backend's own. Returns the removed ids."""
        if self.keep is None:
            return []
        spared = set(protected) | {self.current().id}
        listed = {r.id: r for r in self.releases()}
        order = [rid for rid in newest_first if rid in listed] if newest_first is not None else list(listed)
        removed = []
        for release in (listed[rid] for rid in order[self.keep :]):
            if release.id in spared:
                continue
            path = self._release_dir_for_prune(release.id)
            if path is None:
                continue
            # Renaming first takes the release out of the listing at once, so a delete that
            # fails half-way never leaves a half-empty dir that looks like a whole release.
            doomed = path.with_name(f".prune-{release.id}-{uuid.uuid4().hex[:8]}")
            os.rename(path, doomed)
            shutil.rmtree(doomed, ignore_errors=True)
            if doomed.exists():
                log.warning("pruned release %s but could not delete all of %s", release.id, doomed)
            log.info("pruned release %s", release.id)
            removed.append(release.id)
        return removed

    def _release_dir_for_prune(self, release_id: str) -> Path | None:
        path = self.releases_dir / release_id
        if path.is_symlink() or not path.is_dir() or path.resolve().parent != self.releases_dir.resolve():
            log.warning("not pruning %s: not a release directory", path)
            return None
        return path
