"""The watcher's errors, drawn once.

    WatcherError                  base: the CLI prints `Error: message` and exits 1 (its
                                  type name only in `--json`'s "error" key)
    ├── ConfigError               the config or a rule file is invalid; holds every problem found
    ├── SourceError               a signal could not be read (Prometheus down, timeout, bad reply)
    ├── RollbackError             a backend could not list, preflight or switch releases
    │   ├── UnsafeReleaseId       a release id from outside would escape its directory
    │   └── BrokenCurrent         `current` itself is wrong (dangling, outside releases/, not a link)
    ├── StateError                state.json or the journal cannot be read or written safely
    └── NotifyError               a notification could not be delivered (permanent or retryable)

A SourceError is never "condition false": the rule state machine holds its state on it
(docs/design.md section 4).
"""

from __future__ import annotations

from dataclasses import dataclass


class WatcherError(Exception):
    """Base of every error the watcher raises on purpose."""


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong with a config file, with where it is."""

    file: str
    line: int | None
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


class ConfigError(WatcherError):
    """Every problem of a configuration, collected before raising once."""

    def __init__(self, problems: list[ConfigProblem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class SourceError(WatcherError):
    """A signal could not be read. `reason` is short and safe to log."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


class RollbackError(WatcherError):
    """A backend refused or failed. `output` holds captured command output, truncated."""

    def __init__(self, reason: str, output: str = ""):
        self.reason = reason
        self.output = output
        super().__init__(reason)


class UnsafeReleaseId(RollbackError):
    """A release id with a path separator, `..`, NUL or a control character."""


class BrokenCurrent(RollbackError):
    """`current` is not a readable pointer to a release: no retry will fix it, a human must."""


class StateError(WatcherError):
    """The state dir cannot be trusted; the message says how to recover. `permanent`: only a
    person can fix it (state.json not JSON, of a future format, holding a time that is not
    finite; another watcher holding the state dir or the watched host), so `run` exits 78 and
    systemd does not restart it; otherwise (a state dir that cannot be written) a restart may
    succeed."""

    def __init__(self, message: str, permanent: bool = False):
        super().__init__(message)
        self.permanent = permanent


class NotifyError(WatcherError):
    """A delivery failed. `permanent` ones (bad URL, 4xx) are not retried."""

    def __init__(self, reason: str, permanent: bool = False):
        self.reason = reason
        self.permanent = permanent
        super().__init__(reason)
