"""What a judge rule counts (docs/design.md section 4, the sequential judge): counters' raw
samples turned into the increase since a moment, as Prometheus counts a counter (resets from a
restarted process, no extrapolation, a series born after the moment counted from 0), and the
latency form's slow requests from cumulative histogram buckets. Pure: samples in, Counts out;
core/judge.py judges them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

# ---------------------------------------------------------------------------------------------
# Latency as a share: requests slower than a bound, from cumulative histogram buckets


@dataclass(frozen=True)
class SlowCounts:
    slow: float  # requests slower than `bound`
    total: float
    bound: float  # the bucket bound used (>= the bound asked for; +inf: cannot judge)


def slow_counts(buckets: Mapping[float, float], slower_than: float) -> SlowCounts:
    """How many requests were slower than `slower_than`, from cumulative bucket counts
    (le -> count, with the +Inf bucket as the total); "p95 > X" is exactly "more than 5% of
    requests slower than X".

    When `slower_than` is not a bucket bound, the smallest bound above it is used: requests
    slower than that bound are surely slower than `slower_than`, so the count can only be too
    low, never too high. The judge then errs towards no rollback, never towards a false one.
    Above the last finite bound nothing can be counted (bound +inf, slow 0)."""
    if math.inf not in buckets:
        raise ValueError("a histogram needs its +Inf bucket (the count of every request)")
    total = buckets[math.inf]
    bound = min(le for le in buckets if le >= slower_than)
    # Buckets are read series by series; a scrape between two reads can leave a bucket a
    # request ahead of the total. Clamped: never fewer than none, never more than all.
    slow = min(max(total - buckets[bound], 0.0), total)
    return SlowCounts(slow=slow, total=total, bound=bound)


def quantile_bound(buckets: Mapping[float, float], quantile: float) -> float | None:
    """The upper bound of the bucket that holds the `quantile` (e.g. 0.95): the baseline a
    latency rule multiplies. An upper bound, never an interpolation inside the bucket: the
    baseline is then at or above the true quantile, so `factor` x baseline is a bound the new
    release must clearly exceed (no false rollback from a coarse bucket). None without any
    request or when the quantile is beyond the last finite bound."""
    if math.inf not in buckets or buckets[math.inf] <= 0:
        return None
    need = quantile * buckets[math.inf]
    for le in sorted(buckets):
        if buckets[le] >= need:
            return le if math.isfinite(le) else None
    return None


# ---------------------------------------------------------------------------------------------
# Raw counter samples -> the increase since a moment


def increase_since(points: Sequence[tuple[float, float]], since: float, until: float | None = None) -> float:
    """How much one counter series grew after `since` (up to `until`, if given), from its raw
    samples (time, value) in time order, as Prometheus counts it: a value lower than the one
    before is a reset (a restarted process) and counts from 0. No extrapolation.

    The starting point is the last sample at or before `since`. A series with none was first
    seen after `since` and counts from 0: client libraries create a labelled series on its
    first use, so a fresh process's first 5xx series appears already at 1 or more. The caller
    must fetch from before `since` (a few scrape intervals) for the starting point to be seen.
    Non-finite samples are skipped."""
    previous = 0.0
    grown = 0.0
    for t, value in points:
        if until is not None and t > until:
            break
        if not math.isfinite(value):
            continue
        if t <= since:
            previous = value
            continue
        grown += value - previous if value >= previous else value
        previous = value
    return grown


def total_increase(series: Iterable[Sequence[tuple[float, float]]], since: float, until: float | None = None) -> float:
    """The summed increase of several series (a selector such as `http_requests_total{code=~"5.."}`)."""
    return sum(increase_since(points, since, until) for points in series)


def bucket_increases(series: Iterable[tuple[Mapping[str, str], Sequence[tuple[float, float]]]], since: float,
                     until: float | None = None) -> dict[float, float]:
    """Histogram bucket series (labels with `le`, raw samples) -> le -> increase since `since`,
    summed over every other label (pods, paths). A series without a readable `le` is skipped."""
    out: dict[float, float] = {}
    for labels, points in series:
        le = _bound(labels.get("le"))
        if le is None:
            continue
        out[le] = out.get(le, 0.0) + increase_since(points, since, until)
    return out


def _bound(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)  # "+Inf", "0.5", "1e+00"
    except ValueError:
        return None
    return None if math.isnan(value) else value


@dataclass(frozen=True)
class Counts:
    """What a judge rule read for one tick, before judging: the new release's failures (or
    slow requests) and requests since the deploy (after the warm-up), and for the two-sample
    form the old release's. `bound` is the latency form's bucket bound actually counted."""

    bad: float
    total: float
    old_bad: float | None = None
    old_total: float | None = None
    bound: float | None = None
    note: str = ""  # why nothing is counted yet: "warming up", "no deploy to count from"
    no_baseline: bool = False  # a form that compares with the old release found no old request


def error_counts(errors: Iterable[Sequence[tuple[float, float]]], total: Iterable[Sequence[tuple[float, float]]],
                 since: float, until: float | None = None) -> Counts:
    """The error form's counts from raw samples of the `errors:` and `total:` selectors.
    Failures are capped at the total: the two selectors are read one after the other, and a
    scrape between the reads can put a failure in one and not yet in the other."""
    requests = total_increase(total, since, until)
    return Counts(bad=min(total_increase(errors, since, until), requests), total=requests)


def latency_counts(buckets: Iterable[tuple[Mapping[str, str], Sequence[tuple[float, float]]]], since: float,
                   slower_than: float, until: float | None = None) -> Counts:
    """The latency form's counts: requests slower than `slower_than` (the bucket bound at or
    above it, see slow_counts) among all since `since`. No +Inf bucket, no request counted."""
    increases = bucket_increases(buckets, since, until)
    if math.inf not in increases:
        return Counts(bad=0.0, total=0.0, bound=None)
    slow = slow_counts(increases, slower_than)
    return Counts(bad=slow.slow, total=slow.total, bound=slow.bound)
