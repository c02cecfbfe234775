"""When a release may become known-good (docs/design.md section 4, "No data is not good evidence").

A crashed release has no metrics: every PromQL rule reads "no data", which `no_data: ok` calls
healthy, and at the end of its window it would be marked known-good, so a later rollback would
go TO it. So each tick of a watch window counts whether every rollback rule saw data (a value,
NaN included, or a probe answer; not "no data", not an error), and a release becomes known-good
only if that share reaches `evidence` (default 80%).
"""

from __future__ import annotations

from collections.abc import Iterable

from watcher.core.model import ReleaseRecord
from watcher.core.rules import Outcome


def count_tick(rec: ReleaseRecord, evaluated: Iterable) -> None:
    """One tick of `rec`'s watch window; `evaluated` are the tick's RuleEvaluations."""
    rec.watched_ticks += 1
    if all(e.observation.outcome in (Outcome.OK, Outcome.BREACH) for e in evaluated if e.rule.action == "rollback"):
        rec.evidence_ticks += 1


def shortfall(rec: ReleaseRecord, rules, need: float) -> str | None:
    """Why `rec`'s window is not evidence enough to call it good, or None when it is."""
    if not any(r.action == "rollback" for r in rules):
        return None
    if rec.watched_ticks == 0:
        return "no tick of its window was evaluated" if need > 0 else None
    share = rec.evidence_ticks / rec.watched_ticks
    if share >= need:
        return None
    return f"its rollback rules saw data on only {share:.0%} of its {rec.watched_ticks} ticks (evidence: {need:.0%})"
