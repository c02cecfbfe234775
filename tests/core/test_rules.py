"""The rule state machine of docs/design.md section 4, driven tick by tick with a fake clock.

Each table gives what the signal returned at `t0 + i * interval` and the phase expected
after that tick, in the manner of Prometheus' alerting_test.go.
"""

import math

import pytest

from watcher.base.errors import SourceError
from watcher.core.rules import (
    HttpCheck,
    Outcome,
    Phase,
    ProbeResult,
    PromQuery,
    Rule,
    RuleState,
    Sample,
    classify,
    finding,
    render_query,
    step,
    window_seconds,
)

T0 = 1_700_000_000.0
INTERVAL = 15.0  # interval
P, F, N = Phase.PENDING, Phase.FIRING, Phase.INACTIVE
ERR = SourceError("connection refused")


def ratio_rule(**kw):
    defaults = dict(name="ratio", signal=PromQuery("q"), action="rollback", above=0.1)
    defaults.update(kw)
    return Rule(**defaults)


def probe_rule(**kw):
    defaults = dict(name="health", signal=HttpCheck("http://127.0.0.1:1/health"), action="rollback", failures=3)
    defaults.update(kw)
    return Rule(**defaults)


def v(*values, **labels):
    """An instant-query result: one sample per value."""
    return [Sample(dict(labels, i=str(n)), x) for n, x in enumerate(values)]


UP = ProbeResult(True, "200 in 3 ms", 200)
DOWN = ProbeResult(False, "status 503", 503)


def run(rule, results, baseline=None, error_limit=4, state=None):
    """Feed results tick by tick; return the phases after each tick and all transitions."""
    state = state or RuleState()
    phases, transitions = [], []
    for i, result in enumerate(results):
        obs = classify(rule, result, baseline)
        state, tr = step(rule, state, obs, T0 + i * INTERVAL, error_limit)
        phases.append(state.phase)
        transitions.extend(tr)
    return phases, transitions, state


@pytest.mark.parametrize(
    "for_, results, expected",
    [
        # No `for`: firing on the first true tick.
        (0, [v(0.05), v(0.3)], [N, F]),
        # for 2m at 15 s: pending for 8 ticks, firing on the 9th breaching tick (120 s held).
        (120, [v(0.3)] * 9, [P] * 8 + [F]),
        # A breach lasting `for` minus one tick does not fire.
        (120, [v(0.3)] * 8 + [v(0.01)], [P] * 8 + [N]),
        # A single false tick resets; the window starts again.
        (30, [v(0.3), v(0.3), v(0.05), v(0.3), v(0.3), v(0.3)], [P, P, N, P, P, F]),
        # Firing stays firing while the condition holds, resolves on the first false tick.
        (0, [v(0.3), v(0.3), v(0.0)], [F, F, N]),
        # Exactly at the threshold is not above it.
        (0, [v(0.1)], [N]),
    ],
)
def test_for_window_follows_prometheus_semantics(for_, results, expected):
    phases, _, _ = run(ratio_rule(for_=for_), results)
    assert phases == expected


def test_for_window_one_tick_short_does_not_fire():
    phases, transitions, _ = run(ratio_rule(for_=120), [v(0.3)] * 8)
    assert F not in phases
    assert [(t.before, t.after) for t in transitions] == [(N, P)]


def test_errors_never_fire_and_never_reset():
    rule = ratio_rule(for_=30)
    # pending, then errors (held pending, even past `for`), then breach again: fires at once
    # because the pending time kept counting from the first breach.
    phases, transitions, state = run(rule, [v(0.3), ERR, ERR, ERR, v(0.3)])
    assert phases == [P, P, P, P, F]
    # errors never turned a firing rule inactive either
    phases, _, _ = run(ratio_rule(), [v(0.3), ERR, ERR, ERR, ERR, ERR])
    assert phases == [F] * 6


def test_errors_alone_never_fire():
    phases, _, state = run(ratio_rule(), [ERR] * 20)
    assert set(phases) == {N}
    assert state.errors == 20


def test_blind_reported_once_after_error_limit_and_recovered_once():
    phases, transitions, state = run(ratio_rule(), [ERR] * 6 + [v(0.01)] + [v(0.01)], error_limit=4)
    kinds = [(t.kind, round((t.at - T0) / INTERVAL)) for t in transitions]
    assert kinds == [("blind", 3), ("recovered", 6)]
    assert not state.blind and state.errors == 0


def test_errors_below_limit_are_not_blind_and_success_resets_the_count():
    _, transitions, state = run(ratio_rule(), [ERR, ERR, ERR, v(0.0), ERR, ERR, ERR], error_limit=4)
    assert transitions == []
    assert state.errors == 3


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nan_and_inf_never_breach(bad):
    phases, _, _ = run(ratio_rule(), [v(bad), v(bad, bad)])
    assert phases == [N, N]
    # below-thresholds too: -Inf is not "below 1"
    phases, _, _ = run(ratio_rule(above=None, below=1.0), [v(bad)])
    assert phases == [N]


def test_any_breaching_series_makes_the_condition_true_and_keeps_its_labels():
    rule = ratio_rule()
    result = [Sample({"instance": "a"}, 0.01), Sample({"instance": "b"}, 0.4), Sample({"instance": "c"}, math.nan)]
    obs = classify(rule, result)
    assert obs.outcome is Outcome.BREACH
    assert obs.labels == {"instance": "b"} and obs.value == 0.4
    assert obs.breaching == 1 and obs.series == 3
    state, _ = step(rule, RuleState(), obs, T0)
    f = finding(rule, state)
    assert f.labels == {"instance": "b"} and f.value == 0.4 and f.since == T0


@pytest.mark.parametrize(
    "policy, expected",
    [
        ("ok", [P, N, P]),  # no data counts as not breaching: resets
        ("keep", [P, P, F]),  # holds the state (and the pending time keeps counting)
        ("breach", [P, P, F]),  # counts as a breach
    ],
)
def test_no_data_policies(policy, expected):
    phases, _, _ = run(ratio_rule(for_=30, no_data=policy), [v(0.3), [], v(0.3)])
    assert phases == expected


def test_no_data_breach_fires_on_missing_metric():
    phases, _, _ = run(ratio_rule(no_data="breach"), [[]])
    assert phases == [F]


def test_no_data_keep_holds_firing():
    phases, _, _ = run(ratio_rule(no_data="keep"), [v(0.3), [], []])
    assert phases == [F, F, F]


def test_below_threshold():
    phases, _, _ = run(ratio_rule(above=None, below=0.5), [v(0.9), v(0.4)])
    assert phases == [N, F]


@pytest.mark.parametrize(
    "value, baseline, fires",
    [
        (0.8, 0.1, True),  # 8x baseline, above the floor
        (0.3, 0.1, False),  # 3x baseline
        (0.008, 0.001, False),  # 8x, but under the 0.2 s floor: 1 ms -> 8 ms is no incident
        (0.21, 0.04, True),  # 5.25x and above the floor
        (0.5, 0.1, False),  # exactly 5x is not above it
    ],
)
def test_baseline_ratio_with_floor(value, baseline, fires):
    rule = ratio_rule(above=None, above_baseline=5, floor=0.2)
    phases, _, _ = run(rule, [v(value)], baseline=baseline)
    assert phases == [F if fires else N]


def test_baseline_rule_without_baseline_cannot_fire_and_says_so_once():
    rule = ratio_rule(above=None, above_baseline=5, floor=0.2)
    phases, transitions, _ = run(rule, [v(9.0)] * 3, baseline=None)
    assert phases == [N, N, N]
    assert [t.kind for t in transitions] == ["no_baseline"]


def test_probe_fails_twice_succeeds_fails_three_times_fires_only_at_the_end():
    phases, transitions, _ = run(probe_rule(), [DOWN, DOWN, UP, DOWN, DOWN, DOWN])
    assert phases == [N, N, N, N, N, F]
    assert [(t.before, t.after) for t in transitions] == [(N, F)]


def test_probe_three_failures_fire_and_first_failure_time_is_kept():
    phases, _, state = run(probe_rule(), [UP, DOWN, DOWN, DOWN])
    assert phases == [N, N, N, F]
    assert state.breach_since == T0 + INTERVAL  # the first failed probe, for messages
    assert finding(probe_rule(), state).detail == "status 503"


def test_probe_errors_are_not_failures():
    # A probe result is never an error (connect errors are failures); a SourceError from the
    # probe machinery itself holds state like any other error.
    phases, _, state = run(probe_rule(), [DOWN, ERR, DOWN, DOWN])
    assert phases == [N, N, N, F]


def test_failures_and_for_combine():
    rule = probe_rule(failures=2, for_=30)
    phases, _, _ = run(rule, [DOWN, DOWN, DOWN, DOWN])
    assert phases == [N, P, P, F]


def test_state_survives_a_round_trip_through_json_form():
    _, _, state = run(ratio_rule(for_=120), [v(0.3)] * 3)
    again = RuleState.from_dict(state.to_dict())
    assert again == state
    # and continues exactly as if nothing happened
    obs = classify(ratio_rule(for_=120), v(0.3))
    later, _ = step(ratio_rule(for_=120), again, obs, T0 + 8 * INTERVAL)
    assert later.phase is F


def test_error_observation_keeps_last_value_for_messages():
    _, _, state = run(ratio_rule(for_=60), [v(0.3), ERR])
    assert state.last_value == 0.3 and state.last_outcome == "error"


@pytest.mark.parametrize(
    "now, deployed, in_window, expected",
    [
        (T0 + 10, T0, True, 45),  # clamped up to min_window
        (T0 + 50, T0, True, 50),  # the time since the deploy
        (T0 + 50.2, T0, True, 51),  # rounded up: never misses the deploy's scrape
        (T0 + 500, T0, True, 60),  # clamped down to max_window
        (T0 + 50, T0, False, 60),  # outside a watch window: max_window
        (T0 + 50, None, True, 60),  # no deploy known
        (T0 - 5, T0, True, 45),  # clock behind the deploy time
    ],
)
def test_window_seconds_clamps_time_since_deploy(now, deployed, in_window, expected):
    assert window_seconds(now, deployed, in_window, min_window=45, max_window=60) == expected


def test_render_query_substitutes_every_window():
    q = 'sum(rate(a{code=~"5.."}[$window])) / sum(rate(a[$window]))'
    assert render_query(q, 42) == 'sum(rate(a{code=~"5.."}[42s])) / sum(rate(a[42s]))'
    assert render_query("rate(a[5m])", 42) == "rate(a[5m])"


def test_condition_text_says_the_numbers():
    rule = ratio_rule(above=None, above_baseline=5, floor=0.2, for_=120)
    assert rule.condition_text(0.04) == "> 5 x baseline (0.04) and > 0.2 for 2m"
    assert probe_rule().condition_text() == "status 200, 3 times in a row"
