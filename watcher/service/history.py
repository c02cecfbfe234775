"""What each rule read at each tick, kept in memory, and the picture of a breach the rollback
and halt messages carry (notify/pictures.py draws it; the notifier attaches it).

    RuleHistory     each rollback rule's value at each tick over the last `horizon` seconds,
                    and the last breach start and baseline it had
    breach_picture  the BreachPicture for a message of a PICTURED kind, or None

Why the tick's own evaluations and not a Prometheus range query made when the message goes:
  - they are what the watcher decided on: the value at the breach in the picture is the one
    the rule saw, the one the message says;
  - host signals have them too, which have no series in Prometheus;
  - they cost nothing more: no query at the moment Prometheus may be the thing in trouble,
    and the tick stays as it is.
What is given up: they are lost on a restart (no picture for a rollback whose breach the
process did not see: a message after a restart goes without one), and they are one point per
tick, the rule's worst series. `explain --plot` and `incidents --plot` query Prometheus
instead (actions/plots.py): there a human waits for the real curve, and a failure is said.

HTTP probes get no picture: their value is a status, not a curve against a threshold.
A value the rule could not read (no data, an error) is a gap (NaN). Memory: at most
MAX_POINTS per rule, only what is newer than `horizon`, only the rules of the last tick.
"""

from __future__ import annotations

import logging
import math
import threading
from array import array
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from watcher.core.envelope import Message
from watcher.core.evaluate import Evaluation
from watcher.core.rules import HttpCheck, Rule
from watcher.notify.pictures import BreachPicture, picture_of
from watcher.store.state import State

log = logging.getLogger(__name__)

MAX_POINTS = 1000  # per rule: 4h10m at a 15 s interval
_BREACHES = 8  # breach starts kept per rule
_TRIM = 32  # points past the horizon dropped at once

# The rollback's messages and the halts (docs/design.md section 7): what on-call must look at.
PICTURED = frozenset({"rolling_back", "rollback_verified", "rollback_failed", "verify_failed",
                      "rollback_not_cleared", "cannot_act"})
_SWITCHED = PICTURED - {"cannot_act"}  # a switch was started: its moment is drawn


@dataclass(frozen=True)
class Reading:
    """One rule at one tick: its value (None when not read), and from its state the start of
    its current breach and its baseline, both kept past the rule state's reset at a switch."""

    rule: str
    value: float | None
    breach_since: float | None = None  # wall time
    baseline: float | None = None


def pictured(rule: Rule) -> bool:
    """Whether a rule's values are kept for a picture: a rollback rule that reads a number."""
    return rule.action == "rollback" and not isinstance(rule.signal, HttpCheck)


class RuleHistory:
    """Each rule's value at each tick (wall time) over the last `horizon` seconds. Written by
    the tick, read when a message is queued (the same thread); the lock is for readers on
    other threads."""

    def __init__(self, horizon: float, max_points: int = MAX_POINTS):
        self.horizon = max(0.0, float(horizon))
        self.max_points = max(1, int(max_points))
        self._lock = threading.Lock()
        # Per rule its times and values in two arrays of doubles: 16 bytes a point, where
        # tuples in a deque took ~100 (1,000 rules x 520 points: 8 MB, not 50).
        self._points: dict[str, tuple[array[float], array[float]]] = {}
        self._breaches: dict[str, deque[float]] = {}  # the starts of its last breaches
        self._baseline: dict[str, float] = {}

    def record(self, at: float, readings: Iterable[Reading]) -> None:
        """One tick at wall time `at`. A rule missing from `readings` (a reload removed it) is
        forgotten."""
        oldest = at - self.horizon
        seen: set[str] = set()
        with self._lock:
            for r in readings:
                seen.add(r.rule)
                times, values = self._points.get(r.rule) or self._points.setdefault(r.rule, (array("d"), array("d")))
                times.append(at)
                values.append(_number(r.value))
                if times[0] < oldest or len(times) > self.max_points:
                    drop = max(bisect_left(times, oldest), len(times) - self.max_points)
                    if drop >= _TRIM or len(times) > self.max_points + _TRIM:
                        del times[:drop]  # in batches: each del moves the whole array
                        del values[:drop]
                if r.breach_since is not None:
                    starts = self._breaches.setdefault(r.rule, deque(maxlen=_BREACHES))
                    if not starts or starts[-1] != r.breach_since:
                        starts.append(r.breach_since)
                if r.baseline is not None:
                    self._baseline[r.rule] = r.baseline
            for name in [n for n in self._points if n not in seen]:
                del self._points[name]
                self._breaches.pop(name, None)
                self._baseline.pop(name, None)

    def points(self, rule: str, since: float | None = None) -> tuple[tuple[float, float], ...]:
        """The rule's (time, value) points, oldest first, from `since` on."""
        with self._lock:
            times, values = self._points.get(rule) or (array("d"), array("d"))
            if not times:
                return ()
            # What record() has not trimmed yet (it trims in batches) is left out here.
            first = max(bisect_left(times, times[-1] - self.horizon), len(times) - self.max_points,
                        0 if since is None else bisect_left(times, since))
            return tuple(zip(times[first:], values[first:], strict=True))

    def breach_since(self, rule: str, after: float | None = None, before: float | None = None) -> float | None:
        """When the rule's last breach began (wall time) within [after, before], kept after its
        state was reset (a rule breaching again on the restored release starts a new one)."""
        with self._lock:
            starts = list(self._breaches.get(rule, ()))
        found = [t for t in starts if (after is None or t >= after) and (before is None or t <= before)]
        return found[-1] if found else None

    def baseline(self, rule: str) -> float | None:
        with self._lock:
            return self._baseline.get(rule)


