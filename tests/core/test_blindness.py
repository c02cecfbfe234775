"""The watcher's sight as episodes (evaluate.blindness): one "blind" message when the first rules
go blind, one "recovered" message when the last one sees again, however the rules stagger.

Each row is the set of blind rules after one tick, from an all-seeing start; the expected column
is what that tick tells people."""

import pytest

from watcher.core.evaluate import Blindness, Evaluation, RuleEvaluation, blindness
from watcher.core.rules import Observation, Outcome, PromQuery, Rule, RuleState

RULES = ("errors", "latency", "oom")


def evaluation(before: set[str], after: set[str]) -> Evaluation:
    rows = []
    for name in RULES:
        rule = Rule(name=name, signal=PromQuery("q"), action="rollback", above=0.1)
        rows.append(RuleEvaluation(rule=rule, result=None, seconds=0.0, observation=Observation(Outcome.ERROR),
                                   before=RuleState(blind=name in before), after=RuleState(blind=name in after),
                                   transitions=(), baseline=None))
    return Evaluation(now=0.0, window_s=60, rules=tuple(rows))


def told(ticks: list[set[str]], start: set[str] = frozenset()) -> list[str]:
    episode, before, out = frozenset(), set(start), []
    for after in ticks:
        sight = blindness(evaluation(before, after), episode)
        episode, before = sight.episode, after
        out.append(("blind " + ",".join(sight.started) if sight.started else "")
                   + ("recovered " + ",".join(sight.ended) if sight.ended else ""))
    return out


@pytest.mark.parametrize("ticks, expected", [
    # Prometheus stops mid-tick: two rules blind at once, the third a tick later: one message.
    ([set(), {"errors", "latency"}, {"errors", "latency", "oom"}, {"errors", "latency", "oom"}, set()],
     ["", "blind errors,latency", "", "", "recovered errors,latency,oom"]),
    # Recovery staggers too: one message, naming every rule of the episode.
    ([{"errors", "latency", "oom"}, {"oom"}, set(), set()],
     ["blind errors,latency,oom", "", "recovered errors,latency,oom", ""]),
    # A rule that saw again while another stayed blind, then went blind again: same episode.
    ([{"errors"}, {"errors", "oom"}, {"oom"}, {"oom", "latency"}, set()],
     ["blind errors", "", "", "", "recovered errors,latency,oom"]),
    # Two episodes apart: two pairs.
    ([{"oom"}, set(), set(), {"latency"}, set()],
     ["blind oom", "recovered oom", "", "blind latency", "recovered latency"]),
    # Never blind: nothing.
    ([set(), set()], ["", ""]),
])
def test_one_message_each_way_per_episode(ticks, expected):
    assert told(ticks) == expected


def test_rules_restored_blind_after_a_restart_are_not_announced_again_but_their_recovery_is():
    # The first process said "blind" and was restarted; state.json brought the blind rules back.
    assert told([{"errors", "oom"}, {"errors", "oom"}, set()], start={"errors", "oom"}) == [
        "", "", "recovered errors,oom"]


def test_a_rule_removed_by_a_reload_while_blind_is_named_in_the_recovery():
    sight = blindness(evaluation(set(), set()), frozenset({"old-rule", "errors"}))
    assert sight == Blindness(ended=("errors", "old-rule"))
