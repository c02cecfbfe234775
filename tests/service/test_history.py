"""What the rules read at each tick, and the picture of a breach built from it
(watcher/service/history.py): tables of ticks in, points and pictures out. Pure: a State, rules
and messages built by hand; times are steady = wall (to_wall is the identity) unless said."""

from __future__ import annotations

import math

from watcher.core import envelope, messages
from watcher.core.incident import Incident
from watcher.core.rules import Finding, HttpCheck, PromQuery, Rule
from watcher.service.deploys import open_window
from watcher.service.history import PICTURED, Reading, RuleHistory, breach_picture
from watcher.store.state import State

T0 = 1_764_000_000.0
CTX = envelope.MessageContext("shop", "web-1").at(T0 + 600)
RATIO = Rule(name="http-5xx-ratio", signal=PromQuery("ratio"), action="rollback", above=0.1, value_unit="%")
LATENCY = Rule(name="p95", signal=PromQuery("p95"), action="rollback", above_baseline=5, floor=0.2, value_unit="s")
HEALTH = Rule(name="health", signal=HttpCheck("http://127.0.0.1:1/health"), action="rollback")
RULES = [RATIO, LATENCY, HEALTH]
F_RATIO = Finding("http-5xx-ratio", "rollback", "> 0.1", value=0.3, unit="%", since=T0 + 330)


def same(t: float) -> float:
    return t


def ticks(history: RuleHistory, values: list[float | None], start: float = T0, every: float = 15.0,
          breach_from: int | None = None) -> None:
    for i, v in enumerate(values):
        since = start + every * breach_from if breach_from is not None and i >= breach_from else None
        history.record(start + every * i, [Reading("http-5xx-ratio", v, since), Reading("p95", 0.01, None, 0.01)])


def deployed(at: float = T0 + 300) -> State:
    state = State()
    open_window(state, "r2", at, 300)
    return state


# --- RuleHistory -------------------------------------------------------------------------------


def test_each_rule_keeps_its_values_oldest_first():
    h = RuleHistory(horizon=3600)
    ticks(h, [0.01, 0.02, 0.4])
    assert h.points("http-5xx-ratio") == ((T0, 0.01), (T0 + 15, 0.02), (T0 + 30, 0.4))
    assert [v for _, v in h.points("p95")] == [0.01, 0.01, 0.01]


def test_a_value_not_read_is_a_gap_and_infinity_is_kept():
    h = RuleHistory(horizon=3600)
    ticks(h, [None, math.inf])
    (_, a), (_, b) = h.points("http-5xx-ratio")
    assert math.isnan(a) and b == math.inf


def test_points_older_than_the_horizon_are_dropped():
    h = RuleHistory(horizon=60)
    ticks(h, [float(i) for i in range(10)])
    assert [t - T0 for t, _ in h.points("http-5xx-ratio")] == [75, 90, 105, 120, 135]


def test_at_most_max_points_are_kept_per_rule():
    h = RuleHistory(horizon=10**9, max_points=3)
    ticks(h, [float(i) for i in range(10)])
    assert [v for _, v in h.points("http-5xx-ratio")] == [7.0, 8.0, 9.0]


def test_points_since_a_moment():
    h = RuleHistory(horizon=3600)
    ticks(h, [float(i) for i in range(5)])
    assert [v for _, v in h.points("http-5xx-ratio", since=T0 + 30)] == [2.0, 3.0, 4.0]


def test_breach_start_and_baseline_outlive_the_rule_state_reset():
    h = RuleHistory(horizon=3600)
    ticks(h, [0.01, 0.4, 0.4, 0.0], breach_from=1)
    h.record(T0 + 60, [Reading("http-5xx-ratio", 0.0), Reading("p95", 0.01)])  # after the switch: reset
    assert h.breach_since("http-5xx-ratio") == T0 + 15 and h.baseline("p95") == 0.01


def test_the_last_breach_within_bounds_is_the_one_asked_for():
    h = RuleHistory(horizon=3600)
    for at, since in [(T0, T0), (T0 + 15, T0), (T0 + 30, None), (T0 + 45, T0 + 45), (T0 + 60, T0 + 45)]:
        h.record(at, [Reading("http-5xx-ratio", 0.4, since)])
    assert h.breach_since("http-5xx-ratio") == T0 + 45
    assert h.breach_since("http-5xx-ratio", before=T0 + 40) == T0
    assert h.breach_since("http-5xx-ratio", after=T0 + 50) is None


def test_rules_a_reload_removed_are_forgotten():
    h = RuleHistory(horizon=3600)
    ticks(h, [0.1])
    h.record(T0 + 15, [Reading("p95", 0.01)])
    assert h.points("http-5xx-ratio") == () and h.breach_since("http-5xx-ratio") is None
    assert len(h.points("p95")) == 2


# --- breach_picture -----------------------------------------------------------------------------


def test_rolling_back_picture_shows_the_rule_from_before_the_deploy_with_its_moments():
    h = RuleHistory(horizon=3600)
    ticks(h, [0.01] * 22 + [0.4] * 18, breach_from=22)  # deploy at tick 20, breach at 22
    state = deployed(T0 + 300)
    state.last_rollback_at = T0 + 585
    message = messages.rolling_back(CTX, "r2", "r1", [F_RATIO])
    p = breach_picture(message, h, state, RULES, same, T0 + 600, "web-1")
    assert (p.rule, p.unit, p.release, p.host) == ("http-5xx-ratio", "%", "r2", "web-1")
    assert (p.deploy_at, p.breach_at, p.switch_at) == (T0 + 300, T0 + 330, T0 + 585)
    assert [t.label("%") for t in p.thresholds] == ["> 10%"]
    assert p.points[0][0] == T0 + 210  # the first tick from a third of (now - deploy) before the deploy
    assert p.points[-1] == (T0 + 585, 0.4)


