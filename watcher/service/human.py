"""What a human asks (`mark good|bad|barrier|deployed`) is checked against the host before it
touches the state. A typo in `mark good` would make a release nobody watched a rollback target;
`mark deployed --at nan` made a release known-good at once and left a state that crashed every
start. Both the CLI acting alone and the running service applying the request inbox call these
checks (Watcher.apply_request), so a request file cannot skip them.

`force` is for the human who really means it (a release the backend cannot list yet, a deploy
announced before `current` moves); a time that is not a finite past moment is never accepted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from watcher.backends.base import Backend
from watcher.base.errors import WatcherError

# The CLI and the service read the same host clock; a request may sit in the inbox for a tick.
FUTURE_TOLERANCE = 60.0


class RequestRefused(WatcherError):
    """A human's request that would put a wrong fact into the state; nothing was changed."""


@dataclass(frozen=True)
class HostView:
    """What the backend says now. `listed` is None when there is no backend to ask."""

    current: str | None
    listed: tuple[str, ...] | None
    error: str | None = None  # the backend could not answer


def view_of(backend: Backend | None) -> HostView:
    """Ask the backend which releases it has and which is current; never raises."""
    if backend is None:
        return HostView(None, None)
    try:
        listed = tuple(r.id for r in backend.releases())
        current = backend.current().id
    except WatcherError as exc:
        return HostView(None, None, error=str(exc))
    return HostView(current, listed)


def check_mark(release: str, mark: str, host: HostView, force: bool) -> None:
    """Refuse to mark a release the backend does not have (taking a barrier away is harmless)."""
    if force or mark == "not-barrier":
        return
    if host.error is not None:
        raise RequestRefused(f"cannot check that {release} exists: the backend cannot list its releases "
                             f"({host.error}); nothing was changed. Add --force to mark it anyway.")
    if host.listed is not None and release not in host.listed:
        known = ", ".join(host.listed[:8]) + (", ..." if len(host.listed) > 8 else "")
        raise RequestRefused(f"{release} is not a release this host has (it has: {known or 'none'}); "
                             f"nothing was changed. Add --force if you mean a release not deployed yet.")


def check_deployed(release: str, host: HostView, force: bool) -> None:
    """Refuse to announce a deploy of a release that is not current."""
    if force or host.listed is None and host.error is None:
        return  # no backend: `mark deployed` is how such a watcher learns of deploys
    if host.error is not None:
        raise RequestRefused(f"cannot check that {release} is current: {host.error}; nothing was changed. "
                             "Add --force to record the deploy anyway.")
    if host.current != release:
        raise RequestRefused(f"{release} is not the current release ({host.current} is); nothing was changed. "
                             "Announce a deploy after `current` points at it, or add --force.")


def deploy_time(at: Any, now: float) -> float:
    """The deploy time a human gave (epoch seconds), or `now`. Raises RequestRefused for anything
    that is not a finite moment in the past: NaN never compares, so it made every window check
    false and the release known-good at once."""
    if at is None:
        return now
    try:
        value = float(at)
    except (TypeError, ValueError):
        raise RequestRefused(f"--at {at!r} is not a time: give epoch seconds; nothing was changed") from None
    if not math.isfinite(value) or value <= 0:
        raise RequestRefused(f"--at {at} is not a time: give finite epoch seconds (e.g. $(date +%s)); "
                             "nothing was changed")
    if value > now + FUTURE_TOLERANCE:
        raise RequestRefused(f"--at {value:.0f} is {value - now:.0f}s in the future: a deploy is announced when "
                             "it has happened; nothing was changed")
    return value
