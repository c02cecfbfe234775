"""The decision of DESIGN.md section 5, one table row per check, each refusal with its reason."""

import pytest

from watcher.decide import NOTHING, NOTIFY, REFUSE, ROLLBACK, WAIT, Policy, Situation, choose_target, decide
from watcher.rules import Finding
from watcher.state import ReleaseRecord

NOW = 1_700_000_000.0
FIRING = (Finding("http-5xx-ratio", "rollback", "> 0.1", 0.3),)
RELEASES = ("r43", "r42", "r41", "r40")


def marks(**kw):
    """marks(r41="good", r42="bad", r40="barrier+good")"""
    out = {}
    for rid, spec in kw.items():
        parts = spec.split("+")
        out[rid] = ReleaseRecord(rid, mark=next((p for p in parts if p in ("good", "bad")), None), barrier="barrier" in parts)
    return out


def situation(**kw):
    base = dict(now=NOW, current="r43", releases=RELEASES, marks=marks(r41="good"), in_watch_window=True, firing=FIRING)
    base.update(kw)
    return Situation(**base)


@pytest.mark.parametrize(
    "changes, policy, action, kind, reason_part",
    [
        ({"firing": ()}, Policy(), NOTHING, "quiet", "no rollback rule"),
        ({"firing": (Finding("cpu", "notify", "> 0.95", 0.99),)}, Policy(), NOTHING, "quiet", "no rollback rule"),
        ({"halted": "rollback r43 -> r41 did not verify"}, Policy(), NOTHING, "halted", "did not verify"),
        ({}, Policy(shadow=True), NOTIFY, "shadow", "would roll back r43 -> r41"),
        ({"paused_until": NOW + 600}, Policy(), NOTIFY, "paused", "paused for 10m"),
        ({"in_watch_window": False}, Policy(), NOTIFY, "outside_window", "outside its watch window"),
        ({"marks": marks(r43="good", r41="good")}, Policy(), NOTIFY, "outside_window", "known-good"),
        ({"lock_held": True}, Policy(), WAIT, "deploy_lock", "deploy lock"),
        ({"marks": {"r41": ReleaseRecord("r41", "good"), "r43": ReleaseRecord("r43", auto_rollbacks=1)}}, Policy(), REFUSE, "limit", "max_auto_rollbacks 1"),
        ({"last_rollback_at": NOW - 60}, Policy(cooldown=1800), REFUSE, "cooldown", "within the cooldown of 30m"),
        ({"marks": {}}, Policy(), REFUSE, "no_target", "no known-good release older than r43"),
        ({"marks": marks(r42="barrier", r41="good")}, Policy(), REFUSE, "no_target", "r42 is a barrier"),
        ({"marks": marks(r43="barrier", r41="good")}, Policy(), REFUSE, "no_target", "r43 is a barrier"),
        ({}, Policy(), ROLLBACK, "rollback", "rolling back r43 -> r41 because http-5xx-ratio fires"),
        # past pause and cooldown: acts
        ({"paused_until": NOW - 1, "last_rollback_at": NOW - 3600}, Policy(cooldown=1800), ROLLBACK, "rollback", "r43 -> r41"),
    ],
)
def test_decision_table(changes, policy, action, kind, reason_part):
    v = decide(situation(**changes), policy)
    assert (v.action, v.kind) == (action, kind)
    assert reason_part in v.reason


def test_checks_apply_in_order_halted_beats_everything():
    v = decide(situation(halted="x", lock_held=True, in_watch_window=False), Policy(shadow=True))
    assert v.kind == "halted"


def test_shadow_reports_the_target_it_would_use_and_never_acts():
    v = decide(situation(), Policy(shadow=True))
    assert v.action == NOTIFY and v.target == "r41"


def test_outside_window_beats_deploy_lock():
    # The deploy is not the cause: no point waiting for a lock.
    v = decide(situation(in_watch_window=False, lock_held=True), Policy())
    assert v.kind == "outside_window"


@pytest.mark.parametrize(
    "current, m, target, why",
    [
        ("r43", marks(r42="good", r41="good"), "r42", "newest known-good"),
        ("r43", marks(r42="bad", r41="good"), "r41", "newest known-good"),
        ("r43", marks(r41="good"), "r41", ""),  # r42 unmarked: never a target
        ("r42", marks(r43="good", r41="good"), "r41", ""),  # never a newer release
        ("r43", marks(r42="bad"), None, "skipped r42 (bad), r41 (not known-good), r40 (not known-good)"),
        ("r40", marks(r41="good"), None, "no release older than r40"),
        ("r43", marks(r42="barrier+good", r41="good"), "r42", ""),  # rolling back TO a barrier is fine
        ("r43", marks(r42="barrier", r41="good"), None, "barrier"),
        ("r99", marks(r41="good"), None, "does not list the current release r99"),
    ],
)
def test_choose_target(current, m, target, why):
    got, reason = choose_target(current, RELEASES, m)
    assert got == target
    assert why in reason


def test_verdict_carries_findings_for_messages():
    v = decide(situation(), Policy())
    assert v.findings == FIRING and v.current == "r43" and v.target == "r41"