def test_rolled_back_picture_keeps_the_breach_before_the_switch_after_the_reset():
    h = RuleHistory(horizon=3600)
    ticks(h, [0.01] * 22 + [0.4] * 10, breach_from=22)
    # After the switch (T0 + 470) the rule states are reset, and the restored release's first
    # tick still reads the bad release's errors: a new breach, not the one that rolled back.
    h.record(T0 + 475, [Reading("http-5xx-ratio", 0.3, T0 + 475), Reading("p95", 0.01)])
    h.record(T0 + 480, [Reading("http-5xx-ratio", 0.0), Reading("p95", 0.01)])
    state = deployed(T0 + 300)
    state.last_rollback_at = T0 + 470
    state.rules, state.baselines = {}, {}  # deploys.restored at the switch
    message = messages.rollback_verified(CTX, "r2", "r1", [F_RATIO], 10.0)
    p = breach_picture(message, h, state, RULES, same, T0 + 490, "web-1")
    assert (p.breach_at, p.switch_at) == (T0 + 330, T0 + 470)


def test_halt_without_rules_is_pictured_from_the_open_incident():
    h = RuleHistory(horizon=3600)
    ticks(h, [0.01] * 22 + [0.4] * 10, breach_from=22)
    state = deployed(T0 + 300)
    state.incident = Incident.open("abc", T0 + 340, "r2", [F_RATIO])
    message = messages.rollback_failed(CTX, "r2", "r1", "the restart command exited 1")
    p = breach_picture(message, h, state, RULES, same, T0 + 480, "web-1")
    assert p is not None and p.rule == "http-5xx-ratio"


def test_cannot_act_is_pictured_without_a_switch():
    h = RuleHistory(horizon=3600)
    ticks(h, [0.4] * 30, breach_from=0)
    state = deployed(T0 + 100)
    state.last_rollback_at = T0 + 200  # an earlier rollback's
    message = messages.cannot_act(CTX, "r2", "no known-good release", [F_RATIO])
    p = breach_picture(message, h, state, RULES, same, T0 + 450, "web-1")
    assert p.switch_at is None and p.deploy_at == T0 + 100


def test_baseline_rule_picture_draws_its_baseline_line():
    h = RuleHistory(horizon=3600)
    for i in range(30):
        h.record(T0 + 15 * i, [Reading("p95", 0.01 if i < 20 else 0.5, T0 + 300 if i >= 20 else None, 0.01)])
    state = deployed(T0 + 290)
    finding = Finding("p95", "rollback", "> 5 x baseline (0.01) and > 0.2", value=0.5, unit="s", since=T0 + 300)
    p = breach_picture(messages.rolling_back(CTX, "r2", "r1", [finding]), h, state, RULES, same, T0 + 450, "web-1")
    assert [t.label("s") for t in p.thresholds] == ["> 50ms (5 x baseline 10ms)", "> 200ms (floor)"]


def test_steady_times_are_drawn_at_wall_times():
    h = RuleHistory(horizon=3600)
    ticks(h, [0.01] * 30, start=T0 + 1000)  # recorded at wall time (the tick converts)
    state = deployed(T0 + 300)  # steady time, 1,000 s behind the wall clock
    p = breach_picture(messages.rolling_back(CTX, "r2", "r1", [F_RATIO]), h, state, RULES,
                       lambda t: t + 1000, T0 + 1450, "web-1")
    assert p.deploy_at == T0 + 1300


def test_messages_not_about_a_breach_have_no_picture():
    h = RuleHistory(horizon=3600)
    ticks(h, [0.4] * 30, breach_from=0)
    state = deployed()
    for message in (messages.deploy_seen(CTX, "r2", 300), messages.window_passed(CTX, "r2"),
                    messages.would_roll_back(CTX, "r2", "r1", [F_RATIO], "shadow mode")):
        assert message.kind not in PICTURED
        assert breach_picture(message, h, state, RULES, same, T0 + 450, "web-1") is None


def test_no_picture_for_a_probe_or_a_rule_without_history():
    state = deployed()
    probe = Finding("health", "rollback", "status 200", detail="status 503", since=T0 + 330)
    h = RuleHistory(horizon=3600)
    assert breach_picture(messages.rolling_back(CTX, "r2", "r1", [probe]), h, state, RULES, same, T0 + 450, "w") is None
    assert breach_picture(messages.rolling_back(CTX, "r2", "r1", [F_RATIO]), h, state, RULES, same, T0 + 450, "w") is None


def test_a_bug_in_building_the_picture_leaves_the_message_without_one():
    h = RuleHistory(horizon=3600)
    ticks(h, [0.4] * 30, breach_from=0)
    broken = deployed()
    broken.releases = None  # not a dict: the builder fails
    message = messages.rolling_back(CTX, "r2", "r1", [F_RATIO])
    assert breach_picture(message, h, broken, RULES, same, T0 + 450, "web-1") is None
