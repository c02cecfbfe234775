"""One number formatter for everything on-call reads (watcher/base/format.py): one value, one
rule, and every message kind, the webhook payload, the incident timeline, the fleet's verdict
and the journal's reason must write it the same way, in the rule's unit, and the timeline must
say the value the rule had when it first breached, not the one it had when it fired."""

from __future__ import annotations

import inspect
import re
from dataclasses import replace

import pytest

from watcher.core import envelope
from watcher.core import messages as m
from watcher.core.decide import Verdict
from watcher.core.fleetmodel import BAD, FleetVerdict
from watcher.core.incident import Incident
from watcher.core.model import Action, VerdictKind
from watcher.core.rules import Observation, Outcome, PromQuery, Rule, RuleState, finding, step
from watcher.service.coordinator import fleet_finding

T0 = 1_714_533_120.0  # 2024-05-01T03:12:00Z
CTX = envelope.MessageContext("shop-api", "web-1").at(T0 + 150)

RULE = Rule("http-5xx-ratio", PromQuery("sum(rate(errors[$window])) / sum(rate(requests[$window]))"), "rollback",
            above=0.1, for_=120.0, value_unit="%")
BREACH, FIRING = 0.2712, 0.4028605482717521
# The same value and condition, in every output: the rule's unit, never "0.4028..." or "> 0.1".
VALUE_TEXT, BREACH_TEXT, CONDITION_TEXT = "40.29%", "27.12%", "> 10% for 2m"
RAW = re.compile(r"0\.4028|0\.2712|> 0\.1\b")


def fired() -> RuleState:
    """The rule stepped through a real breach: 27% first, 40% when `for` has passed."""
    state, _ = step(RULE, RuleState(), Observation(Outcome.BREACH, value=BREACH), T0)
    state, _ = step(RULE, state, Observation(Outcome.BREACH, value=0.35), T0 + 60)
    state, transitions = step(RULE, state, Observation(Outcome.BREACH, value=FIRING), T0 + 120)
    assert [t.after.value for t in transitions] == ["firing"]
    return state


F = finding(RULE, fired())
FINDINGS = [F]


def verdict(action, kind, target=None, reason="why"):
    return Verdict(action, kind, reason, "r42", target, (F,), (target,) if target else ())


# kind -> (the message, whether it carries the rule's value)
KINDS = {
    "deploy_seen": (m.deploy_seen(CTX, "r42", 1800), False),
    "window_passed": (m.window_passed(CTX, "r42"), False),
    "rule_pending": (m.rule_pending(CTX, F, "r42"), True),
    "rolling_back": (m.rolling_back(CTX, "r42", "r41", FINDINGS), True),
    "rollback_verified": (m.rollback_verified(CTX, "r42", "r41", FINDINGS, 12.0), True),
    "rollback_unconfirmed": (m.rollback_unconfirmed(CTX, "r42", "r41", ["http-5xx-ratio"], "no traffic", 90.0,
                                                    FINDINGS), True),
    "rollback_failed": (m.rollback_failed(CTX, "r42", "r41", "exit 1"), False),
    "verify_failed": (m.verify_failed(CTX, "r42", "r41", "503"), False),
    "deploy_landed": (m.deploy_landed(CTX, "r42", "r41", "r43"), False),
    "rollback_superseded": (m.rollback_superseded(CTX, "r42", "r41", "r43"), False),
    "cannot_act": (m.for_verdict(CTX, verdict(Action.REFUSE, VerdictKind.LIMIT)), True),
    "fired_outside_window": (m.for_verdict(CTX, verdict(Action.NOTIFY, VerdictKind.OUTSIDE_WINDOW)), True),
    "would_roll_back": (m.for_verdict(CTX, verdict(Action.NOTIFY, VerdictKind.SHADOW, "r41")), True),
    "fleet_symptom": (m.for_verdict(CTX, verdict(Action.NOTIFY, VerdictKind.FLEET_SYMPTOM)), True),
    "window_without_evidence": (m.window_without_evidence(CTX, "r42", "too few ticks saw data"), False),
    "clock_step": (m.clock_stepped(CTX, 90.0), False),
    "blind": (m.blind(CTX, ["http-5xx-ratio"], "connect error"), False),
    "recovered": (m.recovered(CTX, ["http-5xx-ratio"]), False),
    "reload_refused": (m.reload_refused(CTX, ["rules.yaml:3: above: not a number"]), False),
    "notify_only": (m.for_phase_change(CTX, replace(F, action="notify"), "firing", "r42", False), True),
    "human_action": (m.human_action(CTX, "paused for 1h", "alice", "no rollback until then"), False),
    "test": (m.test_message(CTX, "info"), False),
    "fleet_blind": (m.fleet_blind(CTX, "etcd at http://127.0.0.1:2379 unreachable (connection refused)"), False),
    "fleet_recovered": (m.fleet_recovered(CTX, "http://127.0.0.1:2379"), False),
    "rollback_not_cleared": (m.rollback_not_cleared(CTX, "r42", "r41", ["http-5xx-ratio"], 90.0), False),
    "current_unreadable": (m.current_unreadable(CTX, "r42", "current is dangling"), False),
    "current_readable": (m.current_readable(CTX, "r42"), False),
    "lock_wait_long": (m.lock_wait_long(CTX, "r42", "/run/deploy.lock", 400.0, FINDINGS), True),
}


