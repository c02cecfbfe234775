"""The sequential judge's statistics (watcher/core/judge.py): tables of counts and what the judge
concludes on them, and cheap properties checked with hypothesis. The false-rollback rate itself
is a figure of bench/judge.py (simulated streams), not of a unit test."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from watcher.core.counts import (
    SlowCounts,
    bucket_increases,
    increase_since,
    quantile_bound,
    slow_counts,
    total_increase,
)
from watcher.core.judge import evidence, interval, judge, judge_against, log_mixture, rejects

ALPHA = 0.001
INF = math.inf


# ---------------------------------------------------------------------------------------------
# One-sample: tables


@pytest.mark.parametrize(
    "bad, total, rejected",
    [
        (0, 0, False),  # no request: nothing to judge
        (0, 1000, False),  # no failure at all
        (3, 3, False),  # 3 of 3 failed: not yet beyond doubt against 10% at 0.001
        (4, 4, True),  # 4 of 4: it is
        (17, 56, True),  # 30% at 50 req/s: about a second of traffic
        (16, 56, False),
        (61, 212, True),  # the message's example: 29% after 212 requests
        (100, 1000, False),  # exactly at the limit: never rejected
        (150, 1000, True),  # 15% of 1,000 against 10%
        (140, 1000, False),  # 14% of 1,000: not yet beyond doubt at 0.001
    ],
)
def test_one_sample_table(bad, total, rejected):
    assert judge(bad, total, 0.10, ALPHA).rejected is rejected


def test_interval_before_any_request_is_everything():
    assert interval(0, 0, ALPHA) == (0.0, 1.0)


def test_interval_of_no_failure_starts_at_zero_and_all_failures_ends_at_one():
    assert interval(0, 50, ALPHA)[0] == 0.0
    assert interval(50, 50, ALPHA)[1] == 1.0


def test_judgement_carries_what_the_message_needs():
    j = judge(61, 212, 0.10, ALPHA)
    assert j.share == pytest.approx(61 / 212)
    assert 0.10 < j.low < j.share < j.high < 0.5
    assert j.level == pytest.approx(0.999)
    assert j.limit == 0.10
    assert j.log_evidence >= j.log_needed == pytest.approx(math.log(1000))
    assert j.suspect and j.progress == 1.0


def test_a_share_under_the_limit_is_neither_suspect_nor_evidence():
    j = judge(5, 100, 0.10, ALPHA)
    assert not j.suspect and not j.rejected
    assert j.log_evidence <= 0 and j.progress == 0.0


def test_suspect_before_conclusive_is_the_pending_case():
    j = judge(3, 10, 0.10, ALPHA)
    assert j.suspect and not j.rejected and 0 <= j.progress < 1


def test_mixture_at_an_impossible_share_is_infinite_evidence():
    assert log_mixture(1, 10, 0.0) == INF
    assert log_mixture(9, 10, 1.0) == INF
    assert math.isfinite(log_mixture(0, 10, 0.0))


@pytest.mark.parametrize("bad, total", [(-1, 10), (11, 10), (1, INF)])
def test_impossible_counts_are_refused(bad, total):
    with pytest.raises(ValueError):
        judge(bad, total, 0.1, ALPHA)


@pytest.mark.parametrize("alpha", [0, 1, -0.1, 2])
def test_alpha_outside_0_1_is_refused(alpha):
    with pytest.raises(ValueError):
        judge(1, 10, 0.1, alpha)


# ---------------------------------------------------------------------------------------------
# Two-sample


def test_two_sample_rejects_a_release_far_worse_than_the_old_one():
    j = judge_against(30, 100, old_bad=50, old_total=2000, factor=2, alpha=ALPHA)
    assert j.rejected
    assert j.old_share == pytest.approx(0.025)
    assert 0.025 < j.old_high < 0.05
    assert j.limit == pytest.approx(2 * j.old_high)
    assert j.level == pytest.approx(1 - ALPHA / 2)


def test_two_sample_keeps_a_release_as_bad_as_the_old_one_times_the_factor():
    assert not judge_against(500, 10_000, old_bad=250, old_total=10_000, factor=2, alpha=ALPHA).rejected


def test_two_sample_without_old_requests_cannot_reject():
    j = judge_against(100, 100, old_bad=0, old_total=0, factor=2, alpha=ALPHA)
    assert not j.rejected and j.old_share is None and j.limit == 1.0


def test_two_sample_floor_keeps_tiny_shares_out():
    # The old release never failed: 2 x its bound is tiny, the floor (1%) is what counts.
    assert judge_against(20, 10_000, old_bad=0, old_total=100_000, factor=2, alpha=ALPHA).rejected
    assert not judge_against(20, 10_000, old_bad=0, old_total=100_000, factor=2, alpha=ALPHA, floor=0.01).rejected


def test_two_sample_refuses_a_factor_that_is_not_positive():
    with pytest.raises(ValueError):
        judge_against(1, 10, 1, 10, factor=0, alpha=ALPHA)


# ---------------------------------------------------------------------------------------------
# One-sample: properties

counts = st.integers(min_value=0, max_value=5000).flatmap(
    lambda total: st.tuples(st.integers(min_value=0, max_value=total), st.just(total)))
shares = st.floats(min_value=0.001, max_value=0.999)
alphas = st.sampled_from([0.1, 0.01, 0.001, 1e-6])


@given(counts, shares, alphas)
def test_more_failures_never_weaken_the_case(c, above, alpha):
    bad, total = c
    if bad < total:
        if bad > above * total:  # above the limit, the evidence grows with every failure
            assert evidence(bad + 1, total, above) >= evidence(bad, total, above) - 1e-9
        assert rejects(bad + 1, total, above, alpha) or not rejects(bad, total, above, alpha)


@given(counts, alphas)
def test_the_interval_holds_the_point_estimate(c, alpha):
    bad, total = c
    low, high = interval(bad, total, alpha)
    estimate = bad / total if total else 0.5
    assert 0.0 <= low <= estimate <= high <= 1.0


@given(st.integers(min_value=0, max_value=100_000), shares, alphas)
def test_no_failure_is_never_rejected(total, above, alpha):
    assert not rejects(0, total, above, alpha)


@given(counts, shares, alphas)
def test_the_decision_is_the_interval_lying_above_the_limit(c, above, alpha):
    bad, total = c
    low, _ = interval(bad, total, alpha)
    if rejects(bad, total, above, alpha):
        assert low > above
    elif low > above + 1e-9:
        pytest.fail(f"interval starts at {low} above {above} but the test did not reject")


@given(counts, st.sampled_from([(0.01, 0.001), (0.1, 0.01), (0.001, 1e-6)]))
def test_a_smaller_alpha_widens_the_interval(c, pair):
    bad, total = c
    loose, strict = pair
    lo1, hi1 = interval(bad, total, loose)
    lo2, hi2 = interval(bad, total, strict)
    assert lo2 <= lo1 + 1e-12 and hi1 <= hi2 + 1e-12


@given(counts, shares, alphas)
def test_a_higher_limit_is_never_easier_to_exceed(c, above, alpha):
    bad, total = c
    higher = min(0.999, above + 0.05)
    assert rejects(bad, total, above, alpha) or not rejects(bad, total, higher, alpha)


# ---------------------------------------------------------------------------------------------
# Latency from histogram buckets

BUCKETS = {0.1: 80.0, 0.25: 90.0, 0.5: 95.0, 1.0: 99.0, INF: 100.0}


@pytest.mark.parametrize(
    "slower_than, slow, bound",
    [
        (0.5, 5.0, 0.5),  # a bucket bound: exact
        (0.3, 5.0, 0.5),  # between bounds: the next bound up (an undercount, never an overcount)
        (0.05, 20.0, 0.1),
        (1.0, 1.0, 1.0),
        (2.0, 0.0, INF),  # beyond the last finite bound: nothing can be counted
    ],
)
def test_slow_counts_use_the_bound_at_or_above(slower_than, slow, bound):
    assert slow_counts(BUCKETS, slower_than) == SlowCounts(slow, 100.0, bound)


def test_slow_counts_need_the_inf_bucket():
    with pytest.raises(ValueError):
        slow_counts({0.1: 1.0}, 0.1)


def test_slow_counts_clamp_a_bucket_read_ahead_of_the_total():
    assert slow_counts({0.5: 101.0, INF: 100.0}, 0.5).slow == 0.0


@pytest.mark.parametrize("q, bound", [(0.5, 0.1), (0.8, 0.1), (0.9, 0.25), (0.95, 0.5), (0.99, 1.0), (0.999, None)])
def test_quantile_bound_is_the_holding_buckets_upper_bound(q, bound):
    assert quantile_bound(BUCKETS, q) == bound


def test_quantile_bound_without_requests_is_none():
    assert quantile_bound({0.5: 0.0, INF: 0.0}, 0.95) is None


bucket_maps = st.lists(st.integers(min_value=0, max_value=50), min_size=1, max_size=8).map(
    lambda steps: {**{0.1 * (i + 1): float(sum(steps[: i + 1])) for i in range(len(steps))}, INF: float(sum(steps) + 3)})


@given(bucket_maps, st.floats(min_value=0, max_value=2), st.floats(min_value=0, max_value=2))
def test_a_higher_bound_counts_no_more_slow_requests(buckets, a, b):
    lo, hi = sorted((a, b))
    assert slow_counts(buckets, hi).slow <= slow_counts(buckets, lo).slow
    counted = slow_counts(buckets, lo)
    assert counted.bound >= lo and 0 <= counted.slow <= counted.total


# ---------------------------------------------------------------------------------------------
# Raw counter samples -> increase since a moment


@pytest.mark.parametrize(
    "points, since, until, grown",
    [
        ([(0, 5), (1, 7), (2, 9)], 0, None, 4),  # from the sample at `since`
        ([(0, 5), (1, 7), (2, 9)], 0.5, None, 4),  # the last sample before `since` starts it
        ([(0, 5), (1, 7), (2, 9)], 1, None, 2),
        ([(0, 5), (1, 7), (2, 2), (3, 4)], 0, None, 6),  # a reset counts from 0: 2 + 2 + 2
        ([(5, 1), (6, 3)], 0, None, 3),  # first seen after `since`: counted from 0
        ([(0, 5), (1, 7), (2, 9)], 0, 1, 2),  # up to `until`
        ([(0, 5), (1, math.nan), (2, 9)], 0, None, 4),  # a NaN sample is skipped
        ([], 0, None, 0),
        ([(0, 5), (1, 5)], 0, None, 0),
    ],
)
def test_increase_since_table(points, since, until, grown):
    assert increase_since(points, since, until) == grown


def test_a_selector_sums_its_series_increases():
    old = [(0, 100), (1, 110), (2, 120)]
    new_5xx = [(2, 1)]  # the first 5xx of a fresh process: appears at 1
    assert total_increase([old, new_5xx], since=0.5) == 20 + 1


def test_bucket_increases_sum_every_other_label_by_le():
    series = [
        ({"le": "0.5", "pod": "a"}, [(0, 10), (1, 14)]),
        ({"le": "0.5", "pod": "b"}, [(0, 0), (1, 1)]),
        ({"le": "+Inf", "pod": "a"}, [(0, 20), (1, 30)]),
        ({"pod": "c"}, [(0, 0), (1, 100)]),  # no le: not a bucket
    ]
    assert bucket_increases(series, since=0) == {0.5: 5.0, INF: 10.0}


samples = st.lists(st.tuples(st.integers(min_value=0, max_value=1000), st.integers(min_value=0, max_value=50)),
                   max_size=30).map(lambda pairs: sorted({t: float(v) for t, v in pairs}.items()))


@given(samples, st.integers(min_value=-5, max_value=1005), st.integers(min_value=0, max_value=200))
def test_increase_splits_at_any_moment(points, since, gap):
    until = since + gap
    whole = increase_since(points, since)
    assert whole >= 0
    assert increase_since(points, since, until) + increase_since(points, until) == pytest.approx(whole)


@given(st.lists(st.integers(min_value=0, max_value=20), max_size=30), st.integers(min_value=0, max_value=40))
def test_increase_of_a_counter_without_reset_is_last_minus_start(steps, since):
    values, total = [], 0
    for s in steps:
        total += s
        values.append(float(total))
    points = list(enumerate(values))
    start = values[min(since, len(values) - 1)] if values and since < len(values) else (values[-1] if values else 0.0)
    assert increase_since(points, since) == (values[-1] - start if values else 0.0)


# ---------------------------------------------------------------------------------------------
# One judge rule's tick


def test_error_counts_sum_the_selectors_and_cap_failures_at_the_total():
    from watcher.core.counts import Counts, error_counts

    errors = [[(0, 0), (1, 3)], [(1, 2)]]  # a second 5xx series born after `since`
    assert error_counts(errors, [[(0, 100), (1, 110)]], since=0) == Counts(bad=5, total=10)
    # A scrape between the two reads: 5 failures seen, only 4 requests yet.
    assert error_counts(errors, [[(0, 100), (1, 104)]], since=0) == Counts(bad=4, total=4)


def test_latency_counts_use_the_bucket_bound_at_or_above():
    from watcher.core.counts import latency_counts

    buckets = [({"le": "0.25"}, [(0, 0), (1, 90)]), ({"le": "0.5"}, [(0, 0), (1, 95)]), ({"le": "+Inf"}, [(0, 0), (1, 100)])]
    counts = latency_counts(buckets, since=0, slower_than=0.3)
    assert (counts.bad, counts.total, counts.bound) == (5, 100, 0.5)
    assert latency_counts(buckets[:2], since=0, slower_than=0.3).total == 0  # no +Inf bucket


def test_conclude_picks_the_form_by_factor():
    from watcher.core.counts import Counts
    from watcher.core.judge import conclude

    assert conclude(Counts(30, 100), 0.1, ALPHA).limit == 0.1
    two = conclude(Counts(30, 100, old_bad=50, old_total=2000), 0.1, ALPHA, factor=2)
    assert two.rejected and two.factor == 2
    assert not conclude(Counts(30, 100), 0.1, ALPHA, factor=2).rejected  # no old counts: no comparison
