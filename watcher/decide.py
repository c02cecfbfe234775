"""The decision to roll back (DESIGN.md section 5). Pure: no I/O, no clock.

When at least one `rollback` rule fires, the checks below run in order and the first that
applies is the verdict; every verdict carries the reason a journal line, a notification and
`explain` all repeat:

    halted       a rollback failed or did not verify; a human runs `resolve`      -> nothing
    shadow/pause decide, tell "would roll back", never act                         -> notify
    outside      current release is past its watch window, or known-good           -> notify
    lock         a deploy holds the deploy lock                                    -> wait
    limit        max_auto_rollbacks for this release, or within cooldown           -> needs a human
    no target    no known-good release older than this one, or a barrier between   -> needs a human
    rollback     otherwise                                                         -> act
"""

from __future__ import annotations

from dataclasses import dataclass

from watcher.rules import Finding, format_duration
from watcher.state import ReleaseRecord

# Verdict actions
NOTHING = "nothing"  # no rollback rule fires, or the watcher is halted
NOTIFY = "notify"  # tell people, act not
WAIT = "wait"  # try again next tick
REFUSE = "refuse"  # cannot act safely: a human is needed (critical)
ROLLBACK = "rollback"


@dataclass(frozen=True)
class Policy:
    shadow: bool = False
    max_auto_rollbacks: int = 1
    cooldown: float = 1800.0


@dataclass(frozen=True)
class Situation:
    """Everything the decision reads, gathered by the service."""

    now: float
    current: str
    releases: tuple[str, ...]  # newest first, from the backend
    marks: dict  # release id -> ReleaseRecord
    in_watch_window: bool
    firing: tuple[Finding, ...]  # rollback rules that fire now
    paused_until: float | None = None
    halted: str | None = None
    lock_held: bool = False
    last_rollback_at: float | None = None


@dataclass(frozen=True)
class Verdict:
    action: str
    kind: str  # which check decided: "halted", "shadow", "paused", "outside_window", ...
    reason: str
    current: str | None = None
    target: str | None = None
    findings: tuple[Finding, ...] = ()


def choose_target(current: str, releases: tuple[str, ...] | list[str], marks: dict) -> tuple[str | None, str]:
    """The newest known-good release older than `current`, skipping bad ones and never across a
    barrier. Returns (target, reason); target is None when there is none, with the reason why."""
    if current not in releases:
        return None, f"the backend does not list the current release {current} among its releases"
    current_rec: ReleaseRecord | None = marks.get(current)
    if current_rec is not None and current_rec.barrier:
        return None, f"{current} is a barrier (not reversible): auto-rollback never crosses it"
    skipped = []
    for release in releases[releases.index(current) + 1 :]:
        rec: ReleaseRecord | None = marks.get(release)
        if rec is not None and rec.mark == "good":
            return release, f"{release} is the newest known-good release older than {current}"
        if rec is not None and rec.barrier:
            return None, f"{release} is a barrier (not reversible) between {current} and any known-good release"
        skipped.append(f"{release} ({'bad' if rec is not None and rec.mark == 'bad' else 'not known-good'})")
    if skipped:
        return None, f"no known-good release older than {current}; skipped {', '.join(skipped)}"
    return None, f"no release older than {current}"


def decide(s: Situation, policy: Policy) -> Verdict:
    firing = tuple(f for f in s.firing if f.action == "rollback")
    if not firing:
        return Verdict(NOTHING, "quiet", "no rollback rule fires", s.current)
    names = ", ".join(f.rule for f in firing)

    def verdict(action: str, kind: str, reason: str, target: str | None = None) -> Verdict:
        return Verdict(action, kind, reason, s.current, target, firing)

    if s.halted:
        return verdict(NOTHING, "halted", f"{names} firing, but the watcher is halted: {s.halted}")

    target, why = choose_target(s.current, s.releases, s.marks)
    if policy.shadow:
        return verdict(NOTIFY, "shadow", f"shadow mode: would roll back {s.current} -> {target or '(no target: ' + why + ')'} because {names} fires", target)
    if s.paused_until is not None and s.now < s.paused_until:
        left = format_duration(s.paused_until - s.now)
        return verdict(NOTIFY, "paused", f"paused for {left} more: would roll back {s.current} -> {target or '(no target)'} because {names} fires", target)

    current_rec: ReleaseRecord | None = s.marks.get(s.current)
    if current_rec is not None and current_rec.mark == "good":
        return verdict(NOTIFY, "outside_window", f"{names} fires, but {s.current} is known-good: the deploy is probably not the cause")
    if not s.in_watch_window:
        return verdict(NOTIFY, "outside_window", f"{names} fires, but {s.current} is outside its watch window: the deploy is probably not the cause")

    if s.lock_held:
        return verdict(WAIT, "deploy_lock", f"{names} fires, but a deploy holds the deploy lock: waiting for it")

    done = current_rec.auto_rollbacks if current_rec is not None else 0
    if done >= policy.max_auto_rollbacks:
        return verdict(REFUSE, "limit", f"{s.current} was already rolled back automatically {done} time(s) (max_auto_rollbacks {policy.max_auto_rollbacks}): needs a human")
    if s.last_rollback_at is not None and s.now - s.last_rollback_at < policy.cooldown:
        ago = format_duration(s.now - s.last_rollback_at)
        return verdict(REFUSE, "cooldown", f"the last rollback was {ago} ago, within the cooldown of {format_duration(policy.cooldown)}: needs a human")

    if target is None:
        return verdict(REFUSE, "no_target", why)
    return verdict(ROLLBACK, "rollback", f"rolling back {s.current} -> {target} because {names} fires", target)