def breach_picture(message: Message, history: RuleHistory, state: State, rules: Sequence[Rule], to_wall: Callable[[float], float],
                   now: float, host: str) -> BreachPicture | None:
    """The picture for `message` (a core.envelope.Message) when its kind is PICTURED: its first
    rule that has a history (else the open incident's, else the rollback being confirmed),
    from a while before the deploy of the release it is about to `now` (wall time), with the
    deploy, the breach and (but for cannot_act) the switch. None when there is nothing to
    draw, or on any error (logged): the message goes without a picture, never not at all.
    `state` is the service's store.state.State; its times are steady (`to_wall`)."""
    if message.kind not in PICTURED:
        return None
    try:
        return _breach_picture(message, history, state, rules, to_wall, now, host)
    except (ArithmeticError, AttributeError, KeyError, TypeError, ValueError) as e:
        log.error("picture of %s not made (a bug), the message goes without it: %s: %s",
                  message.kind, type(e).__name__, e)
        return None


def _breach_picture(message: Message, history: RuleHistory, state: State, rules: Sequence[Rule], to_wall: Callable[[float], float],
                    now: float, host: str) -> BreachPicture | None:
    by_name = {r.name: r for r in rules if pictured(r)}
    names = list(message.rules)
    if state.incident is not None:
        names += state.incident.rules
    if state.confirming is not None:
        names += state.confirming.get("rules") or []
    rule = next((by_name[n] for n in names if n in by_name and history.points(n)), None)
    if rule is None:
        return None
    record = state.releases.get(message.release) if message.release else None
    deploy_at = _wall(record.deployed_at if record is not None else None, to_wall)
    switch_at = _wall(state.last_rollback_at, to_wall) if message.kind in _SWITCHED else None
    if switch_at is not None and deploy_at is not None and switch_at < deploy_at:
        switch_at = None  # an earlier rollback's
    start = now - 900 if deploy_at is None else deploy_at - max(60.0, (now - deploy_at) / 3)
    # This release's breach: not one before its deploy, nor one on the restored release after
    # the switch.
    breach_at = history.breach_since(rule.name, after=start if deploy_at is None else deploy_at, before=switch_at)
    return picture_of(rule, history.points(rule.name, since=start), baseline=history.baseline(rule.name),
                      deploy_at=deploy_at, breach_at=breach_at, switch_at=switch_at,
                      release=message.release, host=host)


def readings(evaluation: Evaluation, to_wall: Callable[[float], float]) -> list[Reading]:
    """The tick's readings of the pictured rules (a core.evaluate.Evaluation)."""
    return [Reading(e.rule.name, e.observation.value, _wall(e.after.breach_since, to_wall), e.baseline)
            for e in evaluation.rules if pictured(e.rule)]


def _wall(steady: float | None, to_wall: Callable[[float], float]) -> float | None:
    return None if steady is None else to_wall(steady)


def _number(value: Any) -> float:
    """The value as read (±Inf too: the picture draws it as a gap and says it); NaN when none."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan
