"""The sequential judge's reading (core/judge.py): raw counter samples since the deploy.

A judge rule names counter selectors, not a query. Each tick this asks Prometheus for every
raw sample of each selector from a little before the deploy (after the rule's warm-up) to now
(`SELECTOR[Ns]` at the tick's time: the samples as scraped, no `rate()`, no extrapolation),
and core/judge.py turns them into increases (counter resets handled as Prometheus does; a
series first seen after the deploy counted from 0) and then into a judgement.

    error form        errors, total since the deploy
    two-sample form   the same, and the old release's: over `baseline_window` before the deploy
                      (read once per deploy and kept), or the `baseline_*` selectors over the
                      same span as the new release (the fleet's hosts on the known-good release)
    latency form      bucket increases; the bound is `slower_than`, or `slower_than_baseline` x
                      the pre-deploy quantile's bucket bound (at least `floor`)

Counting starts one scrape interval after the deploy (after `warmup` too): at each series'
last sample at or before that moment, which was scraped after the deploy. A sample scraped
just before the deploy would leave the increments between it and the next scrape in the
count: requests of the release before, counted against this one. After a rollback that is the
bad release's failures counted against the restored one (measured: 6 of 50 requests "failed"
on the restored release at 50 req/s; at 500 req/s or 100% failing it was enough to convict
it); after a fix deployed over a bad release, the fix convicted by its predecessor. The price
is one scrape interval of the new release's requests, never counted.

Label scoping (`prometheus.labels`, issue 21), once the readers have it, belongs on `errors`,
`total` and `buckets` like on every PromQL selector, and NOT on `baseline_errors` /
`baseline_total`: those select the other hosts on purpose.

Why a lookback before that moment: a series with no sample in the LOOKBACK before it was not
there (Prometheus' own staleness horizon is 5 minutes) and counts from 0, as a series born
after the deploy does (client libraries create a labelled series on its first use).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from watcher.base.format import format_duration
from watcher.core.counts import Counts, bucket_increases, error_counts, latency_counts, quantile_bound
from watcher.core.rules import CounterShare, Rule

LOOKBACK = 300.0
# A judge counts since the deploy, but never over more than this (a watcher that runs for weeks
# after a deploy must not fetch weeks of raw samples every tick): past it, the last MAX_SPAN.
MAX_SPAN = 6 * 3600.0
_KEPT = 256  # pre-deploy counts kept (one per rule and deploy)


def counts_at(rule: Rule, series: dict[str, list[Any]], start: float, until: float, before: Any = None) -> Counts:
    """The counts of `rule` from raw samples (pure: the reader, explain, backtest and rule tests
    all count through this). `series` holds, per selector key of the rule's CounterShare
    ("errors", "total", "buckets", "baseline_errors", "baseline_total"), its series: lists of
    points, or (labels, points) for "buckets". `before` is what the old release did before the
    deploy: Counts (the two-sample error form) or bucket increases (`slower_than_baseline`)."""
    signal = rule.signal
    assert isinstance(signal, CounterShare)
    if signal.buckets:
        bound = rule.slower_than
        if bound is None:
            quantile = 1.0 - (rule.above or 0.0)
            base = quantile_bound(before, quantile) if before else None
            if base is None:
                return Counts(0.0, 0.0, no_baseline=True,
                              note=f"no latency baseline before the deploy (no request in "
                                   f"{format_duration(rule.baseline_window)}, or its p{quantile * 100:g} beyond "
                                   "the last finite bucket): the rule cannot fire")
            bound = max(base * (rule.slower_than_baseline or 1.0), rule.floor or 0.0)
        return latency_counts(series["buckets"], start, bound, until)
    new = error_counts(series["errors"], series["total"], start, until)
    if rule.above_baseline is None:
        return new
    if signal.baseline_errors:
        old = error_counts(series["baseline_errors"], series["baseline_total"], start, until)
        return replace(new, old_bad=old.bad, old_total=old.total)
    if before is None or before.total <= 0:
        return replace(new, no_baseline=True,
                       note=f"no request in the {format_duration(rule.baseline_window)} before the deploy: "
                            "nothing to compare with, the rule cannot fire")
    return replace(new, old_bad=before.bad, old_total=before.total)


def needs_before(rule: Rule) -> bool:
    """Whether the rule compares with what the old release did before the deploy."""
    signal = rule.signal
    assert isinstance(signal, CounterShare)
    if signal.buckets:
        return rule.slower_than is None
    return rule.above_baseline is not None and not signal.baseline_errors


def counting_start(rule: Rule, deployed: float, scrape_interval: float) -> float:
    """When a judge rule starts counting (wall time): the deploy, its warm-up, one scrape."""
    return deployed + rule.warmup + scrape_interval


class CountReader:
    """Reads a judge rule's Counts through a PrometheusSource. Thread-safe enough for the
    signal pool: each rule reads its own keys of the pre-deploy cache."""

    def __init__(self, prometheus: Any):
        self.prometheus = prometheus  # signals/prometheus.PrometheusSource, or anything with samples()
        self._before: dict[tuple[Any, ...], Any] = {}

    def read(self, rule: Rule, wall: float, deployed: float | None, scrape_interval: float) -> Counts:
        """The counts of `rule` at wall time `wall`, since the wall time `deployed` (when
        `current` last changed) plus the rule's warm-up plus one scrape interval (see the module
        docstring). Raises SourceError."""
        if deployed is None:
            return Counts(0.0, 0.0, note="no deploy to count from")
        start = counting_start(rule, deployed, scrape_interval)
        if wall < start:
            what = f"the {format_duration(rule.warmup)} warm-up" if rule.warmup else "the first scrape"
            return Counts(0.0, 0.0, note=f"warming up: counting starts after {what}")
        start = max(start, wall - MAX_SPAN)
        return counts_at(rule, self.fetch(rule, start, wall), start, wall, self.before(rule, deployed))

    def history(self, rule: Rule, wall: float, deployed: float, scrape_interval: float,
                points: int = 12) -> list[tuple[float, Counts]]:
        """The counts at `points` moments from the start of counting to `wall`, from one read
        of the samples: the evidence over time (`explain`)."""
        start = max(counting_start(rule, deployed, scrape_interval), wall - MAX_SPAN)
        if wall <= start:
            return []
        series, before = self.fetch(rule, start, wall), self.before(rule, deployed)
        moments = [start + (wall - start) * (i + 1) / points for i in range(points)]
        return [(t, counts_at(rule, series, start, t, before)) for t in moments]

    def fetch(self, rule: Rule, start: float, end: float) -> dict[str, list[Any]]:
        """Every raw sample of each of the rule's selectors from LOOKBACK before `start` to `end`."""
        signal = rule.signal
        assert isinstance(signal, CounterShare)
        keys = ("buckets",) if signal.buckets else ("errors", "total", "baseline_errors", "baseline_total")
        return {key: self._series(getattr(signal, key), start, end, labels=key == "buckets")
                for key in keys if getattr(signal, key)}

    def before(self, rule: Rule, deployed: float) -> Any:
        """What the old release did in `baseline_window` before the deploy (read once per
        deploy and kept), or None when the rule does not compare with it."""
        if not needs_before(rule):
            return None
        key = (rule.name, rule.signal, deployed)
        assert isinstance(rule.signal, CounterShare)
        if key not in self._before:
            if len(self._before) >= _KEPT:
                self._before.clear()
            begin = deployed - rule.baseline_window
            series = self.fetch(rule, begin, deployed)
            if rule.signal.buckets:
                self._before[key] = bucket_increases(series["buckets"], begin, deployed)
            else:
                self._before[key] = error_counts(series["errors"], series["total"], begin, deployed)
        return self._before[key]

    def _series(self, selector: str | None, start: float, end: float, labels: bool = False) -> list[Any]:
        """Every raw sample of `selector` from LOOKBACK before `start` to `end`: a list of
        points per series, or of (labels, points) with `labels`."""
        matrix = self.prometheus.samples(selector, start - LOOKBACK, end)
        return matrix if labels else [points for _labels, points in matrix]
