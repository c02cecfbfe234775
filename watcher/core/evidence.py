"""When a release may become known-good: when it was SEEN SERVING (docs/design.md section 4,
"No data is not good evidence").

Silence is no evidence either way. A crashed release has no metrics: every PromQL rule reads
"no data", which `no_data: ok` calls healthy, and blessed at the end of its window it would
become the target of a later rollback. But real instrumentation is silent when healthy too: a
healthy app has no 5xx series, a fresh process has no request series until its first request,
a host without node_exporter answers nothing to `oom-kills`. Counting "every rollback rule saw
data" (the rule before issue 21) blessed no release on such a host, ever.

So each tick of a watch window asks: was the release seen serving? Yes when a rollback rule
that can show it (Rule.shows_serving: probes, queries, not host counters nor `evidence: none`
rules such as `up`) read healthy: a probe answered as expected, a query read a real number (a
ratio of rates, a quantile: NaN or empty without requests). And could the watcher see? A tick
on which a rollback rule could not be read (an error: Prometheus down, a skewed clock) is no
evidence, whatever the probes said: a release with 30% errors passes its health probe. A
release becomes known-good only if both held on `evidence` (default 80%) of its ticks. A quiet
release (no request, no probe) is not blessed, and not convicted either: no rule breaches on
silence. A tick on which a rollback rule fires is no evidence either, whatever the other rules
read: normally the release is rolled back then, but a watcher that cannot act (halted, paused,
shadow, a fleet-wide symptom) went on counting the ticks of a release failing /health, and
blessed it once the rule cleared (sim seed 12001124: a release restarted twice without the
deploy lock served 45 s of its 125 s window and became known-good). And the ticks must have
covered that share of the window's time: a watcher down for most of a window had watched a
tick or two of it, seen serving, and called the release known-good (issue 22).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from watcher.core.evaluate import RuleEvaluation
from watcher.core.model import ReleaseRecord
from watcher.core.rules import Outcome, Phase, Rule


def seen_serving(e: RuleEvaluation) -> bool:
    """Whether this reading of a rule shows the release serving: the rule can show it
    (Rule.shows_serving) and read healthy. A judge rule (`judge: sequential`) must have counted
    requests: without its old release's counts it reads OK with no share, which is no traffic."""
    if not e.rule.shows_serving or not e.observation.healthy:
        return False
    return not (e.rule.is_judge and e.observation.value is None)


def count_tick(rec: ReleaseRecord, evaluated: Iterable[RuleEvaluation], now: float | None = None,
               interval: float = 0.0) -> None:
    """One tick of `rec`'s watch window at `now`: was the release seen serving, and by which
    rules. It covers the time since the tick before, or (the watcher was not running in
    between: a gap of more than three intervals) its own interval."""
    if now is not None:
        gap = now - rec.last_watched if rec.last_watched is not None else interval
        rec.watched_seconds += gap if 0 <= gap <= 3 * interval else interval
        rec.last_watched = now
    rec.watched_ticks += 1
    rolling = [e for e in evaluated if e.rule.action == "rollback"]
    seen = [e.rule.name for e in rolling if seen_serving(e)]
    blind = any(e.observation.outcome is Outcome.ERROR for e in rolling)
    firing = any(e.after.phase is Phase.FIRING for e in rolling)
    if blind:
        rec.blind_ticks += 1
    elif firing:
        rec.firing_ticks += 1
    elif seen:
        rec.evidence_ticks += 1
    for name in seen:
        rec.serving_ticks[name] = rec.serving_ticks.get(name, 0) + 1


def reset(rec: ReleaseRecord) -> None:
    """A new watch window: its evidence starts from nothing."""
    rec.watched_ticks = rec.evidence_ticks = rec.blind_ticks = rec.firing_ticks = 0
    rec.serving_ticks = {}
    rec.watched_seconds, rec.last_watched = 0.0, None


@dataclass(frozen=True)
class Shortfall:
    """Why a window is not evidence enough: its share of ticks seen serving, and what each rule
    contributed, for the message that says which rules were silent and what follows."""

    ticks: int
    seen: int
    need: float
    blind: int  # ticks on which a rollback rule could not be read
    silent: tuple[tuple[str, int], ...]  # (rule, ticks it saw the release serving): rules that can
    cannot: tuple[str, ...]  # rollback rules that cannot show serving (host counters, evidence: none)
    watched: float | None = None  # seconds of the window its ticks covered, when too few of `window`
    window: float = 0.0
    firing: int = 0  # ticks on which a rollback rule fired (and the watcher did not roll back)

    @property
    def share(self) -> float:
        return self.seen / self.ticks if self.ticks else 0.0

    def reason(self) -> str:
        """E.g. "it was seen serving on only 3% of its 120 ticks (evidence: 80%): http-5xx-ratio
        saw it on 4 ticks, health-endpoint on 0 (target-down cannot: evidence none)"."""
        cannot = f" ({', '.join(self.cannot)} cannot: evidence none)" if self.cannot else ""
        if self.watched is not None:
            return (f"the watcher watched only {self.watched:.0f}s of its {self.window:.0f}s window (it was not "
                    f"running for the rest; evidence: {self.need:.0%})")
        if not self.silent:
            return (f"no rollback rule can see it serving{cannot}: add a health probe (an `http:` rule) or a "
                    "rule on its requests")
        if self.ticks == 0:
            return "no tick of its window was evaluated"
        (first, n), rest = self.silent[0], self.silent[1:]
        seen_by = ", ".join([f"{first} saw it on {n} ticks"] + [f"{name} on {k}" for name, k in rest])
        fired = f"on {self.firing} a rollback rule fired (the watcher did not roll back); " if self.firing else ""
        if self.blind:
            return (f"it was seen serving, with every rollback rule read, on only {self.share:.0%} of its "
                    f"{self.ticks} ticks (evidence: {self.need:.0%}): on {self.blind} a rollback rule could not be "
                    f"read (blind); {fired}{seen_by}{cannot}")
        if self.firing:
            return (f"it was seen serving, with no rollback rule firing, on only {self.share:.0%} of its "
                    f"{self.ticks} ticks (evidence: {self.need:.0%}): {fired}{seen_by}{cannot}")
        return (f"it was seen serving on only {self.share:.0%} of its {self.ticks} ticks (evidence: "
                f"{self.need:.0%}): {seen_by}{cannot}")

    def __str__(self) -> str:
        return self.reason()


def shortfall(rec: ReleaseRecord, rules: Sequence[Rule], need: float, window_s: float | None = None) -> Shortfall | None:
    """Why `rec`'s window (`window_s` long) is not evidence enough to call it good, or None when
    it is (or when nothing is asked: `evidence: 0`, or no rollback rule at all)."""
    rolling = [r for r in rules if r.action == "rollback"]
    if not rolling or need <= 0:
        return None
    able = [r.name for r in rolling if r.shows_serving]
    cannot = tuple(r.name for r in rolling if not r.shows_serving)
    silent = tuple((name, rec.serving_ticks.get(name, 0)) for name in able)
    if able and rec.watched_ticks and rec.evidence_ticks / rec.watched_ticks >= need:
        if window_s is None or window_s <= 0 or rec.watched_seconds >= need * window_s:
            return None
        return Shortfall(rec.watched_ticks, rec.evidence_ticks, need, rec.blind_ticks, silent, cannot,
                         rec.watched_seconds, window_s, rec.firing_ticks)
    return Shortfall(rec.watched_ticks, rec.evidence_ticks, need, rec.blind_ticks, silent, cannot,
                     firing=rec.firing_ticks)
