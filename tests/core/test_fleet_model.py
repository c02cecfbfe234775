"""The fleet's pure decisions, with hand-built fleets in tables (no etcd, no clock)."""

import pytest

from watcher.core.fleetmodel import (
    BAD,
    GOOD,
    FleetVerdict,
    FleetView,
    GateCode,
    Keys,
    Member,
    fleet_wide_symptom,
    gate_answer,
    verdict_wins,
)

NOW = 1_000_000.0
RULE = "http-5xx-ratio"


def member(host, release, firing_since=None, tick_ago=1.0, known_good=False, rule=RULE, unseen=()):
    firing = {} if firing_since is None else {rule: NOW + firing_since}
    return Member(host, release, firing=firing, tick_at=NOW - tick_ago, known_good=known_good,
                  unseen=frozenset(unseen))


def view(*members, verdicts=()):
    return FleetView({m.host: m for m in members}, {v.release: v for v in verdicts})


GOOD_R1 = FleetVerdict("r1", GOOD, "web-9", NOW - 9000)
BAD_R1 = FleetVerdict("r1", BAD, "web-9", NOW - 10, RULE, 0.4, "rolled back")


# Here: web-1 runs r2, RULE firing since NOW-30. "same time" is 60 s, stale after 45 s.
SYMPTOM_TABLE = [
    # (case, other members, verdicts, expected fleet-wide, expected witnesses)
    ("old release breaches the same rule at the same time",
     [member("web-2", "r1", -40)], [GOOD_R1], True, ("web-2",)),
    ("old release quiet: the release is suspect",
     [member("web-2", "r1")], [GOOD_R1], False, ()),
    ("old release breaches, started 10 min earlier: not the same time",
     [member("web-2", "r1", -630)], [GOOD_R1], False, ()),
    ("old release breaches, started a little after us: same time",
     [member("web-2", "r1", -5)], [GOOD_R1], True, ("web-2",)),
    ("old release breaches another rule: not the same symptom",
     [member("web-2", "r1", -30, rule="p95-latency")], [GOOD_R1], False, ()),
    ("old host silent for 2 min: no evidence",
     [member("web-2", "r1", -30, tick_ago=120)], [GOOD_R1], False, ()),
    ("other host on the same new release: not a comparison",
     [member("web-2", "r2", -30)], [GOOD_R1], False, ()),
    ("old release not known-good anywhere: not a comparison",
     [member("web-2", "r1", -30)], [], False, ()),
    ("old release known-good by its host's own word",
     [member("web-2", "r1", -30, known_good=True)], [], True, ("web-2",)),
    ("old release is bad fleet-wide: not a comparison",
     [member("web-2", "r1", -30, known_good=True)], [BAD_R1], False, ()),
    ("one of three old hosts breaching: the release is suspect",
     [member("web-2", "r1", -30), member("web-3", "r1"), member("web-4", "r1")], [GOOD_R1], False, ("web-2",)),
    ("two of three old hosts breaching (low traffic on the third): fleet-wide",
     [member("web-2", "r1", -30), member("web-3", "r1", -20), member("web-4", "r1")], [GOOD_R1], True,
     ("web-2", "web-3")),
    ("no other host at all",
     [], [GOOD_R1], False, ()),
    ("one of two old hosts breaching, the other cannot read the rule (no traffic): fleet-wide",
     [member("web-2", "r1", -30), member("web-3", "r1", unseen=[RULE])], [GOOD_R1], True, ("web-2",)),
    ("the only old host cannot read the rule: neither witness nor denial",
     [member("web-2", "r1", unseen=[RULE])], [GOOD_R1], False, ()),
    ("the old host cannot read another rule: this one is compared",
     [member("web-2", "r1", unseen=["p95-latency"])], [GOOD_R1], False, ()),
]


@pytest.mark.parametrize("case,others,verdicts,fleet_wide,witnesses", SYMPTOM_TABLE, ids=[c[0] for c in SYMPTOM_TABLE])
def test_fleet_wide_symptom(case, others, verdicts, fleet_wide, witnesses):
    me = member("web-1", "r2", -30)
    v = view(me, *others, verdicts=verdicts)
    s = fleet_wide_symptom(v, "web-1", "r2", RULE, NOW - 30, NOW, same_time=60, stale_after=45)
    assert (s.fleet_wide, s.witnesses) == (fleet_wide, witnesses), s.reason
    assert s.reason


def test_a_rule_no_old_host_could_read_is_unseen_not_denied():
    v = view(member("web-2", "r1", unseen=[RULE]), member("web-3", "r1", unseen=[RULE]), verdicts=[GOOD_R1])
    s = fleet_wide_symptom(v, "web-1", "r2", RULE, NOW - 30, NOW, 60, 45)
    assert (s.fleet_wide, s.unseen) == (False, True)
    assert s.reason == f"{RULE} cannot be compared: no data on the host(s) still on a known-good release (web-2 (r1), web-3 (r1))"
    seen = fleet_wide_symptom(view(member("web-2", "r1"), verdicts=[GOOD_R1]), "web-1", "r2", RULE, NOW - 30, NOW, 60, 45)
    assert (seen.fleet_wide, seen.unseen) == (False, False)


