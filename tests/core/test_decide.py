"""The decision of docs/design.md section 5, one table row per check, each refusal with its reason."""

import pytest

from watcher.core.decide import (
    NOTHING,
    NOTIFY,
    REFUSE,
    ROLLBACK,
    WAIT,
    Policy,
    Situation,
    choose_target,
    choose_targets,
    decide,
    order_releases,
)
from watcher.core.model import OrderSource, Release, ReleaseRecord
from watcher.core.rules import Finding

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
        ({"marks": {"r41": ReleaseRecord("r41", "good"), "r43": ReleaseRecord("r43", last_rollback_at=NOW - 60)}},
         Policy(cooldown=1800, max_auto_rollbacks=2), REFUSE, "cooldown", "within its cooldown of 30m"),
        ({"marks": {}}, Policy(), REFUSE, "no_target", "no known-good release older than r43"),
        ({"marks": marks(r42="barrier", r41="good")}, Policy(), REFUSE, "no_target", "r42 is a barrier"),
        ({"marks": marks(r43="barrier", r41="good")}, Policy(), REFUSE, "no_target", "r43 is a barrier"),
        ({}, Policy(), ROLLBACK, "rollback", "rolling back r43 -> r41 because http-5xx-ratio fires"),
        # past pause and cooldown: acts
        ({"paused_until": NOW - 1, "marks": {"r41": ReleaseRecord("r41", "good"), "r43": ReleaseRecord("r43", last_rollback_at=NOW - 3600)}},
         Policy(cooldown=1800, max_auto_rollbacks=2), ROLLBACK, "rollback", "r43 -> r41"),
        # the cooldown is per release: r42 was rolled back a minute ago, r43 is a different bad release
        ({"marks": {"r41": ReleaseRecord("r41", "good"), "r42": ReleaseRecord("r42", "bad", auto_rollbacks=1, last_rollback_at=NOW - 60)}},
         Policy(cooldown=1800), ROLLBACK, "rollback", "r43 -> r41"),
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


@pytest.mark.parametrize(
    "current, m, targets",
    [
        # an unusable newest target is followed by the next older known-good one ...
        ("r43", marks(r42="good", r41="good", r40="good"), ("r42", "r41", "r40")),
        ("r43", marks(r42="good", r41="bad", r40="good"), ("r42", "r40")),
        # ... but never across a barrier (rolling back TO a barrier is fine)
        ("r43", marks(r42="good", r41="barrier", r40="good"), ("r42",)),
        ("r43", marks(r42="good", r41="barrier+good", r40="good"), ("r42", "r41")),
        ("r43", marks(r42="barrier", r41="good"), ()),
    ],
)
def test_choose_targets_lists_every_fallback_up_to_a_barrier(current, m, targets):
    assert choose_targets(current, RELEASES, m)[0] == targets


def test_the_verdict_carries_the_fallback_targets():
    v = decide(situation(marks=marks(r42="good", r41="good")), Policy())
    assert v.action == ROLLBACK and v.targets == ("r42", "r41")


def rec(rid, **kw):
    return ReleaseRecord(rid, **kw)


@pytest.mark.parametrize(
    "listed, m, order, sources",
    [
        # git-SHA names: the name sort (f3a9c1e, c41e9f0, 0b7d2aa) is wrong; the timeline is right
        ([Release("f3a9c1e", created=3000), Release("0b7d2aa", created=2000), Release("c41e9f0", created=1000)],
         {"c41e9f0": rec("c41e9f0", deployed_at=900), "0b7d2aa": rec("0b7d2aa", deployed_at=800),
          "f3a9c1e": rec("f3a9c1e", deployed_at=700)},
         ["c41e9f0", "0b7d2aa", "f3a9c1e"], ["timeline"] * 3),
        # never seen deployed: creation time
        ([Release("c41e9f0", created=1000), Release("f3a9c1e", created=3000), Release("0b7d2aa", created=2000)], {},
         ["f3a9c1e", "0b7d2aa", "c41e9f0"], ["created"] * 3),
        # a mix: the timeline time and the creation time are on one axis
        ([Release("0b7d2aa", created=2000), Release("f3a9c1e", created=100), Release("c41e9f0", created=1000)],
         {"f3a9c1e": rec("f3a9c1e", deployed_at=5000)},
         ["f3a9c1e", "0b7d2aa", "c41e9f0"], ["timeline", "created", "created"]),
        # neither (command, nginx): after the ordered ones, in the backend's listing order
        ([Release("blue"), Release("green")], {"green": rec("green", deployed_at=10)},
         ["green", "blue"], ["timeline", "unknown"]),
    ],
)
def test_release_order_comes_from_the_timeline_then_creation_time_never_the_name(listed, m, order, sources):
    got = order_releases(listed, m)
    assert [r.id for r, _ in got] == order
    assert [s.value for _, s in got] == sources
    assert all(isinstance(s, OrderSource) for _, s in got)


def test_a_git_sha_release_is_rolled_back_to_the_previous_known_good_not_by_name():
    listed = [Release("f3a9c1e", created=1000), Release("c41e9f0", created=2000), Release("0b7d2aa", created=3000)]
    m = {"f3a9c1e": rec("f3a9c1e", mark="good", deployed_at=100), "c41e9f0": rec("c41e9f0", mark="good", deployed_at=200),
         "0b7d2aa": rec("0b7d2aa", deployed_at=300)}
    ordered = tuple(r.id for r, _ in order_releases(listed, m))
    v = decide(situation(current="0b7d2aa", releases=ordered, marks=m), Policy())
    assert v.target == "c41e9f0"
