"""One table for the formatting every output shares (watcher/base/format.py): journal summaries, the
CLI, `explain`, the backtest and the notifications all write values through these."""

from __future__ import annotations

import math

import pytest

from watcher.base import format as fmt
from watcher.core.rules import Finding, HttpCheck, Rule, RuleState, finding

T0 = 1_714_533_120.0  # 2024-05-01T03:12:00Z

TABLE = [
    # (function, arguments, expected)
    (fmt.format_value, (0.3, "%"), "30%"),
    (fmt.format_value, (0.3, "percent"), "30%"),  # never "0.3percent"
    (fmt.format_value, (0.3021, "ratio"), "30.21%"),
    (fmt.format_value, (0.2546243453253495, ""), "0.2546"),  # no raw floats
    (fmt.format_value, (1.5, "s"), "1.5s"),
    (fmt.format_value, (90.0, "s"), "1m30s"),
    (fmt.format_value, (0.25, "s"), "250ms"),
    (fmt.format_value, (12345.0, ""), "12,345"),
    (fmt.format_value, (None, "%"), "n/a"),
    (fmt.format_value, (math.inf, ""), "+Inf"),
    (fmt.format_duration, (2.0,), "2s"),
    (fmt.format_duration, (1.5,), "1.5s"),
    (fmt.format_duration, (90.0,), "1m30s"),
    (fmt.format_duration, (3600.0,), "1h"),
    (fmt.format_duration, (0.2,), "200ms"),
    (fmt.format_time, (T0,), "2024-05-01T03:12:00Z"),  # ISO 8601 with its UTC offset, no epoch
    (fmt.format_time, (None,), "?"),
    (fmt.format_condition, ("> 0.1", "%"), "> 10%"),
    (fmt.format_condition, ("> 0.5", "s"), "> 500ms"),
    (fmt.format_condition, ("> 5 x baseline", "s"), "> 5 x baseline"),
]


@pytest.mark.parametrize("function, args, expected", TABLE,
                         ids=[f"{f.__name__}{a}" for f, a, _ in TABLE])
def test_format_table(function, args, expected):
    assert function(*args) == expected


def test_a_health_probe_finding_shows_the_probes_answer_not_its_latency():
    rule = Rule(name="health", signal=HttpCheck(url="http://127.0.0.1:1/health"), action="rollback")
    state = RuleState(last_value=0.0123, last_detail="status 503")
    f = finding(rule, state)
    assert f.value is None and f.detail == "status 503"
    assert isinstance(f, Finding)
