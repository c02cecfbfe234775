"""When a release may become known-good (docs/design.md section 4, "No data is not good evidence").

A crashed release has no metrics: every PromQL rule reads "no data", which `no_data: ok` calls
healthy, and at the end of its window it would be marked known-good, so a later rollback would
go TO it. So each tick of a watch window counts whether every rollback rule saw data (a value,
NaN included, or a probe answer; not "no data", not an error), and a release becomes known-good
only if that share reaches `evidence` (default 80%), and its ticks covered that share of its
window's time too (a watcher down for most of a window had watched a tick or two of it, all
with data, and called the release known-good).
"""

from __future__ import annotations

from collections.abc import Iterable

from watcher.core.model import ReleaseRecord
from watcher.core.rules import Outcome


def count_tick(rec: ReleaseRecord, evaluated: Iterable, now: float | None = None, interval: float = 0.0) -> None:
    """One tick of `rec`'s watch window at `now`; `evaluated` are the tick's RuleEvaluations. It
    covers the time since the tick before, or (the watcher was not running in between: a gap of
    more than three intervals) its own interval."""
    if now is not None:
        gap = now - rec.last_watched if rec.last_watched is not None else interval
        rec.watched_seconds += gap if 0 <= gap <= 3 * interval else interval
        rec.last_watched = now
    rec.watched_ticks += 1
    if all(e.observation.outcome in (Outcome.OK, Outcome.BREACH) for e in evaluated if e.rule.action == "rollback"):
        rec.evidence_ticks += 1


def shortfall(rec: ReleaseRecord, rules, need: float, window_s: float | None = None) -> str | None:
    """Why `rec`'s window (`window_s` long) is not evidence enough to call it good, or None."""
    if not any(r.action == "rollback" for r in rules):
        return None
    if rec.watched_ticks == 0:
        return "no tick of its window was evaluated" if need > 0 else None
    share = rec.evidence_ticks / rec.watched_ticks
    if share < need:
        return f"its rollback rules saw data on only {share:.0%} of its {rec.watched_ticks} ticks (evidence: {need:.0%})"
    if window_s is not None and window_s > 0 and rec.watched_seconds < need * window_s:
        return (f"the watcher watched only {rec.watched_seconds:.0f}s of its {window_s:.0f}s window (it was not "
                f"running for the rest; evidence: {need:.0%})")
    return None