def test_the_table_names_every_message_kind_there_is():
    declared = set(re.findall(r'kind="(\w+)"', inspect.getsource(m)))
    assert declared == set(KINDS), f"add a row for {declared - set(KINDS)}"
    assert all(message.kind == kind for kind, (message, _) in KINDS.items())


def test_the_rule_remembers_the_value_it_breached_at_beside_the_value_it_fired_at():
    state = fired()
    assert (state.breach_value, state.last_value) == (BREACH, FIRING)
    assert RuleState.from_dict(state.to_dict()).breach_value == BREACH  # a restart keeps it
    assert (F.breach_value, F.value, F.since) == (BREACH, FIRING, T0)
    assert (F.condition, F.threshold) == (CONDITION_TEXT, "> 0.1 for 2m")


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_message_kind_and_its_payload_write_the_value_in_the_rules_unit(kind):
    message, carries = KINDS[kind]
    data = envelope.payload(message)
    assert not RAW.search(message.title + message.body), message.body
    if not carries:
        assert data["value"] is None and data["value_text"] is None
        return
    assert f"{VALUE_TEXT} against {CONDITION_TEXT}" in message.body
    assert f"{BREACH_TEXT} at the breach" in message.body
    assert (data["value"], data["unit"], data["threshold"]) == (FIRING, "%", "> 0.1 for 2m")  # raw, for machines
    assert (data["value_text"], data["threshold_text"]) == (VALUE_TEXT, CONDITION_TEXT)  # as the body says
    assert (data["breach_value"], data["breach_value_text"]) == (BREACH, BREACH_TEXT)


def test_the_incident_timeline_starts_with_the_value_at_the_breach_not_at_firing():
    incident = Incident.open("i1", T0 + 120, "r42", FINDINGS)
    first = incident.timeline[0]
    assert first == {"time": T0, "what": f"http-5xx-ratio breached: {BREACH_TEXT} against {CONDITION_TEXT}"}


def test_the_journal_reason_of_each_transition_writes_the_value_in_the_rules_unit():
    _, pending = step(RULE, RuleState(), Observation(Outcome.BREACH, value=BREACH), T0)
    assert pending[0].reason == f"value {BREACH_TEXT}"


def test_another_hosts_verdict_is_written_in_the_rules_unit_too():
    verdict = FleetVerdict("r42", BAD, "web-2", T0, "http-5xx-ratio", FIRING, "rolled back", unit="%")
    assert FleetVerdict.decode("r42", verdict.encode()) == verdict
    assert f"http-5xx-ratio was {VALUE_TEXT} there" in fleet_finding(verdict).detail
