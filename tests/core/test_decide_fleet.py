"""The fleet in the decision: a verdict from another host is one more firing rule (`fleet:RULE`)
that meets the same safety policy; a fleet-wide symptom holds a local rollback back."""

import pytest

from watcher.core.decide import NOTIFY, REFUSE, ROLLBACK, WAIT, Policy, Situation, decide
from watcher.core.fleetmodel import BAD, FleetVerdict
from watcher.core.messages import fmt_finding
from watcher.core.rules import Finding
from watcher.service.coordinator import fleet_finding
from watcher.store.state import ReleaseRecord

NOW = 1_700_000_000.0
LOCAL = Finding("http-5xx-ratio", "rollback", "> 0.1", 0.3, since=NOW - 30)
P95 = Finding("p95-latency", "rollback", "> 5 x baseline", 1.2, since=NOW - 20)
FLEET = fleet_finding(FleetVerdict("r43", BAD, "web-7", NOW - 2, "http-5xx-ratio", 0.42, "5xx 42%"))
GOOD_R41 = {"r41": ReleaseRecord("r41", "good")}


def situation(**kw):
    base = dict(now=NOW, current="r43", releases=("r43", "r42", "r41"), marks=GOOD_R41, in_watch_window=True,
                firing=(FLEET,))
    base.update(kw)
    return Situation(**base)


@pytest.mark.parametrize("changes, action, kind, reason_part", [
    ({}, ROLLBACK, "rollback", "rolling back r43 -> r41 because fleet:http-5xx-ratio fires"),
    ({"in_watch_window": False}, NOTIFY, "outside_window", "outside its watch window"),
    ({"marks": {**GOOD_R41, "r43": ReleaseRecord("r43", "good")}}, NOTIFY, "outside_window", "known-good"),
    ({"lock_held": True}, WAIT, "deploy_lock", "deploy lock"),
    ({"marks": {**GOOD_R41, "r43": ReleaseRecord("r43", auto_rollbacks=1)}}, REFUSE, "limit", "max_auto_rollbacks"),
    ({"marks": {}}, REFUSE, "no_target", "no known-good release"),
    # a fleet verdict is never held back by the symptom check: the other host decided already
    ({"fleet_symptoms": frozenset({"http-5xx-ratio"}), "firing": (FLEET, LOCAL)}, ROLLBACK, "rollback", "rolling back"),
    # the local rule fires at the same time on hosts on a known-good release: no rollback
    ({"firing": (LOCAL,), "fleet_symptoms": frozenset({"http-5xx-ratio"}), "fleet_symptom_reason": "web-2 (r41)"},
     NOTIFY, "fleet_symptom", "fleet-wide symptom, not the release: web-2 (r41)"),
    # one of two firing rules is fleet-wide, the other is this release's own: roll back
    ({"firing": (LOCAL, P95), "fleet_symptoms": frozenset({"http-5xx-ratio"})}, ROLLBACK, "rollback", "p95-latency"),
    # outside the window the usual notify applies first
    ({"firing": (LOCAL,), "fleet_symptoms": frozenset({"http-5xx-ratio"}), "in_watch_window": False},
     NOTIFY, "outside_window", "outside"),
])
def test_fleet_decision_table(changes, action, kind, reason_part):
    v = decide(situation(**changes), Policy())
    assert (v.action, v.kind) == (action, kind), v.reason
    assert reason_part in v.reason


def test_fleet_finding_names_the_originating_host_and_rule():
    assert FLEET.rule == "fleet:http-5xx-ratio" and FLEET.action == "rollback"
    assert FLEET.condition == "bad fleet-wide: web-7 rolled r43 back"
    assert FLEET.detail == "http-5xx-ratio was 0.42 there: 5xx 42%"
    line = fmt_finding(FLEET, NOW)
    assert line.startswith("fleet:http-5xx-ratio: bad fleet-wide: web-7 rolled r43 back, since ") and "(for 2s)" in line
