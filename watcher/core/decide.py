"""The decision to roll back (docs/design.md section 5). Pure: no I/O, no clock.

When at least one `rollback` rule fires, the checks below run in order and the first that
applies is the verdict; every verdict carries the reason a journal line, a notification and
`explain` all repeat:

    halted       a rollback failed or did not verify; a human runs `resolve`      -> nothing
    confirming   a rollback switched; the rules that fired must clear first         -> nothing
    shadow/pause decide, tell "would roll back", never act                         -> notify
    outside      current release is past its watch window, or known-good           -> notify
    symptom      every firing rule also fires, at the same time, on hosts still on  -> notify
                 a known-good release (fleet only): not the release's fault
    unreadable   the backend cannot say what is current, or cannot list releases:
                 a broken `current` (or error_limit failures in a row)             -> needs a human
                 a first failure                                                   -> wait
    lock         a deploy holds the deploy lock                                    -> wait
    limit        max_auto_rollbacks for this release, or within its cooldown       -> needs a human
    no target    no known-good release older than this one, or a barrier between   -> needs a human
    rollback     otherwise                                                         -> act

"Older" is the release order of `order_releases`: the deploy timeline the watcher observed,
then each release's own creation time, never its name.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from watcher.base.format import format_duration
from watcher.core.fleetmodel import is_fleet_rule
from watcher.core.model import Action, Mark, OrderSource, Release, ReleaseRecord, VerdictKind
from watcher.core.rules import Finding

# Verdict actions, by their old names (tests and callers spell them so).
NOTHING, NOTIFY, WAIT, REFUSE, ROLLBACK = Action.NOTHING, Action.NOTIFY, Action.WAIT, Action.REFUSE, Action.ROLLBACK


@dataclass(frozen=True)
class Policy:
    shadow: bool = False
    max_auto_rollbacks: int = 1
    cooldown: float = 1800.0  # per release: since the last automatic rollback away from it
    error_limit: int = 4  # backend read failures in a row before a wait becomes "needs a human"


@dataclass(frozen=True)
class Situation:
    """Everything the decision reads, gathered by the service."""

    now: float
    current: str
    releases: tuple[str, ...]  # newest first, in the order of order_releases
    marks: Mapping[str, ReleaseRecord]  # release id -> ReleaseRecord
    in_watch_window: bool
    firing: tuple[Finding, ...]  # rollback rules that fire now
    paused_until: float | None = None
    halted: str | None = None
    lock_held: bool = False
    # Local rules that fire at the same time on hosts still on a known-good release, and why
    # (coordinator.FleetCoordinator.symptoms); empty without a fleet.
    fleet_symptoms: frozenset[str] = frozenset()
    fleet_symptom_reason: str = ""
    confirming: str | None = None  # a switched rollback waits for its fired rules to clear
    backend_problem: str | None = None  # why the backend could not be read this tick
    backend_failures: int = 0  # ticks in a row it could not
    backend_broken: bool = False  # a broken `current`: waiting will not fix it


@dataclass(frozen=True)
class Verdict:
    action: Action
    kind: VerdictKind  # which check decided
    reason: str
    current: str | None = None
    target: str | None = None
    findings: tuple[Finding, ...] = ()
    # Every usable target in order (target first): when a target fails its preflight, the
    # rollback tries the next older known-good one, never across a barrier.
    targets: tuple[str, ...] = ()


def order_releases(releases: Iterable[Release], marks: Mapping[str, ReleaseRecord]) -> list[tuple[Release, OrderSource]]:
    """Newest first. A release the watcher saw deployed is placed by that time (the timeline in
    its state); one it never saw, by its creation time (directory mtime, image creation); one
    with neither comes after all others, in the backend's own listing order. Never by name:
    git-SHA or date-less names sort in no useful order."""
    keyed = []
    for index, release in enumerate(releases):
        rec = marks.get(release.id)
        if rec is not None and rec.deployed_at is not None:
            keyed.append(((0, -rec.deployed_at, index), release, OrderSource.TIMELINE))
        elif release.created is not None:
            keyed.append(((0, -release.created, index), release, OrderSource.CREATED))
        else:
            keyed.append(((1, 0.0, index), release, OrderSource.UNKNOWN))
    keyed.sort(key=lambda k: k[0])
    return [(release, source) for _, release, source in keyed]


def choose_targets(current: str, releases: Sequence[str], marks: Mapping[str, ReleaseRecord]) -> tuple[tuple[str, ...], str]:
    """The known-good releases older than `current`, newest first, skipping bad ones and
    stopping at a barrier. Returns (targets, reason); no targets comes with the reason why."""
    releases = list(releases)
    if current not in releases:
        return (), f"the backend does not list the current release {current} among its releases"
    current_rec = marks.get(current)
    if current_rec is not None and current_rec.barrier:
        return (), f"{current} is a barrier (not reversible): auto-rollback never crosses it"
    targets: list[str] = []
    skipped = []
    barrier = None
    for release in releases[releases.index(current) + 1 :]:
        rec = marks.get(release)
        if rec is not None and rec.mark == Mark.GOOD:
            targets.append(release)
        if rec is not None and rec.barrier:
            barrier = release
            break
        if not targets:
            skipped.append(f"{release} ({'bad' if rec is not None and rec.mark == Mark.BAD else 'not known-good'})")
    if targets:
        return tuple(targets), f"{targets[0]} is the newest known-good release older than {current}"
    if barrier is not None:
        return (), f"{barrier} is a barrier (not reversible) between {current} and any known-good release"
    if skipped:
        return (), f"no known-good release older than {current}; skipped {', '.join(skipped)}"
    return (), f"no release older than {current}"


def choose_target(current: str, releases: Sequence[str], marks: Mapping[str, ReleaseRecord]) -> tuple[str | None, str]:
    """The newest known-good release older than `current` (see choose_targets)."""
    targets, why = choose_targets(current, releases, marks)
    return (targets[0] if targets else None), why


def decide(s: Situation, policy: Policy) -> Verdict:
    firing = tuple(f for f in s.firing if f.action == "rollback")
    if not firing:
        return Verdict(NOTHING, VerdictKind.QUIET, "no rollback rule fires", s.current)
    names = ", ".join(f.rule for f in firing)
    targets, why = choose_targets(s.current, s.releases, s.marks)
    target = targets[0] if targets else None

    def verdict(action: Action, kind: VerdictKind, reason: str, target: str | None = None) -> Verdict:
        return Verdict(action, kind, reason, s.current, target, firing, targets if target else ())

    if s.halted:
        return verdict(NOTHING, VerdictKind.HALTED, f"{names} firing, but the watcher is halted: {s.halted}")
    if s.confirming:
        return verdict(NOTHING, VerdictKind.CONFIRMING, f"{names} firing: {s.confirming}")

    if policy.shadow:
        return verdict(NOTIFY, VerdictKind.SHADOW, f"shadow mode: would roll back {s.current} -> {target or '(no target: ' + why + ')'} because {names} fires", target)
    if s.paused_until is not None and s.now < s.paused_until:
        left = format_duration(s.paused_until - s.now)
        return verdict(NOTIFY, VerdictKind.PAUSED, f"paused for {left} more: would roll back {s.current} -> {target or '(no target)'} because {names} fires", target)

    current_rec = s.marks.get(s.current)
    if current_rec is not None and current_rec.mark == Mark.GOOD:
        return verdict(NOTIFY, VerdictKind.OUTSIDE_WINDOW, f"{names} fires, but {s.current} is known-good: the deploy is probably not the cause")
    if not s.in_watch_window:
        return verdict(NOTIFY, VerdictKind.OUTSIDE_WINDOW, f"{names} fires, but {s.current} is outside its watch window: the deploy is probably not the cause")

    local = [f for f in firing if not is_fleet_rule(f.rule)]
    if local and len(local) == len(firing) and all(f.rule in s.fleet_symptoms for f in local):
        return verdict(NOTIFY, VerdictKind.FLEET_SYMPTOM, f"fleet-wide symptom, not the release: {s.fleet_symptom_reason}")
    if s.backend_problem is not None:
        # Never act on a host the watcher cannot read; one failed read is a wait, not a page.
        if s.backend_broken or s.backend_failures >= policy.error_limit:
            return verdict(REFUSE, VerdictKind.BACKEND_UNREADABLE, f"{names} fires, but {s.backend_problem}"
                           + ("" if s.backend_broken else f" ({s.backend_failures} times in a row)") + ": needs a human")
        return verdict(WAIT, VerdictKind.BACKEND_RETRY, f"{names} fires, but {s.backend_problem}: trying again "
                       f"next tick ({s.backend_failures} of {policy.error_limit})")

    if s.lock_held:
        return verdict(WAIT, VerdictKind.DEPLOY_LOCK, f"{names} fires, but a deploy holds the deploy lock: waiting for it")

    done = current_rec.auto_rollbacks if current_rec is not None else 0
    if done >= policy.max_auto_rollbacks:
        return verdict(REFUSE, VerdictKind.LIMIT, f"{s.current} was already rolled back automatically {done} time(s) (max_auto_rollbacks {policy.max_auto_rollbacks}): needs a human")
    last = current_rec.last_rollback_at if current_rec is not None else None
    if last is not None and s.now - last < policy.cooldown:
        ago = format_duration(s.now - last)
        return verdict(REFUSE, VerdictKind.COOLDOWN, f"{s.current} was last rolled back {ago} ago, within its cooldown of {format_duration(policy.cooldown)}: needs a human")

    if target is None:
        return verdict(REFUSE, VerdictKind.NO_TARGET, why)
    return verdict(ROLLBACK, VerdictKind.ROLLBACK, f"rolling back {s.current} -> {target} because {names} fires", target)
