"""A ratio of 0/0 (no request in its window) reads NaN. It never breaches (rules.breaches), and
it is not evidence of health either: it neither clears a breach through the trailing window nor
verifies a rollback (the restart-does-nothing scenario of tests/decisions, under load: traffic
stalled right after the switch, NaN read as "cleared on r1", verified while the app served the
bad code)."""

import math

from watcher.core.evaluate import RuleEvaluation, both_windows
from watcher.core.rules import Observation, Outcome, PromQuery, Rule, RuleState
from watcher.service.confirm import _clear

RULE = Rule(name="errors", signal=PromQuery("q"), action="rollback", above=0.1)
BREACH = Observation(Outcome.BREACH, value=0.6)


def test_a_nan_trailing_window_does_not_clear_a_breach():
    assert both_windows(BREACH, Observation(Outcome.OK, value=math.nan), 4).outcome is Outcome.BREACH
    assert both_windows(BREACH, Observation(Outcome.OK, value=0.01), 4).held


def evaluation(obs: Observation, rule: Rule = RULE) -> RuleEvaluation:
    return RuleEvaluation(rule, None, 0.0, obs, RuleState(), RuleState(), (), None)


def test_a_nan_ratio_does_not_verify_a_rollback_but_a_real_one_does():
    assert not _clear(evaluation(Observation(Outcome.OK, value=math.nan)))
    assert not _clear(evaluation(Observation(Outcome.OK, value=math.inf)))
    assert _clear(evaluation(Observation(Outcome.OK, value=0.0)))
    assert _clear(evaluation(Observation(Outcome.OK, value=None)))  # a probe that answered
    # No data clears a `no_data: ok` rule only while a query sees requests on the restored
    # release (an absent error series under traffic is zero errors); with no request seen it is
    # silence, which neither clears nor convicts (issue 21: the rollback ends unconfirmed).
    assert not _clear(evaluation(Observation(Outcome.NO_DATA)))
    assert _clear(evaluation(Observation(Outcome.NO_DATA)), traffic=True)
    assert not _clear(evaluation(Observation(Outcome.NO_DATA), Rule(name="x", signal=PromQuery("q"), action="rollback",
                                                                     above=0.1, no_data="keep")), traffic=True)
