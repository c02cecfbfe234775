"""What each rule's value was at each tick, kept in memory for the picture of a breach
(watcher/notify/pictures.py): the points of the rollback and halt messages' pictures.

Why the tick's own evaluations and not a Prometheus range query made when the message goes:
  - they are what the watcher decided on: the value at the breach in the picture is the one
    the rule saw, the one the message says;
  - every rule has them, HTTP probes and host signals too, which have no series in Prometheus;
  - they cost nothing more: no query at the moment Prometheus may be the thing in trouble,
    and the tick stays as it is.
What is given up: they are lost on a restart (a picture after one starts at the restart), and
they are one point per tick, the rule's worst series. `explain --plot` and `incidents --plot`
query Prometheus instead: there a human waits for the real curve, and its failure is said.

A value the rule could not read (no data, an error) is a gap (NaN). Memory: at most
MAX_POINTS per rule, and only what is newer than `horizon` seconds.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from typing import Iterable

MAX_POINTS = 1000  # per rule: 4h10m at a 15 s interval


class RuleHistory:
    """Each rule's value at each tick (wall time) over the last `horizon` seconds. Written by
    the tick, read when a message is queued (the same thread); the lock is for readers on
    other threads (a test, a future status page)."""

    def __init__(self, horizon: float, max_points: int = MAX_POINTS):
        self.horizon = max(0.0, float(horizon))
        self.max_points = max(1, int(max_points))
        self._lock = threading.Lock()
        self._points: dict[str, deque[tuple[float, float]]] = {}

    def record(self, at: float, values: Iterable[tuple[str, float | None]]) -> None:
        """One tick: each (rule, value) at wall time `at`; None (not read) is kept as a gap."""
        oldest = at - self.horizon
        with self._lock:
            for rule, value in values:
                points = self._points.get(rule)
                if points is None:
                    points = self._points[rule] = deque(maxlen=self.max_points)
                points.append((at, _number(value)))
                while points and points[0][0] < oldest:
                    points.popleft()

    def points(self, rule: str, since: float | None = None) -> tuple[tuple[float, float], ...]:
        """The rule's (time, value) points, oldest first, from `since` on."""
        with self._lock:
            points = tuple(self._points.get(rule, ()))
        return points if since is None else tuple(p for p in points if p[0] >= since)

    def keep_only(self, rules: Iterable[str]) -> None:
        """Forget the rules not in `rules` (after a reload removed them)."""
        keep = set(rules)
        with self._lock:
            for name in [n for n in self._points if n not in keep]:
                del self._points[name]


def _number(value) -> float:
    """The value as read (±Inf too: the picture draws it as a gap and says it); NaN when none."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan
