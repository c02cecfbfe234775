"""The per-rule history the picture of a breach is drawn from (watcher/service/history.py): a table
of ticks in, the points kept out."""

from __future__ import annotations

import math

from watcher.service.history import RuleHistory

T0 = 1_764_000_000.0


def test_each_rule_keeps_its_values_oldest_first():
    h = RuleHistory(horizon=3600)
    for i, (a, b) in enumerate([(0.01, 120.0), (0.02, 130.0), (0.4, 900.0)]):
        h.record(T0 + 15 * i, [("5xx", a), ("latency", b)])
    assert h.points("5xx") == ((T0, 0.01), (T0 + 15, 0.02), (T0 + 30, 0.4))
    assert [v for _, v in h.points("latency")] == [120.0, 130.0, 900.0]


def test_a_value_not_read_is_a_gap():
    h = RuleHistory(horizon=3600)
    h.record(T0, [("5xx", None)])
    h.record(T0 + 15, [("5xx", "not a number")])
    h.record(T0 + 30, [("5xx", math.inf)])
    (_, a), (_, b), (_, c) = h.points("5xx")
    assert math.isnan(a) and math.isnan(b) and c == math.inf


def test_points_older_than_the_horizon_are_dropped():
    h = RuleHistory(horizon=60)
    for i in range(10):
        h.record(T0 + 15 * i, [("5xx", float(i))])
    assert [t - T0 for t, _ in h.points("5xx")] == [75, 90, 105, 120, 135]


def test_at_most_max_points_are_kept_per_rule():
    h = RuleHistory(horizon=10**9, max_points=3)
    for i in range(10):
        h.record(T0 + i, [("5xx", float(i))])
    assert [v for _, v in h.points("5xx")] == [7.0, 8.0, 9.0]


def test_points_since_a_moment():
    h = RuleHistory(horizon=3600)
    for i in range(5):
        h.record(T0 + 15 * i, [("5xx", float(i))])
    assert [v for _, v in h.points("5xx", since=T0 + 30)] == [2.0, 3.0, 4.0]


def test_unknown_rule_has_no_points():
    assert RuleHistory(horizon=60).points("nope") == ()


def test_rules_removed_by_a_reload_are_forgotten():
    h = RuleHistory(horizon=3600)
    h.record(T0, [("kept", 1.0), ("removed", 2.0)])
    h.keep_only(["kept"])
    assert h.points("removed") == () and h.points("kept") == ((T0, 1.0),)
