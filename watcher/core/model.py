"""The domain's plain data: releases, their marks and records, what triggered an action, the
kinds of verdicts and rule transitions. No I/O, no clock: `store/state.py` only serializes
these, the pure core (`rules`, `decide`, `incident`) and the edges (`backends`, `service`,
`cli`) all speak them. It imports nothing of watcher.

The kinds are `StrEnum`s: they compare equal to their journal spelling ("quiet",
"outside_window", ...), so journal lines and state files written before them read the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


@dataclass(frozen=True)
class Release:
    """One deployable version on this host. `id` is what the state and the journal use."""

    id: str
    # Where it lives, for messages: a path, an image reference, a slot and its port.
    location: str = ""
    # When it was made (directory mtime, image creation time), seconds since the epoch, for
    # ordering releases the watcher never saw deployed; None when the backend cannot tell.
    created: float | None = None
    details: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


class Mark(StrEnum):
    GOOD = "good"
    BAD = "bad"
    BARRIER = "barrier"  # not reversible: auto-rollback never crosses it (ReleaseRecord.barrier)


@dataclass
class ReleaseRecord:
    id: str
    mark: str | None = None  # Mark.GOOD | Mark.BAD | None
    barrier: bool = False  # not reversible: auto-rollback never crosses it
    first_seen: float | None = None
    deployed_at: float | None = None  # the last time it became current through a deploy (the timeline)
    window_ends: float | None = None
    marked_at: float | None = None
    reason: str = ""  # why it has its mark
    auto_rollbacks: int = 0  # automatic rollbacks away from this release
    last_rollback_at: float | None = None  # the last automatic rollback away from it (its cooldown)
    # Its watch window's ticks, those on which it was seen serving with every rollback rule
    # read and none firing (evidence), those on which a rollback rule could not be read (blind)
    # or fired, and per rule that can see it serving, the ticks on which that rule did
    # (core/evidence.py).
    watched_ticks: int = 0
    evidence_ticks: int = 0
    blind_ticks: int = 0
    firing_ticks: int = 0
    serving_ticks: dict[str, int] = field(default_factory=dict)
    # How much of its window the ticks covered (each the time since the one before, unless the
    # watcher was not running in between), and the last of them.
    watched_seconds: float = 0.0
    last_watched: float | None = None
    window_extended: bool = False  # its window was held past its end for a pending rule (said once)


class Trigger(StrEnum):
    """Why a rollback is being made."""

    RULE = "rule"  # a rollback rule fired and the decider said act
    MANUAL = "manual"  # a human ran `rollback`
    FLEET = "fleet"  # reserved for the fleet coordinator


class Action(StrEnum):
    """What a verdict asks the service to do."""

    NOTHING = "nothing"  # no rollback rule fires, or the watcher is halted
    NOTIFY = "notify"  # tell people, act not
    WAIT = "wait"  # try again next tick
    REFUSE = "refuse"  # cannot act safely: a human is needed (critical)
    ROLLBACK = "rollback"


class VerdictKind(StrEnum):
    """Which check of the decider decided (journaled as `check`)."""

    QUIET = "quiet"
    HALTED = "halted"
    SHADOW = "shadow"
    PAUSED = "paused"
    OUTSIDE_WINDOW = "outside_window"
    DEPLOY_LOCK = "deploy_lock"
    LIMIT = "limit"
    COOLDOWN = "cooldown"
    NO_TARGET = "no_target"
    NO_BACKEND = "no_backend"
    FLEET_SYMPTOM = "fleet_symptom"  # the same rule fires on hosts still on a known-good release
    CONFIRMING = "confirming"  # a rollback switched; its fired rules have not cleared yet
    BACKEND_RETRY = "backend_retry"  # the backend could not be read this tick: try again next tick
    BACKEND_UNREADABLE = "backend_unreadable"  # ... a broken `current`, or error_limit ticks in a row
    ROLLBACK = "rollback"


class TransitionKind(StrEnum):
    """What changed in one rule's state (journaled as `transition`)."""

    PHASE = "phase"
    BLIND = "blind"
    RECOVERED = "recovered"
    NO_BASELINE = "no_baseline"


class OrderSource(StrEnum):
    """Where a release's place in the newest-first order comes from (shown by `releases`)."""

    TIMELINE = "timeline"  # the watcher saw it deployed (ReleaseRecord.deployed_at)
    CREATED = "created"  # the backend's creation time (directory mtime, image creation)
    UNKNOWN = "unknown"  # neither: after every ordered one, in the backend's listing order


class RollbackResult(StrEnum):
    """How one attempt to roll back ended (TickReport.acted, the `rollback` command's output)."""

    ROLLED_BACK = "rolled_back"
    FAILED = "rollback_failed"
    NOT_VERIFIED = "verify_failed"
    DEPLOY_LOCK = "deploy_lock"
    DEPLOY_LANDED = "deploy_landed"  # `current` changed between the decision and the switch
    DRY_RUN = "dry_run"
