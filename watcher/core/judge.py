"""The sequential judge (docs/design.md section 4): is a release's error share above a limit,
judged on its counts since the deploy, with the chance of rolling back a release that is in
fact at or below the limit bounded by `alpha`, however often the watcher looks.

Pure: counts in, a Judgement out; no I/O, no clock. The rule state machine (rules.py) turns a
Judgement into pending (the share looks too high, the evidence is not conclusive yet) and
firing (it is).

The statistics, in one place:

    log_mixture(bad, total, p)   Robbins' beta-binomial mixture martingale: the likelihood of
                                 the counts averaged over every share q (uniform prior),
                                 against their likelihood if the share were p:
                                     M(p) = B(bad + 1, good + 1) / (p^bad (1 - p)^good)
                                 If the true share is p, M(p) is a nonnegative martingale that
                                 starts at 1, so by Ville's inequality it ever reaches 1/alpha
                                 with probability at most alpha, at ANY sample size: the
                                 watcher may look at every tick (Howard, Ramdas, McAuliffe,
                                 Sekhon 2021; Robbins 1970).
    interval(bad, total, alpha)  {p : M(p) < 1/alpha}: a confidence sequence, an interval for
                                 the share that holds at level 1 - alpha at every tick at once.
                                 log M is convex in p with its minimum (<= 0) at bad/total,
                                 so the set is one interval around the point estimate.
    judge(bad, total, above)     rejects "share <= above" when the whole interval lies above
                                 `above`. The evidence is the e-process of that composite
                                 null, inf over p <= above of M(p): M(above) when the point
                                 estimate is above the limit, at most 1 otherwise.

Why a uniform prior and one two-sided interval: the decision and the interval a message shows
are the same object ("29% (99.9% confidence 24-35%) against 10%": rolled back because 24% >
10%), and the uniform prior needs no tuning per limit (measured in bench/judge.py: 56 requests
at 30% against 10%, 4 requests at 100%; a prior concentrated near the limit is slower on the
large regressions that matter at 3 a.m.). A one-sided (truncated) prior would reject about 10%
sooner, at the price of an interval that is not the one the decision used.

What the guarantee assumes: each request fails independently with the same share. Failures
that come in bursts (a cold cache, one bad backend) are more variable than that and raise the
real rate of false rollbacks; the declared warm-up keeps the start-up burst out, and the
two-sample form compares with what the old release did under the same traffic.

Why not a library: `savvi` (0.3.1, one maintainer) pulls numpy, scipy and cvxpy (470 MB
installed, ~90 ms to import) and tests point nulls; `confseq` (0.0.11, 2023) builds C++ with
Boost from source and fails to install here; `expectation` needs Python >= 3.12. The mixture
above is a few lines on `math.lgamma`, imports nothing and costs microseconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from watcher.core.counts import Counts

# Bisection on a share in [0, 1]: 60 halvings are below a float's resolution near 1e-12.
_BISECTIONS = 60


# ---------------------------------------------------------------------------------------------
# The mixture martingale and its confidence sequence


def log_mixture(bad: float, total: float, share: float) -> float:
    """log M(share): the evidence of `bad` failures in `total` requests against a true failure
    share of exactly `share`. +inf when the counts are impossible at that share (a failure at
    share 0, a success at share 1)."""
    _check_counts(bad, total)
    good = total - bad
    mixture = math.lgamma(bad + 1) + math.lgamma(good + 1) - math.lgamma(total + 2)
    if share <= 0.0:
        return math.inf if bad > 0 else mixture
    if share >= 1.0:
        return math.inf if good > 0 else mixture
    return mixture - bad * math.log(share) - good * math.log1p(-share)


def interval(bad: float, total: float, alpha: float) -> tuple[float, float]:
    """The confidence sequence at level 1 - alpha: (low, high) holds the true share at every
    tick at once, with probability at least 1 - alpha. (0, 1) before any request."""
    _check_alpha(alpha)
    _check_counts(bad, total)
    if total == 0:
        return 0.0, 1.0
    limit = math.log(1.0 / alpha)
    estimate = bad / total
    # Each end is the inside point of a bisection between the estimate (inside: log M <= 0 <
    # limit there) and 0 or 1 (outside unless no failure / no success was seen).
    low = 0.0 if bad == 0 else _edge(bad, total, limit, inside=estimate, outside=0.0)
    high = 1.0 if bad == total else _edge(bad, total, limit, inside=estimate, outside=1.0)
    return low, high


def _edge(bad: float, total: float, limit: float, inside: float, outside: float) -> float:
    for _ in range(_BISECTIONS):
        middle = (inside + outside) / 2
        if middle in (inside, outside):
            break
        if log_mixture(bad, total, middle) < limit:
            inside = middle
        else:
            outside = middle
    return inside


def rejects(bad: float, total: float, above: float, alpha: float) -> bool:
    """Whether "share <= above" is rejected at level alpha: the confidence sequence lies wholly
    above `above`. Exact (no bisection): the point estimate is above the limit and M(above)
    reached 1/alpha."""
    _check_alpha(alpha)
    if total <= 0 or bad <= above * total:
        return False
    return log_mixture(bad, total, above) >= math.log(1.0 / alpha)


def evidence(bad: float, total: float, above: float) -> float:
    """The log e-value against "share <= above": the smallest log M(p) over p <= above (an
    e-process for the composite null). Positive and growing while the share looks too high;
    at most 0 while it does not."""
    _check_counts(bad, total)
    if total == 0:
        return 0.0
    return log_mixture(bad, total, min(above, bad / total))


# ---------------------------------------------------------------------------------------------
# A judgement


@dataclass(frozen=True)
class Judgement:
    """What the judge concluded on the counts of one tick, with everything a message needs.

    `limit` is the share compared with: `above`, or in the two-sample form `factor` x the old
    share's upper bound (at least `floor`). `level` is the confidence of `low`..`high` (1 -
    alpha; 1 - alpha/2 in the two-sample form, whose two intervals share alpha)."""

    rejected: bool  # "share <= limit" is rejected: the rule fires
    bad: float
    total: float
    low: float
    high: float
    level: float
    limit: float
    log_evidence: float  # log e-value against "share <= limit"
    log_needed: float  # the log e-value that rejects: log(1/alpha) (log(2/alpha) two-sample)
    old_share: float | None = None  # two-sample form: the old release's share...
    old_high: float | None = None  # ...and its upper confidence bound
    old_total: float | None = None
    factor: float | None = None

    @property
    def share(self) -> float | None:
        """The point estimate, None before any request."""
        return self.bad / self.total if self.total > 0 else None

    @property
    def suspect(self) -> bool:
        """The point estimate is above the limit: evidence accumulates (the rule is pending)."""
        return self.total > 0 and self.bad > self.limit * self.total

    @property
    def progress(self) -> float:
        """How far the evidence is towards rejection, 0 to 1."""
        return min(1.0, max(0.0, self.log_evidence / self.log_needed))

    def facts(self) -> dict[str, float | bool | None]:
        """The judgement as plain data (JSON), for the rule state, messages and the webhook."""
        return {"share": self.share, "low": self.low, "high": self.high, "level": self.level, "limit": self.limit,
                "requests": self.total, "failures": self.bad, "log_e": round(self.log_evidence, 4),
                "log_needed": round(self.log_needed, 4), "rejected": self.rejected,
                "old_share": self.old_share, "old_high": self.old_high, "factor": self.factor}


def judge(bad: float, total: float, above: float, alpha: float) -> Judgement:
    """The one-sample form. Null hypothesis: the release's failure share is at most `above`.
    Rejected (the rule fires) when the 1 - alpha confidence sequence lies above `above`; the
    chance of that ever happening to a release at or below the limit is at most `alpha`."""
    _check_share(above, "above")
    low, high = interval(bad, total, alpha)
    return Judgement(
        rejected=rejects(bad, total, above, alpha),
        bad=bad,
        total=total,
        low=low,
        high=high,
        level=1.0 - alpha,
        limit=above,
        log_evidence=evidence(bad, total, above),
        log_needed=math.log(1.0 / alpha),
    )


def judge_against(bad: float, total: float, old_bad: float, old_total: float, factor: float, alpha: float,
                  floor: float = 0.0) -> Judgement:
    """The two-sample form: the new release against the old one (its share before the deploy,
    or the fleet's hosts still on the known-good release).

    Null hypothesis: p_new <= max(factor x p_old, floor). A new release as bad as the old one
    times `factor` is not rolled back, nor one under `floor` (so 0.01% -> 0.05% is no incident).

    The test splits alpha between the two releases: the old share's 1 - alpha/2 confidence
    sequence gives an upper bound U_old, and the new release is judged against
    max(factor x U_old, floor) at alpha/2. Valid for the composite null at level alpha at every
    tick, for a fixed old sample (before the deploy) as for a growing one (the fleet): either
    the old share escaped its interval (at most alpha/2) or the new one did (at most alpha/2).
    Conservative compared with a joint test, but its numbers are the ones the message shows.
    With no old request at all the bound is 1 and nothing can be rejected: no baseline, no
    comparison."""
    if not (math.isfinite(factor) and factor > 0):
        raise ValueError(f"factor must be a positive number, got {factor!r}")
    _check_share(floor, "floor")
    half = alpha / 2
    old_low, old_high = interval(old_bad, old_total, half)
    limit = min(1.0, max(factor * old_high, floor)) if old_total > 0 else 1.0
    low, high = interval(bad, total, half)
    return Judgement(
        rejected=limit < 1.0 and rejects(bad, total, limit, half),
        bad=bad,
        total=total,
        low=low,
        high=high,
        level=1.0 - half,
        limit=limit,
        log_evidence=evidence(bad, total, limit),
        log_needed=math.log(1.0 / half),
        old_share=old_bad / old_total if old_total > 0 else None,
        old_high=old_high if old_total > 0 else None,
        old_total=old_total,
        factor=factor,
    )


# ---------------------------------------------------------------------------------------------
# One judge rule's tick: counts read by the signal reader (core/counts.py), judged here


def conclude(counts: Counts, above: float, alpha: float, factor: float | None = None,
             floor: float = 0.0) -> Judgement:
    """The judgement of one tick: the two-sample form when `factor` is given (against the old
    counts; none read counts as no old request, which cannot reject), else the one-sample."""
    if factor is None:
        return judge(counts.bad, counts.total, above, alpha)
    return judge_against(counts.bad, counts.total, counts.old_bad or 0.0, counts.old_total or 0.0, factor, alpha,
                         floor)


def describe(j: Judgement, what: str = "share", limit_text: str | None = None) -> str:
    """The judgement in a message's words:

        share 29% (99.9% confidence 24-35%) against 10%, after 212 requests
        share 29% (99.95% confidence 20-38%) against 2 x 3.1% before the deploy (at most 3.4%), ...
        share 0% (99.9% confidence 0-16%) against 10%, after 40 requests

    `what` names the share ("share", "share slower than 500ms"); `limit_text` replaces the
    limit's own words (the two-sample form has its own)."""
    if j.share is None:
        return f"{what}: no request yet"
    if limit_text is None and j.factor is not None:
        old = "the old release" if j.old_share is None else f"{format_share(j.old_share)}"
        limit_text = (f"{j.factor:g} x {old} before the deploy (at most {format_share(j.old_high)})"
                      if j.old_high is not None else "the old release (no request of it: cannot judge)")
    limit_text = limit_text or format_share(j.limit)
    requests = f"{j.total:,.0f} request{'' if j.total == 1 else 's'}"
    return (f"{what} {format_share(j.share)} ({format_level(j.level)} confidence "
            f"{format_share(j.low, percent=False, like=j.high)}-{format_share(j.high)}) against {limit_text}, after {requests}")


def format_share(x: float | None, percent: bool = True, like: float | None = None) -> str:
    """A share as a percent with as many digits as it needs: 29%, 3.1%, 0.42%, 0%; with `like`,
    as many decimals as `like` needs (the two ends of an interval read alike: 0.0-2.1%)."""
    if x is None:
        return "?"
    text = f"{x * 100:.{_decimals((like if like is not None else x) * 100)}f}"
    return text + ("%" if percent else "")


def _decimals(value: float) -> int:
    if value <= 0 or value >= 10 or value == round(value):
        return 0
    if value >= 1:
        return 1
    return min(6, 1 - math.floor(math.log10(value)))


def format_level(level: float) -> str:
    """1 - alpha as a percent: 99.9%, 99.95%, 95%."""
    return f"{round(level * 100, 6):g}%"


# ---------------------------------------------------------------------------------------------
# Argument checks: a programming error, never a data condition (the reader clamps data).


def _check_counts(bad: float, total: float) -> None:
    if not (0 <= bad <= total) or not math.isfinite(total):
        raise ValueError(f"counts must satisfy 0 <= bad <= total, got bad={bad!r} total={total!r}")


def _check_alpha(alpha: float) -> None:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha!r}")


def _check_share(value: float, name: str) -> None:
    if not 0 <= value <= 1:
        raise ValueError(f"{name} must be a share between 0 and 1, got {value!r}")
