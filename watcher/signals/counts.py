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

Why a lookback before the deploy: the increase starts at each series' last sample at or before
the deploy. A series with no sample in the LOOKBACK before it was not there (Prometheus' own
staleness horizon is 5 minutes) and counts from 0, as a series born after the deploy does.
"""

from __future__ import annotations

from dataclasses import replace

from watcher.base.format import format_duration
from watcher.core.judge import Counts, bucket_increases, error_counts, latency_counts, quantile_bound
from watcher.core.rules import CounterShare, Rule

LOOKBACK = 300.0
# A judge counts since the deploy, but never over more than this (a watcher that runs for weeks
# after a deploy must not fetch weeks of raw samples every tick): past it, the last MAX_SPAN.
MAX_SPAN = 6 * 3600.0
_KEPT = 256  # pre-deploy counts kept (one per rule and deploy)


class CountReader:
    """Reads a judge rule's Counts through a PrometheusSource. Thread-safe enough for the
    signal pool: each rule reads its own keys of the pre-deploy cache."""

    def __init__(self, prometheus):
        self.prometheus = prometheus
        self._before: dict[tuple, object] = {}

    def read(self, rule: Rule, wall: float, deployed: float | None) -> Counts:
        """The counts of `rule` at wall time `wall`, since the wall time `deployed` (when
        `current` last changed) plus the rule's warm-up. Raises SourceError."""
        signal = rule.signal
        assert isinstance(signal, CounterShare)
        if deployed is None:
            return Counts(0.0, 0.0, note="no deploy to count from")
        start = deployed + rule.warmup
        if wall < start:
            return Counts(0.0, 0.0, note=f"warming up: counting starts {format_duration(rule.warmup)} after the deploy")
        start = max(start, wall - MAX_SPAN)
        if signal.buckets:
            return self._latency(rule, signal, wall, start, deployed)
        new = error_counts(self._series(signal.errors, start, wall), self._series(signal.total, start, wall),
                           start, wall)
        if rule.above_baseline is None:
            return new
        if signal.baseline_errors:
            old = error_counts(self._series(signal.baseline_errors, start, wall),
                               self._series(signal.baseline_total, start, wall), start, wall)
            return replace(new, old_bad=old.bad, old_total=old.total)
        old = self._kept((rule.name, "errors", deployed), lambda: self._errors_before(rule, signal, deployed))
        if old.total <= 0:
            return replace(new, no_baseline=True,
                           note=f"no request in the {format_duration(rule.baseline_window)} before the deploy: "
                                "nothing to compare with, the rule cannot fire")
        return replace(new, old_bad=old.bad, old_total=old.total)

    def _latency(self, rule: Rule, signal: CounterShare, wall: float, start: float, deployed: float) -> Counts:
        bound = rule.slower_than
        if bound is None:
            quantile = 1.0 - (rule.above or 0.0)
            old = self._kept((rule.name, "buckets", deployed), lambda: bucket_increases(
                self._series(signal.buckets, deployed - rule.baseline_window, deployed, labels=True),
                deployed - rule.baseline_window, deployed))
            base = quantile_bound(old, quantile)
            if base is None:
                return Counts(0.0, 0.0, no_baseline=True,
                              note=f"no latency baseline before the deploy (no request in "
                                   f"{format_duration(rule.baseline_window)}, or its p{quantile * 100:g} beyond "
                                   "the last finite bucket): the rule cannot fire")
            bound = max(base * (rule.slower_than_baseline or 1.0), rule.floor or 0.0)
        return latency_counts(self._series(signal.buckets, start, wall, labels=True), start, bound, wall)

    def _errors_before(self, rule: Rule, signal: CounterShare, deployed: float) -> Counts:
        begin = deployed - rule.baseline_window
        return error_counts(self._series(signal.errors, begin, deployed), self._series(signal.total, begin, deployed),
                            begin, deployed)

    def _kept(self, key: tuple, read):
        if key not in self._before:
            if len(self._before) >= _KEPT:
                self._before.clear()
            self._before[key] = read()
        return self._before[key]

    def _series(self, selector: str, start: float, end: float, labels: bool = False) -> list:
        """Every raw sample of `selector` from LOOKBACK before `start` to `end`: a list of
        points per series, or of (labels, points) with `labels`."""
        matrix = self.prometheus.samples(selector, start - LOOKBACK, end)
        return matrix if labels else [points for _labels, points in matrix]