def test_symptom_counts_releases_known_good_in_local_state():
    v = view(member("web-2", "r1", -30))
    s = fleet_wide_symptom(v, "web-1", "r2", RULE, NOW - 30, NOW, 60, 45, known_good=frozenset({"r1"}))
    assert s.fleet_wide and "web-2 (r1)" in s.reason


GATE_TABLE = [
    # (case, verdict, survived hosts, running hosts, canary, code)
    ("bad anywhere", FleetVerdict("r2", BAD, "web-3", NOW, RULE, 0.3, "5xx"), ["web-1", "web-2"], [], 1, GateCode.BAD),
    ("bad wins over a canary count", FleetVerdict("r2", BAD, "web-3", NOW), ["web-1", "web-2"], [], 2, GateCode.BAD),
    ("known-good fleet-wide", FleetVerdict("r2", GOOD, "web-1", NOW), ["web-1", "web-2"], [], None, GateCode.GO),
    ("canary reached", None, ["web-1", "web-2"], [], 2, GateCode.GO),
    ("canary not reached", None, ["web-1"], ["web-1", "web-2"], 2, GateCode.UNKNOWN),
    ("nothing known", None, [], [], None, GateCode.UNKNOWN),
    ("survived but not yet declared good, no canary", None, ["web-1"], [], None, GateCode.UNKNOWN),
]


@pytest.mark.parametrize("case,verdict,survived,running,canary,code", GATE_TABLE, ids=[c[0] for c in GATE_TABLE])
def test_gate_answer(case, verdict, survived, running, canary, code):
    v = FleetView({h: Member(h, "r2") for h in running}, {"r2": verdict} if verdict else {},
                  {"r2": frozenset(survived)} if survived else {})
    answer = gate_answer("r2", v, canary)
    assert answer.code is code, answer.reason
    assert answer.final == (code is not GateCode.UNKNOWN)


def test_gate_says_how_many_hosts_must_survive_the_window_and_how_many_have():
    v = FleetView({"web-a": Member("web-a", "r2"), "web-b": Member("web-b", "r2")}, {}, {"r2": frozenset({"web-a"})})
    answer = gate_answer("r2", v, None, known_good_hosts=2)
    assert answer.reason == ("r2 is not known yet: needs 2 hosts to survive its watch window (known_good_hosts), "
                             "1 so far (web-a); running on 2 hosts: web-a, web-b")
    assert "needs 3 hosts to survive its watch window (--canary), 1 so far" in gate_answer("r2", v, 3).reason


def test_bad_replaces_good_but_nothing_replaces_bad():
    good, bad = FleetVerdict("r2", GOOD, "a", 1), FleetVerdict("r2", BAD, "b", 2)
    assert verdict_wins(None, good) and verdict_wins(good, bad)
    assert not verdict_wins(bad, good) and not verdict_wins(bad, FleetVerdict("r2", BAD, "c", 3))
    assert not verdict_wins(good, FleetVerdict("r2", GOOD, "c", 3))


def test_keys_and_their_parse():
    k = Keys("/rw/shop/")
    assert k.parse(k.verdict("r2")) == ("verdict", "r2", "")
    assert k.parse(k.survived("r2", "web-1")) == ("survived", "r2", "web-1")
    assert k.parse(k.member("web-1")) == ("member", "", "web-1")
    assert k.parse("/rw/other/hosts/x") is None and k.parse("/rw/shop/releases/r2/nope") is None


def test_values_round_trip_and_garbage_is_ignored():
    v = FleetVerdict("r2", BAD, "web-1", 12.5, RULE, 0.31, "5xx")
    assert FleetVerdict.decode("r2", v.encode().encode()) == v
    m = Member("web-1", "r2", "in_window", True, False, {RULE: 10.0}, 11.0, "r1", frozenset({"p95-latency"}))
    assert Member.decode("web-1", m.encode()) == m
    # Written before `unseen` existed: read as seeing every rule. A wrong type: not a member.
    old = b'{"release": "r2", "phase": "watching", "in_window": false, "known_good": true, "firing": {}, "tick_at": 5}'
    assert Member.decode("web-1", old) == Member("web-1", "r2", known_good=True, tick_at=5.0)
    assert Member.decode("web-1", old[:-1] + b', "unseen": "errors"}') is None
    assert Member.decode("web-1", old[:-1] + b', "unseen": [3]}') is None
    assert FleetVerdict.decode("r2", b"{not json") is None and FleetVerdict.decode("r2", b'{"verdict": "maybe"}') is None
    assert Member.decode("x", b"[]") is None
    assert FleetVerdict("r2", BAD, "a", 1, value=float("nan")).encode().count("null") == 1
