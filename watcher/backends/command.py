"""The user's own scripts as a backend: `current`, `releases`, `switch` and `preflight` argv.

`{target}` is replaced inside each argv element, so it always stays exactly one element, and
nothing is ever run through a shell: an id such as `a; reboot` reaches the script as one
harmless string. The scripts' stdout carries data (one id per line); their stderr is kept for
messages only.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from watcher.backends.base import Option, OptionKind, Release, argv_identity, check_release_id
from watcher.base.errors import RollbackError, UnsafeReleaseId
from watcher.base.process import CommandResult, run_argv, transcript

log = logging.getLogger(__name__)


def fill(template: tuple[str, ...], target: str) -> tuple[str, ...]:
    return tuple(part.replace("{target}", target) for part in template)


class CommandBackend:
    # The keys of `backend:` for `type: command`.
    OPTIONS = {
        "current": Option(OptionKind.ARGV, required=True),
        "releases": Option(OptionKind.ARGV, required=True),
        "switch": Option(OptionKind.ARGV, required=True),
        "preflight": Option(OptionKind.ARGV),
        "timeout": Option(OptionKind.DURATION),
    }

    @staticmethod
    def identity(options: Mapping[str, Any]) -> str:
        """What this backend acts on: as far as the watcher can tell, its switch command."""
        return f"command:{argv_identity(options['switch'])}"

    def __init__(
        self,
        current: tuple[str, ...],
        releases: tuple[str, ...],
        switch: tuple[str, ...],
        timeout: float = 120.0,
        preflight: tuple[str, ...] | None = None,
    ):
        for name, argv in (("current", current), ("releases", releases), ("switch", switch)):
            if not argv:
                raise ValueError(f"command backend: `{name}` needs an argv")
        self.current_argv = tuple(current)
        self.releases_argv = tuple(releases)
        self.switch_argv = tuple(switch)
        self.preflight_argv = tuple(preflight) if preflight else None
        self.timeout = timeout

    def releases(self) -> list[Release]:
        """The ids the script prints, one per line, in its order (newest first)."""
        result = self._run(self.releases_argv, {}, "list releases")
        found = []
        for line in result.output.splitlines():
            line = line.strip()
            if not line:
                continue
            try:
                found.append(Release(check_release_id(line), location="command"))
            except UnsafeReleaseId as e:
                log.warning("skipping a release printed by `%s`: %s", self.releases_argv[0], e.reason)
        return found

    def current(self) -> Release:
        result = self._run(self.current_argv, {}, "read the current release")
        lines = [line.strip() for line in result.output.splitlines() if line.strip()]
        if len(lines) != 1:
            raise RollbackError(
                f"`{' '.join(self.current_argv)}` printed {len(lines)} lines; expected one release id",
                transcript(result),
            )
        return Release(check_release_id(lines[0]), location="command")

    def preflight(self, target: Release) -> None:
        """The target must be one the releases script lists; then the user's own check, if any."""
        check_release_id(target.id)
        if target.id not in {r.id for r in self.releases()}:
            raise RollbackError(f"release {target.id} is not listed by `{' '.join(self.releases_argv)}`")
        if self.preflight_argv:
            argv = fill(self.preflight_argv, target.id)
            self._run(argv, self._env(target.id, ""), f"preflight {target.id}")

    def switch(self, target: Release, reason: str = "") -> str:
        self.preflight(target)
        try:
            current = self.current().id
        except RollbackError as e:
            # The current script may be as broken as the site; the switch is the way out.
            log.warning("switching without knowing the current release: %s", e.reason)
            current = ""
        argv = fill(self.switch_argv, target.id)
        result = self._run(argv, self._env(target.id, reason, current), f"switch to {target.id}")
        log.info("switched to %s with `%s` (%s)", target.id, self.switch_argv[0], reason or "no reason given")
        return transcript(result)

    def _env(self, target: str, reason: str, current: str = "") -> dict[str, str]:
        return {"WATCHER_TARGET": target, "WATCHER_CURRENT": current, "WATCHER_REASON": reason}

    def _run(self, argv: tuple[str, ...], env: dict[str, str], what: str) -> CommandResult:
        try:
            result = run_argv(argv, self.timeout, env=env, split_stderr=True)
        except OSError as e:
            raise RollbackError(f"cannot {what}: cannot start `{argv[0]}`: {e.strerror}") from e
        if not result.ok:
            raise RollbackError(f"cannot {what}: {result.describe()}", transcript(result))
        return result
