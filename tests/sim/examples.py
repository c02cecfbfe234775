"""The defects of issue 22, each as a history the simulator runs (hand-written from the
defect's story; `make sim` finds them on its own too), and the cases that must stay as they are.

    python -m sim.examples [NAME...]      (from tests/, or `make sim-examples`)

runs them and prints, for each, the invariants it violates. An example of a defect names the
invariants that caught it (`catches`); once its defect is fixed (`fixed`), it has no violation,
and test_examples.py asserts that. A control (`catches` empty) must never have one.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

from sim.generate import RandomChoices, generate
from sim.history import (
    BackendFault,
    ClockStep,
    Crash,
    Deploy,
    EnvOutage,
    History,
    Human,
    Partition,
    Reload,
    Setup,
    SourceOutage,
    Tamper,
    Wait,
)
from sim.truth import Profile

GOOD = Profile()
BAD = Profile(error=0.3)


@dataclass(frozen=True)
class Example:
    name: str
    story: str
    history: History
    catches: tuple[str, ...] = ()  # the invariants this defect violated; () for a control
    fixed: bool = False  # its defect is fixed: the history violates nothing

    @property
    def kept(self) -> bool:
        """Whether test_examples.py runs it: a control, or a fixed defect."""
        return self.fixed or not self.catches


EXAMPLES: list[Example] = []


def example(name: str, story: str, history: History, catches: tuple[str, ...] = (), fixed: bool = False) -> None:
    EXAMPLES.append(Example(name, story, history, catches, fixed))


# 1 ----------------------------------------------------------------------------------------------
example(
    "d1-probe-failing-at-window-end",
    "A `failures: 3` probe rule has failed twice when r1's window ends (deploy seen at t+35, "
    "window to t+335; /health 503 from t+328): the window is not held, r1 becomes known-good, "
    "then the rule fires 'outside window'.",
    History(Setup(probe_failures=3, releases=(("r0", GOOD), ("r1", Profile(bad_after_s=296, bad_probe=True)))),
            (Deploy(30, "r1"),), tail=400),
    ("known_good_only_with_evidence",), fixed=True,
)

# 2, 2b -------------------------------------------------------------------------------------------
example(
    "d2-bad-fix-during-confirmation",
    "r1 is rolled back at t+70 (to r0); while the rollback is confirmed a fix r2, as bad, is "
    "deployed (t+73): the decider answers CONFIRMING, then halts 'r1 did not clear on r0', r2 live.",
    History(Setup(releases=(("r0", GOOD), ("r1", BAD), ("r2", BAD))), (Deploy(30, "r1"), Deploy(43, "r2")), tail=200),
    ("bad_release_rolled_back_or_told", "halt_is_true"), fixed=True,
)
example(
    "d2b-good-fix-during-confirmation",
    "The same race with a good fix r2: its rules clear, the confirmation calls the rollback "
    "verified and sets state.current back to r0 while r2 is live.",
    History(Setup(releases=(("r0", GOOD), ("r1", BAD), ("r2", GOOD))), (Deploy(30, "r1"), Deploy(43, "r2")), tail=200),
    ("state_agrees_with_backend",), fixed=True,
)

# 3, 3b -------------------------------------------------------------------------------------------
example(
    "d3-manual-rollback-under-a-deploys-lock",
    "r1 is known-good; r2 (bad) is deployed at t+400 under the deploy lock (restart 5 s, lock "
    "held 25 s); a human's `rollback` queued at t+402 is applied at the next tick: it sets "
    "state.current to r2 without a deploy and waits for the lock; r2 never gets a window.",
    History(Setup(releases=(("r0", GOOD), ("r1", GOOD), ("r2", BAD))),
            (Deploy(30, "r1"), Deploy(370, "r2", restart_s=5, settle_s=20), Human(2, "rollback")), tail=200),
    ("every_deploy_is_watched", "bad_release_rolled_back_or_told"), fixed=True,
)
example(
    "d3b-reconcile-after-a-deploy-while-down",
    "The watcher dies between the rollback's intent and its switch (t+70); while it is down r2 "
    "is deployed; at its start the reconcile finds r2 current ('not_switched') and sets "
    "state.current to it without a deploy: r2 is never watched.",
    History(Setup(releases=(("r0", GOOD), ("r1", BAD), ("r2", GOOD))),
            (Deploy(30, "r1"), Crash(1, at="backend switch", down_s=30), Deploy(44, "r2")), tail=200),
    ("every_deploy_is_watched",), fixed=True,
)

# 4 ----------------------------------------------------------------------------------------------
example(
    "d4-listing-fails-at-window-end",
    "A `failures: 3` probe rule fires on the window's last tick (t+330, window to t+335); the "
    "backend's listing fails once right then: WAIT; the next tick is outside the window.",
    History(Setup(probe_failures=3, releases=(("r0", GOOD), ("r1", Profile(bad_after_s=286, bad_probe=True)))),
            (Deploy(30, "r1"), BackendFault(270, what="releases")), tail=100),
    ("bad_release_rolled_back_or_told",), fixed=True,
)

# 5 ----------------------------------------------------------------------------------------------
example(
    "d5-cli-apply-after-a-clock-step",
    "The wall clock steps +3000 s at t+60 while r1 is in its window; the service dies at t+70; "
    "a human's `pause` is applied by the CLI alone (t+80), which saves the state with offset 0; "
    "the next start sees r1's window 3000 s shorter and marks it known-good at once.",
    History(Setup(releases=(("r0", GOOD), ("r1", GOOD))),
            (Deploy(30, "r1"), ClockStep(30, 3000.0), Crash(10, down_s=60), Human(10, "pause", seconds=600)),
            tail=300),
    ("watch_window_is_true",), fixed=True,
)

# 6 ----------------------------------------------------------------------------------------------
example(
    "d6-ack-then-death-before-persist",
    "A human's `pause` is taken and acknowledged at the tick of t+45 (request_done); the "
    "service dies in the same tick before it saves: the pause is gone at the next start.",
    History(Setup(releases=(("r0", GOOD),)), (Human(41, "pause", seconds=600), Crash(1, at="save")), tail=60),
    ("acknowledged_request_survives",), fixed=True,
)

# 7, 9 -------------------------------------------------------------------------------------------
FLEET = dict(hosts=2, fleet=True, known_good_hosts=1)
example(
    "d7-witness-clock-stepped-after-start",
    "web-2 started with its clock 300 s slow, NTP fixed it at t+20; it publishes tick_at in "
    "its steady time, so web-1 finds it stale: during a database outage on both hosts web-1 "
    "rolls back r1 (healthy), though web-2 on known-good r0 fires the same rule.",
    History(Setup(skews=(0.0, -300.0), releases=(("r0", GOOD), ("r1", GOOD)), **FLEET),
            (ClockStep(20, 300.0, host=1), Deploy(40, "r1"), EnvOutage(40, 300.0)), tail=100),
    ("no_false_rollback",), fixed=True,
)
example(
    "d9-witness-clock-two-minutes-slow",
    "web-2's clock is 2 minutes slow: web-1 finds it stale ('now - tick_at' on two hosts' "
    "clocks); during a database outage on both, r1 (healthy) is rolled back on web-1 and "
    "declared bad fleet-wide.",
    History(Setup(skews=(0.0, -120.0), releases=(("r0", GOOD), ("r1", GOOD)), **FLEET),
            (Deploy(60, "r1"), EnvOutage(40, 300.0)), tail=100),
    ("no_false_rollback",), fixed=True,
)

# 8 ----------------------------------------------------------------------------------------------
example(
    "d8-garbage-verdict-kills-the-sync-thread",
    "Somebody leaves a value that is not JSON under releases/r1/verdict; web-1 rolls r1 back and "
    "replaces it: its sync thread dies (AttributeError after the write); nobody is told.",
    History(Setup(releases=(("r0", GOOD), ("r1", BAD)), **FLEET),
            (Tamper(5, "verdict_garbage", "r1"), Deploy(25, "r1")), tail=120),
    ("fleet_trouble_is_said",), fixed=True,
)

# 10 ---------------------------------------------------------------------------------------------
example(
    "d10-good-verdict-with-wrong-types",
    "A 'good' verdict with wrong field types under releases/r5/verdict: `gate r5` says go.",
    History(Setup(releases=(("r0", GOOD),), **FLEET), (Tamper(5, "verdict_good_wrong_types", "r5"),), tail=30),
    ("etcd_values_checked",), fixed=True,
)
example(
    "d10b-member-without-a-lease",
    "A hosts/ghost key written without a lease: every host counts it as a live member, forever.",
    History(Setup(releases=(("r0", GOOD),), **FLEET), (Tamper(5, "member_no_lease"),), tail=30),
    ("etcd_values_checked",), fixed=True,
)

# found by the simulator ---------------------------------------------------------------------------
example(
    "n1-clock-step-then-restart-cuts-a-confirmation-short",
    "r1 is rolled back at t+70; while the rollback is confirmed (an outage keeps the rule from "
    "clearing on r0) the wall clock steps +3000 s, a tick saves the state with that offset, and "
    "the service restarts: the confirmation's bound was not moved with the other saved times, "
    "so it halted 'did not clear' at the first tick, long before its 75 s.",
    History(Setup(releases=(("r0", GOOD), ("r1", BAD))),
            (Deploy(30, "r1"), EnvOutage(41, 120.0), ClockStep(1, 3000.0), Crash(4, down_s=2.0)), tail=200),
    ("halt_is_true",), fixed=True,
)

example(
    "n2-the-restarts-last-scrape-after-the-lock",
    "r1 (healthy) is deployed under the deploy lock; its restart takes 20 s and the lock is let "
    "go a second after it is up. Prometheus scrapes every 15 s: for up to 15 s after the lock its "
    "newest `up` sample is one of the restart (0), and an `up` rule with `for: 0` rolled r1 back "
    "at the first tick after the lock: evidence of the deploy at work, not of the release.",
    History(Setup(scrape=15.0, up_for=0.0, releases=(("r0", GOOD), ("r1", GOOD))),
            (Deploy(32, "r1", restart_s=20.0, settle_s=1.0),), tail=400),
    ("no_false_rollback",), fixed=True,
)

example(
    "n3-a-deploy-during-the-verification",
    "r1 is rolled back at t+70 to r0, which takes 5 s to start; a deploy of r2 (without the "
    "lock, which the watcher does not hold while it verifies) lands a second later: the probes "
    "of the verification answer for r2, which never comes up, and the watcher halts 'r1 -> r0 "
    "did not verify' for a release it never switched to.",
    History(Setup(verify_every=2.0, releases=(("r0", Profile(start_s=5.0)), ("r1", BAD), ("r2", Profile(crashes=True)))),
            (Deploy(30, "r1"), Deploy(41, "r2", lock=False)), tail=200),
    ("halt_is_true",), fixed=True,
)

example(
    "n3b-the-rolled-back-release-shipped-again-during-the-verification",
    "The same race with a pipeline that ships r1 (which never comes up) again, under the lock, "
    "while r0 is verified: "
    "the probes answered for r1, and the watcher halted 'r1 -> r0 did not verify'.",
    History(Setup(verify_every=2.0, releases=(("r0", Profile(start_s=5.0)), ("r1", Profile(crashes=True)))),
            (Deploy(30, "r1"), Deploy(11, "r1")), tail=200),
    ("halt_is_true",), fixed=True,
)
example(
    "n4-ticks-in-step-with-a-flapping-release",
    "r1 fails 30% for 5 s, then 0% for 5 s; the watcher ticks every 10 s, Prometheus scrapes "
    "every second, `for: 10s`: the 4 s trailing window of every tick fell in the same half of "
    "the period (the clean one), so the firing it gates never came.",
    History(Setup(interval=10.0, scrape=1.0, errors_for=10.0, probe_failures=0,
                  releases=(("r0", GOOD), ("r1", Profile(error=0.0, flap_on_s=5, flap_off_s=5, flap_error=0.3)))),
            (Deploy(9.1, "r1", restart_s=0.5, settle_s=5.0),), tail=200),
    ("bad_release_rolled_back_or_told",), fixed=True,
)

example(
    "n5-a-lock-wait-of-the-release-before",
    "r1, deployed under a lock held a minute, fails its probe: the watcher waits for the lock "
    "(its window's clock stopped); the service dies (down 2 minutes), and r2 is deployed "
    "meanwhile. At the start the wait, recorded for r1, ended on r2's new window and moved its "
    "end by the whole time since r1's last tick.",
    History(Setup(probe_failures=1, releases=(("r0", GOOD), ("r1", Profile(crashes=True)), ("r2", GOOD))),
            (Deploy(31, "r1", settle_s=60.0), Crash(8, down_s=120.0), Deploy(60, "r2", lock=False)), tail=600),
    ("watch_window_is_true",), fixed=True,
)

example(
    "n6-the-previous-releases-errors-in-min-window",
    "r1 fails 30% of its requests; a human marks it good anyway; then r2, healthy, is deployed "
    "(without the lock). With `for: 0`, the first tick judged r2 on `[$window]` clamped to "
    "min_window (3 s), which still held r1's errors: r2 was rolled back, to r1.",
    History(Setup(interval=1.0, scrape=1.0, errors_for=0.0, probe_failures=0,
                  releases=(("r0", GOOD), ("r1", BAD), ("r2", GOOD))),
            (Deploy(10.5, "r1", lock=False), Human(0.2, "mark", release="r1", mark="good"),
             Deploy(60, "r2", lock=False, restart_s=0.5)), tail=120),
    ("no_false_rollback",), fixed=True,
)

example(
    "n7-a-clock-step-while-the-service-is-down",
    "r1 is in its window when the service dies (t+60); while it is down the wall clock steps "
    "+3000 s; the state it saved before carried no step (offset 0), so the next start took the "
    "step for 3000 s of downtime: r1's window was over at once, and r1 known-good.",
    History(Setup(releases=(("r0", GOOD), ("r1", GOOD))),
            (Deploy(30, "r1"), Crash(30, down_s=10.0), ClockStep(2, 3000.0)), tail=400),
    ("watch_window_is_true",), fixed=True,
)

example(
    "n8-a-probe-failing-on-two-hosts-in-step",
    "A database outage fails /health on both hosts at once; the probe rule (`failures: 3`) "
    "fires on both at the same tick. web-1, on known-good r0, reported nothing to the fleet "
    "until then (failing 1 and 2 of 3 was not breaching), so web-2 found no witness and rolled "
    "back r1, healthy.",
    History(Setup(interval=1.0, scrape=1.0, probe_failures=3, errors_for=60.0,
                  releases=(("r0", GOOD), ("r1", GOOD)), **FLEET),
            (Deploy(30, "r1", host=1), EnvOutage(60.5, 120.0, error=0.3, probes=True)), tail=200),
    ("no_false_rollback",), fixed=True,
)

example(
    "n9-a-manual-rollback-during-a-confirmation",
    "r2 is rolled back to r1 at t+440; while that is confirmed, a human rolls back by hand, "
    "r1 -> r0: when the rules cleared on r0, the first confirmation called r2 -> r1 verified "
    "and set state.current back to r1, r0 running.",
    History(Setup(releases=(("r0", GOOD), ("r1", GOOD), ("r2", BAD))),
            (Deploy(30, "r1"), Deploy(370, "r2"), Human(42, "rollback")), tail=200),
    ("state_agrees_with_backend",), fixed=True,
)

example(
    "n10-a-window-watched-while-the-service-was-down",
    "r1 is deployed; the watcher sees it, then dies and is down for the rest of its 60 s "
    "window. At its start the window was over and r1 known-good: the evidence share counted the "
    "few ticks it watched, not the window.",
    History(Setup(interval=1.0, scrape=5.0, watch_window=60.0, releases=(("r0", GOOD), ("r1", GOOD))),
            (Deploy(30.5, "r1", restart_s=1.0, settle_s=0.0), Crash(5, down_s=70.0)), tail=200),
    ("known_good_only_with_evidence",), fixed=True,
)

example(
    "n11-a-clock-step-on-the-deciding-host",
    "During a database outage on both hosts, web-2 (on r1) and web-1 (on known-good r0) breach "
    "together: a fleet-wide symptom. Then web-2's wall clock steps +1 h: web-1's membership, "
    "stamped on arrival with web-2's wall clock, looked an hour old, and web-2 rolled r1 back.",
    History(Setup(interval=5.0, scrape=2.0, errors_for=30.0, releases=(("r0", GOOD), ("r1", GOOD)), **FLEET),
            (Deploy(30, "r1", host=1), EnvOutage(30, 300.0, error=1.0), ClockStep(50, 3600.0, host=1)), tail=300),
    ("no_false_rollback",), fixed=True,
)

example(
    "n12-a-restart-off-the-ticks-grid-holds-a-breach",
    "r1 fails 20% of its requests; the service restarts (t+66.5) and ticks half a second off the "
    "grid of the tick that saw the deploy: `now - changed_at` (x.5 s) never reached `[$window]`, "
    "rounded up to whole seconds, so the breach was held 'before the change' until max_window "
    "(120 s) clamped the range, past r1's window (sim seed 1000226).",
    History(Setup(interval=2.0, scrape=1.0, watch_window=60.0, max_window=120.0, errors_for=20.0, probe_failures=0,
                  releases=(("r0", GOOD), ("r1", Profile(error=0.2)))),
            (Deploy(31, "r1", restart_s=5.0, settle_s=30.0), Crash(34.5, down_s=1.0)), tail=60),
    ("bad_release_rolled_back_or_told",), fixed=True,
)

example(
    "n13-a-lockless-redeploy-during-the-reads",
    "r1 (healthy) is deployed again, without the deploy lock, while a tick reads: `current` does "
    "not change, and that tick's probe sees the restart (connect error): r1 is rolled back. A "
    "lockless deploy's restart seen by a probe is the documented trade-off of no_false_rollback; "
    "the invariant missed it because the restart falls on the decision's instant (sim seed 1000367).",
    History(Setup(probe_failures=1, releases=(("r0", GOOD), ("r1", GOOD))),
            (Deploy(30, "r1"), Deploy(60, "r1", lock=False, restart_s=5.0, mid_tick=True)), tail=120),
    ("no_false_rollback",), fixed=True,
)

example(
    "n14-a-window-announced-while-the-service-was-down",
    "The service is down from t+27 to t+327; r1 (30% errors) is deployed and announced meanwhile: "
    "the CLI applies `mark deployed` alone, so r1's window runs unwatched to t+224.5. At the start "
    "Prometheus is down: the window ends unmarked ('not seen serving'), and the rule firing later "
    "is told 'outside window'. The invariant counted the window from the first tick after the "
    "start (sim seed 1000438).",
    History(Setup(interval=10.0, scrape=15.0, watch_window=120.0, errors_for=20.0, probe_failures=0,
                  releases=(("r0", GOOD), ("r1", BAD))),
            (Crash(26.9, down_s=300.0), Deploy(77.1, "r1", restart_s=0.5, settle_s=30.0, announce=True),
             SourceOutage(152.2, 120.0)), tail=300),
    ("bad_release_rolled_back_or_told",), fixed=True,
)

example(
    "n15-a-host-rolled-back-to-known-good-during-the-check",
    "An outage of every release fails /health on both hosts: web-1 (r6) and web-2 (r7), each in "
    "its window, fire at the same tick and both roll back to r0. No host was on a known-good "
    "release at the decision; the invariant judged web-1's rollback against web-2's state after "
    "web-2's own rollback (r0, health firing), as the check ran after the verifications: a "
    "witness no coordinator could have seen (sim seed 2000153).",
    History(Setup(hosts=2, interval=1.0, scrape=1.0, watch_window=600.0, max_window=120.0, up_for=30.0,
                  verify_attempts=6, verify_every=1.0, cooldown=600.0, max_auto_rollbacks=2, fleet=True, lease=15.0,
                  skews=(45.0, 0.0), releases=(("r0", Profile(error=0.005)), ("r6", Profile(error=0.01, start_s=3.0)),
                                               ("r7", Profile(error=0.02, start_s=0.5)))),
            (Deploy(30.1, "r6", host=0, restart_s=60.0, settle_s=1.0),
             Deploy(1.9, "r7", host=1, restart_s=2.0, settle_s=5.0, mid_tick=True, announce=True),
             EnvOutage(334.1, 30.0, error=1.0, probes=True)), tail=30),
    ("no_false_rollback",), fixed=True,
)

example(
    "n16-a-rollback-that-did-not-verify-kept-the-bad-releases-window",
    "r1 is marked good; r2 fails its probes 60 s after its deploy and is rolled back to r1, whose "
    "verification fails (r1 starts in 3 s, 3 probes 0.5 s apart): halted on r1. r2's window, "
    "deploy time and `[$window]` start stayed in the state on r1, so r1 deployed again (announced) "
    "showed r2's window still open on it, 21 min past r1's own (sim seed 2000354).",
    History(Setup(interval=15.0, scrape=1.0, watch_window=1800.0, max_window=120.0, probe_failures=3, up_for=0.0,
                  latency_for=0.0, verify_attempts=3, verify_every=0.5, known_good_hosts=1, skews=(-600.0,),
                  releases=(("r0", Profile(error=0.005)), ("r1", Profile(error=0.001, burst_s=2.0, burst_error=0.9, start_s=3.0)),
                            ("r2", Profile(error=0.005, bad_after_s=60.0, bad_probe=True)))),
            (Deploy(454.6, "r1", restart_s=2.0, settle_s=5.0), Human(21.9, "mark", release="r1", mark="good"),
             Deploy(1263.0, "r2", restart_s=0.5, settle_s=0.0),
             Deploy(1147.9, "r1", restart_s=2.0, settle_s=1.0, announce=True)), tail=30),
    ("watch_window_is_true",), fixed=True,
)

example(
    "n17-a-release-known-good-fleet-wide-restarted-without-the-lock",
    "r1 survives its window on web-1 (known_good_hosts 1): web-2 marks it good by the fleet. "
    "web-2 then deploys r1 without the lock, a 60 s restart: health and up fire and are told "
    "'r1 is known-good' (section 5, check 3). The invariant exempted a release known-good before "
    "the deploy only by a window passed on this host, not by the fleet's mark (sim seed 2000512).",
    History(Setup(hosts=2, interval=5.0, scrape=15.0, watch_window=60.0, max_window=60.0, errors_for=30.0,
                  probe_failures=3, up_for=0.0, verify_attempts=9, verify_every=3.0, cooldown=1800.0, lock_timeout=30.0,
                  fleet=True, lease=6.0, known_good_hosts=1, watch_delay=3.0, skews=(45.0, -600.0),
                  releases=(("r0", Profile(error=0.005)), ("r1", Profile(error=0.02)))),
            (Deploy(60.9, "r1", host=0, restart_s=0.5, settle_s=30.0, mid_tick=True),
             Deploy(124.1, "r1", host=1, lock=False, restart_s=60.0, settle_s=0.0)), tail=30),
    ("bad_release_rolled_back_or_told",), fixed=True,
)
example(
    "n18-a-flapping-release-let-go-by-the-lock-in-an-off-half",
    "r2 flaps 30% 10 s / 0% 10 s; its deploy holds the lock 90 s and lets it go in an \"off\" half: "
    "errors (for 0) is pending, held by its clean 3 s trailing window, and fires in the next \"on\" "
    "half 8 s later (section 4); the invariant gave it no time after the lock (sim seed 3000050).",
    History(Setup(hosts=2, interval=2.0, scrape=1.0, watch_window=300.0, max_window=60.0, errors_for=0.0,
                  probe_failures=0, up_for=10.0, verify_attempts=4, verify_every=3.0, cooldown=600.0, lock_timeout=30.0,
                  fleet=True, lease=15.0, known_good_hosts=2, skews=(-600.0, 0.0),
                  releases=(("r0", Profile(error=0.005)), ("r1", Profile(error=0.2, start_s=3.0)),
                            ("r2", Profile(error=0.0, flap_on_s=10.0, flap_off_s=10.0, flap_error=0.3, start_s=3.0)))),
            (Deploy(1670.5, "r2", host=1, restart_s=60.0, settle_s=30.0),), tail=120),
    ("bad_release_rolled_back_or_told",), fixed=True,
)

example(
    "n19-a-confirmation-judged-while-current-was-unreadable",
    "r1 is rolled back to r0 and the service crashes during the confirmation; while it is down "
    "r2..r5 are deployed. At its start the first tick cannot read `current` (an injected backend "
    "failure): it evaluated the last release seen, r0, on the probes of what really served (r5, "
    "under an outage), and halted 'health did not clear on r0'. The generated history of "
    "(sim seed 3000101), kept whole: its shrunk form was lost.",
    generate(RandomChoices(3000101)),
    ("halt_is_true",), fixed=True,
)

example(
    "n20-an-outage-the-quiet-old-host-could-not-see-in-the-error-ratio",
    "An outage of every release (30% errors, /health 503) while web-2 runs r2 in its window and "
    "web-1 the known-good r1 with no traffic at all (quiet hours). health fires on both: a fleet "
    "symptom, told. 36 s later errors fires on web-2, but web-1, with no requests, can never "
    "witness an error ratio: r2 was rolled back (to r0, as broken: did not verify) and declared bad "
    "fleet-wide. A rule no host on a known-good release can read (Member.unseen) now goes with the "
    "rules that do have witnesses (sim seed 3000594).",
    History(Setup(hosts=2, interval=2.0, scrape=1.0, watch_window=300.0, errors_for=20.0, probe_failures=3,
                  verify_attempts=4, verify_every=3.0, cooldown=600.0, fleet=True, lease=3.0, known_good_hosts=1,
                  skews=(-600.0, 45.0),
                  releases=(("r0", Profile(error=0.005)), ("r1", Profile(error=0.0, start_s=0.5, traffic=0.0)),
                            ("r2", Profile(error=0.01, start_s=3.0)))),
            (Deploy(3.8, "r1", host=0, restart_s=5.0, settle_s=5.0),
             Deploy(262.9, "r2", host=1, restart_s=60.0, settle_s=0.0, announce=True),
             EnvOutage(269.0, 120.0, error=0.3, probes=True)), tail=120),
    ("no_false_rollback",), fixed=True,
)
example(
    "n21-a-restarted-service-ran-the-dead-ones-ticks-too",
    "The service dies between two ticks and starts again 0.5 s later; the tick the dead process "
    "had scheduled still ran, on the new watcher, beside the new one's: two interleaved tick loops, "
    "one of which ticked in the middle of the other's rollback verification and took the rollback's "
    "own switch for a deploy. A defect of the simulator (a daemon runs one loop, one tick at a "
    "time: SimHost.tick), seen as state.current r0 with r2 current (sim seed 3001471).",
    History(Setup(interval=10.0, scrape=2.0, watch_window=120.0, errors_for=10.0, probe_failures=0, up_for=30.0,
                  verify_attempts=7, verify_every=3.0, max_auto_rollbacks=2, lease=3.0, known_good_hosts=1,
                  skews=(0.0,),
                  releases=(("r0", Profile(error=0.005)),
                            ("r1", Profile(error=0.02, flap_on_s=30.0, flap_off_s=15.0, flap_error=0.3)),
                            ("r2", Profile(error=0.005, bad_after_s=1700.0, bad_error=0.3, start_s=0.5)))),
            (EnvOutage(143.5, 120.0, error=1.0, probes=True), Crash(1.2, host=0, down_s=0.5),
             Deploy(25.5, "r1", lock=False, restart_s=0.5, settle_s=0.0), BackendFault(9.2, host=0, what="current", count=6),
             Deploy(50.2, "r2", restart_s=0.5, settle_s=30.0, announce=True)), tail=30),
    ("state_agrees_with_backend",), fixed=True,
)

example(
    "n22-a-deploy-during-a-manual-rollbacks-verification",
    "A human's `rollback` r3 -> r0 is applied at the tick of t+3762 and verified in 3 s sleeps; "
    "r6 is deployed 0.4 s into the first. The verification is superseded and the same tick sees "
    "r6, but opened its window at the tick's start, before the deploy: 1797 s of 1800 "
    "(sim seed 3000810).",
    History(Setup(interval=1.0, scrape=1.0, watch_window=1800.0, errors_for=20.0, latency_for=30.0,
                  verify_attempts=10, verify_every=3.0, max_auto_rollbacks=2, lock_timeout=300.0, lease=15.0,
                  known_good_hosts=1, watch_delay=3.0, skews=(0.0,),
                  releases=(("r0", Profile(error=0.005)), ("r3", Profile(error=0.005, start_s=3.0)),
                            ("r6", Profile(error=0.001, start_s=0.5)))),
            (Deploy(1590.1, "r3", restart_s=60.0, settle_s=5.0, mid_tick=True),
             Human(1526.1, "mark", release="r3", mark="good"), Human(645.8, "rollback"),
             Deploy(0.4, "r6", restart_s=20.0, settle_s=0.0)), tail=30),
    ("watch_window_is_true",), fixed=True,
)

example(
    "n23-garbage-over-a-bad-verdict-the-host-acted-on",
    "web-1 rolls r1 back and declares it bad fleet-wide; somebody overwrites the verdict with "
    "garbage; r1 deployed on web-2 is rolled back on the bad verdict its fleet cache kept (nothing "
    "replaces bad). A defect of the invariant, which judged the verdict by the last writer of the key "
    "instead of what the host had read (sim seed 4000038).",
    History(Setup(hosts=2, interval=10.0, scrape=1.0, max_window=120.0, errors_for=20.0, probe_failures=0,
                  up_for=0.0, verify_attempts=3, verify_every=1.0, cooldown=600.0, fleet=True, lease=15.0,
                  known_good_hosts=1, watch_delay=0.5, skews=(0.0, 0.0),
                  releases=(("r0", Profile(error=0.005)),
                            ("r1", Profile(error=0.01, bad_after_s=60.0, bad_latency=0.8, start_s=0.5)),
                            ("r2", Profile(error=0.005, start_s=3.0)))),
            (Deploy(85.5, "r1", lock=False, restart_s=5.0, settle_s=0.0), Tamper(1036.9, "verdict_garbage", "r1"),
             Deploy(418.4, "r1", host=1, lock=True, restart_s=2.0, settle_s=0.0)), tail=30),
    ("no_false_rollback",), fixed=True,
)
example(
    "n24-a-deploys-restart-under-the-lock-witnessed-an-outage",
    "r2 crashes on web-1 (health fails from t+1090); web-2 takes the deploy lock and switches to r3 "
    "during its tick's reads: its probe meets r3's restart, and its membership said 'r0 (known-good) "
    "breaching health'. web-1 took that for a fleet-wide symptom and held r2 back a tick. Under the "
    "lock a membership now names no breach and every rollback rule unseen (sim seed 4000618).",
    History(Setup(hosts=2, interval=10.0, scrape=1.0, watch_window=600.0, max_window=120.0, errors_for=0.0,
                  probe_failures=3, verify_attempts=2, verify_every=3.0, cooldown=60.0, max_auto_rollbacks=2,
                  fleet=True, known_good_hosts=1, watch_delay=0.5, skews=(0.0, 45.0),
                  releases=(("r0", Profile(error=0.005)), ("r1", Profile(error=0.0, start_s=0.5)),
                            ("r2", Profile(error=0.01, crashes=True)), ("r3", Profile(error=0.08, start_s=3.0)),
                            ("r4", Profile(error=0.005, bad_after_s=60.0, bad_latency=0.8, start_s=3.0)),
                            ("r5", Profile(error=0.0)),
                            ("r6", Profile(error=0.02, bad_after_s=60.0, bad_latency=0.8, start_s=0.5)),
                            ("r7", Profile(error=0.001, start_s=3.0)))),
            (Deploy(1087.6, "r2", lock=False, restart_s=20.0, settle_s=1.0),
             Deploy(2.4, "r3", host=1, lock=True, restart_s=0.5, settle_s=1.0, mid_tick=True)), tail=30),
    ("bad_release_rolled_back_or_told",), fixed=True,
)

example(
    "n25-an-outage-reached-the-probe-here-a-moment-first",
    "An outage of every release, seen in `errors` on both hosts (a fleet-wide symptom: r5 is not "
    "rolled back), begins failing /health too: web-2 (on r5) probes 0.1 s before web-1 (on the "
    "known-good r0), `failures: 1`, and web-1's report travels a 3 s watch. health had no witness "
    "yet, and the healthy r5 was rolled back. While another rule is a fleet-wide symptom, a rule "
    "younger than max_window + interval + 5 s now waits for the other hosts (sim seed 1000056, "
    "found by an aimed outage).",
    History(Setup(hosts=2, interval=1.0, scrape=15.0, max_window=120.0, errors_for=10.0, probe_failures=1,
                  verify_attempts=8, verify_every=3.0, cooldown=600.0, max_auto_rollbacks=2, lock_timeout=300.0,
                  fleet=True, lease=15.0, known_good_hosts=2, watch_delay=3.0, skews=(120.0, 120.0),
                  releases=(("r0", Profile(error=0.005)),
                            ("r1", Profile(error=0.0, flap_on_s=5.0, flap_off_s=2.5, flap_error=0.3)),
                            ("r2", Profile(error=0.01, bad_after_s=590.0, bad_probe=True)),
                            ("r3", Profile(error=0.005, bad_after_s=1790.0, bad_probe=True, start_s=0.5)),
                            ("r4", Profile(error=0.01, bad_after_s=0.0, bad_latency=2.0, start_s=3.0)),
                            ("r5", Profile(error=0.001)), ("r6", Profile(error=0.2)),
                            ("r7", Profile(error=0.001, bad_after_s=10.0, bad_probe=True)),
                            ("r8", Profile(error=0.01, bad_after_s=250.0, bad_probe=True, start_s=0.5)))),
            (Deploy(837.3, "r5", host=1, restart_s=2.0, settle_s=1.0),
             EnvOutage(113.7, 120.0, error=0.3), EnvOutage(32.8, 600.0, error=1.0, probes=True)), tail=120),
    ("no_false_rollback",), fixed=True,
)

example(
    "n26-the-old-hosts-ratio-crossed-later-than-the-new-releases",
    "An outage of every release (60% errors, /health 503): /health fires on both hosts, a fleet-wide "
    "symptom; on web-2, `errors` over r1's young window crosses 10% at once and fires after its 10 s, "
    "while web-1's `[$window]` (max_window, 120 s) crossed 8 s before and its report was still on "
    "a 3 s watch. r1 was rolled back, did not verify, halted, declared bad fleet-wide. While "
    "another rule is a fleet-wide symptom, a rule younger than max_window + interval + 5 s now "
    "waits (sim seed 5001233, aimed outage).",
    History(Setup(hosts=2, interval=2.0, scrape=2.0, watch_window=1800.0, max_window=120.0, errors_for=10.0,
                  up_for=0.0, latency_for=0.0, verify_attempts=4, verify_every=1.0, cooldown=60.0, lock_timeout=30.0,
                  fleet=True, lease=3.0, known_good_hosts=1, watch_delay=3.0, skews=(-120.0, 0.0),
                  releases=(("r0", Profile(error=0.005)), ("r1", Profile(error=0.0)), ("r2", Profile(crashes=True)),
                            ("r3", Profile(error=0.2, start_s=0.5)), ("r4", Profile(error=0.0)),
                            ("r5", Profile(error=0.0, start_s=0.5)), ("r6", Profile(error=0.005, start_s=0.5)),
                            ("r7", Profile(error=0.0, start_s=0.5)), ("r8", Profile(error=0.0, start_s=0.5)))),
            (EnvOutage(98.3, 30.0, error=0.6, probes=True), Deploy(5.0, "r1", host=1, restart_s=5.0, announce=True)),
            tail=30),
    ("no_false_rollback",), fixed=True,
)
example(
    "n27-garbage-over-a-good-verdict-the-hosts-had-read",
    "r1 survives its window on web-2, which declares it good fleet-wide; 3 s later somebody "
    "overwrites the verdict with a truncated write; web-1 and web-3, which had read the good verdict, "
    "mark r1 good at their next tick. A defect of the invariant, which judged the mark by the last "
    "write at check time, not what was there before the mark (sim seed 5000191; n23 for a bad one).",
    History(Setup(hosts=3, interval=10.0, scrape=15.0, watch_window=120.0, errors_for=0.0, latency_for=30.0,
                  verify_attempts=2, verify_every=0.5, lock_timeout=30.0, fleet=True, known_good_hosts=1,
                  skews=(-600.0, -600.0, 0.0),
                  releases=(("r0", Profile(error=0.005)), ("r1", Profile(error=0.001, start_s=0.5)),
                            ("r2", Profile(error=0.001, start_s=0.5)))),
            (Deploy(379.9, "r1", host=1, settle_s=30.0, announce=True), Tamper(123.3, "verdict_truncated", "r1")),
            tail=30),
    ("fleet_marks_checked",), fixed=True,
)

example(
    "n28-a-rollback-intent-whose-save-failed",
    "r1 restarts for 60 s without the deploy lock; `health` fails (the documented trade-off) and the "
    "watcher journals its rollback intent, then dies in the state's save: nothing is switched and "
    "r1 is never marked bad (rollback.py saves before it switches). Its successor watches r1 afresh, "
    "and r1, healthy, passes its window. A defect of the invariant, which counted the journaled "
    "intent as a bad mark (sim seed 5000326).",
    History(Setup(interval=10.0, scrape=1.0, max_window=30.0, probe_failures=1, up_for=0.0, verify_attempts=7,
                  verify_every=1.0, cooldown=600.0, lock_timeout=300.0, lease=15.0, known_good_hosts=1, skews=(0.0,),
                  releases=(("r0", Profile(error=0.005)),
                            ("r1", Profile(error=0.02, bad_after_s=1700.0, bad_error=0.3, start_s=0.5)),
                            ("r2", Profile(error=0.02, start_s=3.0)),
                            ("r3", Profile(bad_after_s=1790.0, bad_probe=True, start_s=3.0)),
                            ("r4", Profile(error=0.001, bad_after_s=0.0, bad_latency=0.8, start_s=0.5)),
                            ("r5", Profile(error=0.3)),
                            ("r6", Profile(error=0.005, bad_after_s=120.0, bad_error=0.3, start_s=3.0)),
                            ("r7", Profile(error=0.02, bad_after_s=60.0, bad_latency=2.0, start_s=3.0)),
                            ("r8", Profile(error=0.001, bad_after_s=60.0, bad_latency=0.8)), ("r9", Profile(crashes=True)))),
            (Crash(78.8, step=14, down_s=60.0), Deploy(52.4, "r1", lock=False, restart_s=60.0, settle_s=5.0)),
            tail=600),
    ("known_good_only_with_evidence",), fixed=True,
)
example(
    "n29-a-deploy-the-watcher-could-not-read-yet",
    "r2 (100% errors) is deployed while the service is down; the first ticks after its start cannot "
    "read `current` (the link is broken 3 times), and the deploy is seen at t+129. The invariant "
    "counted the window and the rule's `[$window]` hold from the first tick after the deploy, which "
    "saw nothing (sim seed 5000535). A defect of the invariant.",
    History(Setup(watch_window=60.0, errors_for=0.0, probe_failures=1, up_for=0.0, latency_for=0.0, verify_attempts=8,
                  verify_every=0.5, max_auto_rollbacks=2, known_good_hosts=1, watch_delay=0.5, skews=(45.0,),
                  releases=(("r0", Profile(error=0.005)), ("r1", Profile(error=0.0)),
                            ("r2", Profile(error=1.0, start_s=3.0)))),
            (Crash(54.0, down_s=60.0), Deploy(28.4, "r2", restart_s=5.0), BackendFault(2.8, what="broken", count=3)),
            tail=120),
    ("bad_release_rolled_back_or_told",), fixed=True,
)

example(
    "n30-the-rollbacks-target-deployed-while-the-service-was-down",
    "A human's `rollback` r0 -> r1 dies at the switch; while the service is down (300 s) the deploy "
    "tool ships r1 without the lock. On disk that is the rollback's own switch: the restart "
    "reconciles it as done and r1, known-good as every target, gets no window of its own. The "
    "documented price (docs/design.md section 5); the invariant now accepts it (sim seed 6000480).",
    History(Setup(interval=15.0, scrape=1.0, watch_window=180.0, max_window=120.0, errors_for=20.0, probe_failures=0,
                  up_for=30.0, verify_every=0.5, cooldown=60.0, known_good_hosts=1, watch_delay=3.0, skews=(0.0,),
                  releases=(("r0", Profile(error=0.005)), ("r1", Profile(start_s=0.5)), ("r2", Profile(start_s=3.0)))),
            (Deploy(277.9, "r1", restart_s=5.0), Deploy(1086.4, "r0", restart_s=5.0, settle_s=0.0),
             Crash(16.1, down_s=300.0, at="backend switch"), Human(36.1, "rollback"),
             Deploy(185.4, "r1", lock=False, restart_s=20.0, settle_s=0.0)), tail=300),
    ("every_deploy_is_watched",), fixed=True,
)
example(
    "n31-a-witness-on-a-release-the-fleet-called-bad",
    "web-1's own outage rolls back r5; web-2 runs r4, which a human marked good there but the fleet "
    "had declared bad, and fires `errors` on r4's own 20%. The watcher does not count a host on a "
    "release bad fleet-wide as a witness; the invariant did (sim seed 6001169).",
    History(Setup(hosts=2, interval=1.0, watch_window=120.0, max_window=120.0, errors_for=0.0, probe_failures=1,
                  up_for=0.0, verify_attempts=2, verify_every=3.0, cooldown=600.0, fleet=True, lease=15.0,
                  known_good_hosts=1, watch_delay=0.5, skews=(-600.0, -120.0),
                  releases=(("r0", Profile(error=0.005)), ("r1", Profile(error=0.6, start_s=0.5)),
                            ("r2", Profile(error=0.02, bad_after_s=60.0, bad_latency=2.0)), ("r3", Profile(start_s=0.5)),
                            ("r4", Profile(error=0.2, start_s=3.0)), ("r5", Profile(error=0.02, start_s=0.5)),
                            ("r6", Profile(error=0.005, bad_after_s=120.0, bad_error=0.3)),
                            ("r7", Profile(bad_after_s=590.0, bad_probe=True, start_s=3.0)),
                            ("r8", Profile(error=0.005, flap_on_s=10.0, flap_off_s=10.0, flap_error=0.5)))),
            (Crash(97.0, down_s=300.0, at="journal rollback_intent"),
             Deploy(1.5, "r1", lock=False, restart_s=20.0, settle_s=30.0), EnvOutage(129.7, 600.0, error=1.0, host=0),
             Deploy(0.7, "r4", host=1), Human(47.8, "mark", host=1, release="r4", mark="good"),
             Deploy(52.5, "r2", host=1, lock=False, restart_s=5.0, settle_s=5.0),
             Deploy(23.9, "r5", restart_s=60.0, settle_s=30.0)), tail=120),
    ("no_false_rollback",), fixed=True,
)

example(
    "n32-two-releases-slow-at-once-one-just-blessed",
    "r1 on web-2 passes its window at t+66 and turns slow (p95 2 s) at once; r3 on web-1, slow from "
    "its start, fires `latency` at t+68. web-2 is on a known-good release and breaches the same rule "
    "at the same time: 'fleet-wide symptom' is the documented answer, whatever made web-2 breach. "
    "The invariant accepted it only for outages and restarts (sim seed 7000372).",
    History(Setup(hosts=2, interval=2.0, scrape=2.0, watch_window=60.0, errors_for=10.0, probe_failures=1, up_for=30.0,
                  latency_for=0.0, verify_attempts=3, verify_every=1.0, cooldown=600.0, lock_timeout=30.0, fleet=True,
                  watch_delay=3.0, skews=(-120.0, 45.0),
                  releases=(("r0", Profile(error=0.005)), ("r1", Profile(bad_after_s=60.0, bad_latency=2.0)),
                            ("r2", Profile(error=0.005, start_s=0.5)),
                            ("r3", Profile(error=0.02, bad_after_s=0.0, bad_latency=2.0)),
                            ("r4", Profile(error=0.0, start_s=0.5, traffic=0.0)), ("r5", Profile(error=0.6, start_s=3.0)))),
            (Deploy(3.8, "r1", host=1, mid_tick=True, announce=True), Deploy(6.2, "r2", restart_s=20.0, settle_s=30.0),
             Deploy(30.4, "r3", lock=False, settle_s=30.0, mid_tick=True), BackendFault(0.1, count=6)), tail=120),
    ("bad_release_rolled_back_or_told",), fixed=True,
)
example(
    "n33-a-rollback-that-died-before-journaling-its-switch",
    "A rollback r4 -> r0 dies right after the switch, before journaling it; the restart reconciles "
    "and confirms; errors (an outage of every release) do not clear on r0: halted. The invariant "
    "took an older rollback's switch for this one's and called r4's deploy, before it, 'during "
    "the confirmation' (sim seed 7000909).",
    History(Setup(interval=2.0, scrape=2.0, watch_window=120.0, errors_for=20.0, probe_failures=3, latency_for=30.0,
                  verify_attempts=9, verify_every=0.5, max_auto_rollbacks=2, lease=15.0, known_good_hosts=1,
                  skews=(-600.0,),
                  releases=(("r0", Profile(error=0.005)), ("r1", Profile()), ("r2", Profile(error=0.02, start_s=0.5)),
                            ("r3", Profile(start_s=0.5)), ("r4", Profile(error=0.001, start_s=3.0)),
                            ("r5", Profile(error=0.02, bad_after_s=60.0, bad_probe=True)),
                            ("r6", Profile(error=0.001, bad_after_s=250.0, bad_probe=True)), ("r7", Profile(error=0.3)),
                            ("r8", Profile(error=0.3)),
                            ("r9", Profile(error=0.0, flap_on_s=5.0, flap_off_s=5.0, flap_error=0.5, start_s=3.0)))),
            (Deploy(41.6, "r2", lock=False, restart_s=60.0, settle_s=5.0, mid_tick=True),
             Deploy(5.8, "r4", restart_s=20.0, settle_s=5.0), EnvOutage(1.8, 600.0, error=0.6),
             Crash(77.0, at="journal rollback_switched")), tail=120),
    ("halt_is_true",), fixed=True,
)

example(
    "n34-a-witness-under-the-deploy-lock",
    "An outage of every release fails /health everywhere. web-2 redeploys r0 under the deploy lock "
    "(a 60 s restart); web-1's r2 fires /health once its own lock is let go. web-2's membership, "
    "written under the lock, names no breach and every rule unseen (n24): the watcher rolls back "
    "alone, as designed. The invariant still counted web-2's breach as a witness (sim seed "
    "8000792).",
    History(Setup(hosts=2, interval=10.0, watch_window=120.0, max_window=30.0, errors_for=10.0, probe_failures=1,
                  up_for=30.0, latency_for=0.0, verify_attempts=2, verify_every=1.0, max_auto_rollbacks=2,
                  lock_timeout=30.0, fleet=True, lease=15.0, watch_delay=0.5, skews=(-120.0, 0.0),
                  releases=(("r0", Profile(error=0.005)), ("r1", Profile(error=0.0, start_s=3.0, traffic=0.0)),
                            ("r2", Profile(error=0.0, start_s=0.5, traffic=0.0)),
                            ("r3", Profile(error=0.001, bad_after_s=0.0, bad_latency=2.0, start_s=0.5)),
                            ("r4", Profile(error=0.02, bad_after_s=30.0, bad_error=0.3, start_s=0.5)),
                            ("r5", Profile(error=0.02, bad_after_s=280.0, bad_error=0.6, start_s=0.5)),
                            ("r6", Profile(error=0.001, start_s=3.0)), ("r7", Profile(error=0.0, start_s=0.5)),
                            ("r8", Profile(crashes=True)))),
            (EnvOutage(2.4, 600.0, error=1.0, probes=True), Deploy(101.8, "r7", host=1, restart_s=60.0, settle_s=0.0),
             Deploy(44.0, "r0", host=1, restart_s=60.0, settle_s=0.0), Deploy(30.0, "r2", restart_s=20.0, settle_s=5.0)),
            tail=120),
    ("no_false_rollback",), fixed=True,
)

example(
    "n35-a-redeploy-announced-reopens-the-window",
    "A human rolls r2 back to r1; later the deploy hook runs `mark deployed r1` for a redeploy of "
    "r1 (the link does not change): the watcher opens r1's window again, as designed. The invariant "
    "counted the window from r1's first deploy, 600 s before (sim seed 9002536).",
    History(Setup(interval=10.0, watch_window=600.0, max_window=30.0, errors_for=120.0, probe_failures=3, up_for=0.0,
                  verify_attempts=2, verify_every=1.0, cooldown=60.0, lock_timeout=30.0, lease=15.0, known_good_hosts=1,
                  watch_delay=3.0, skews=(-120.0,),
                  releases=(("r0", Profile(error=0.005)), ("r1", Profile(error=0.005, start_s=3.0)),
                            ("r2", Profile(error=0.005, bad_after_s=0.0, bad_latency=2.0, start_s=0.5)),
                            ("r3", Profile(error=0.02)),
                            ("r4", Profile(error=0.001, bad_after_s=60.0, bad_latency=2.0, start_s=0.5)),
                            ("r5", Profile(error=0.0, traffic=0.0)))),
            (Crash(18.6), Deploy(356.0, "r1", lock=False, restart_s=5.0, settle_s=30.0),
             Deploy(0.5, "r2", restart_s=60.0, settle_s=5.0), Human(337.0, "rollback", to="r1"),
             Human(258.3, "deployed", release="r1"), Deploy(18.9, "r1", restart_s=60.0, settle_s=30.0)), tail=120),
    ("watch_window_is_true",), fixed=True,
)

example(
    "n36-a-window-not-held-while-prometheus-was-blind",
    "r1 is slow from its start; its deploy holds the lock for its 60 s restart while Prometheus "
    "does not answer (120 s). The watcher holds a window for a rule it sees firing under the lock, "
    "not for one it cannot read: the window ends unblessed (no evidence) and the latency breach, "
    "read at last, is told 'outside window'. The invariant extended the window for every tick the "
    "release breached under the lock, seen or not (sim seed 9003320).",
    History(Setup(interval=1.0, watch_window=120.0, max_window=30.0, errors_for=60.0, probe_failures=0, up_for=30.0,
                  latency_for=0.0, verify_attempts=2, verify_every=1.0, cooldown=600.0, max_auto_rollbacks=2,
                  lock_timeout=30.0, lease=3.0, known_good_hosts=1, skews=(0.0,),
                  releases=(("r0", Profile(error=0.005)), ("r1", Profile(error=0.001, bad_after_s=0.0, bad_latency=0.8)),
                            ("r2", Profile(crashes=True)),
                            ("r3", Profile(error=0.02, flap_on_s=1.0, flap_off_s=2.0, flap_error=0.5)),
                            ("r4", Profile(error=0.005, start_s=3.0)))),
            (Deploy(118.7, "r1", restart_s=60.0), SourceOutage(1.2, 120.0)), tail=300),
    ("bad_release_rolled_back_or_told",), fixed=True,
)

example(
    "n37-a-deploy-during-the-reads-of-a-confirmation",
    "r1 is rolled back to r0 at t+55 and confirmed. At t+70 the tool switches to "
    "r1 during the tick's reads (`deploy_during_tick`: nothing decided), then redeploys r0 without "
    "the lock, a 60 s restart. The next tick reads r0, the confirmation's own target, so it goes on "
    "and halted 'up did not clear on r0' on r0's restart. Fixed: a deploy seen during a tick's "
    "reads ends a confirmation as superseded, as a deploy seen at a tick's start does (sim seed "
    "9002203).",
    History(Setup(watch_window=60.0, max_window=30.0, errors_for=10.0, up_for=0.0, latency_for=30.0, verify_every=1.0,
                  cooldown=60.0, lease=15.0, known_good_hosts=1, skews=(0.0,),
                  releases=(("r0", Profile(error=0.005)),
                            ("r1", Profile(error=0.001, burst_s=6.0, burst_error=0.3, start_s=0.5)),
                            ("r2", Profile(error=0.001, bad_after_s=0.0, bad_latency=2.0, start_s=3.0)))),
            (Human(37.4, "rollback", to="r2"), Deploy(3.2, "r2", restart_s=5.0, settle_s=0.0),
             Deploy(2.0, "r1", lock=False, restart_s=20.0, settle_s=0.0), Human(8.4, "resume"),
             Deploy(2.8, "r1", mid_tick=True, announce=True), SourceOutage(9.6, 600.0),
             Deploy(5.6, "r0", lock=False, restart_s=60.0, settle_s=30.0, announce=True),
             Deploy(7.3, "r0", restart_s=60.0, settle_s=5.0, mid_tick=True)), tail=360),
    ("halt_is_true",), fixed=True,
)

example(
    "n38-a-probe-count-lost-in-a-crashed-save",
    "r3 fails /health from its start (`failures: 3`, 5 s ticks). The service dies in the save of "
    "the second failing tick and is back 0.5 s later: that failure is lost, and the third in a row "
    "comes one tick later than three ticks after the first. The invariant counted `failures` as "
    "seconds, and a crashed tick as one of them (sim seed 10001065).",
    History(Setup(scrape=2.0, watch_window=120.0, errors_for=10.0, probe_failures=3, verify_attempts=9,
                  verify_every=3.0, lease=15.0, known_good_hosts=1, skews=(45.0,),
                  releases=(("r0", Profile(error=0.005)),
                            ("r1", Profile(error=0.005, bad_after_s=60.0, bad_latency=0.8, start_s=3.0)),
                            ("r2", Profile(error=0.005, burst_s=15.0, burst_error=0.3)),
                            ("r3", Profile(error=0.3, start_s=3.0)))),
            (Deploy(166.5, "r3", lock=False, restart_s=60.0, settle_s=5.0), Crash(7.2, down_s=0.5, at="save")),
            tail=30),
    ("bad_release_rolled_back_or_told",), fixed=True,
)

example(
    "n39-an-outage-of-every-host-over-one-hosts-own",
    "web-3 has its own outage (60% errors, /health fine) when an outage of every host begins (30% "
    "errors, /health failing). The simulator answered from the first active outage only, so "
    "web-3's /health passed: `health` had no witness, and the hosts on new releases rolled back "
    "when its grace ran out (sim seed 10000356). Outages at the same moment now add up.",
    History(Setup(hosts=3, interval=15.0, scrape=2.0, watch_window=1800.0, errors_for=0.0, probe_failures=3,
                  up_for=30.0, verify_every=3.0, cooldown=60.0, max_auto_rollbacks=2, lock_timeout=300.0, fleet=True,
                  skews=(0.0, 120.0, -600.0),
                  releases=(("r0", Profile(error=0.005)), ("r1", Profile(error=0.0)),
                            ("r2", Profile(error=0.005, burst_s=2.0, burst_error=0.3)),
                            ("r3", Profile(error=0.001, start_s=0.5)))),
            (Deploy(494.9, "r1", host=1, restart_s=0.5, settle_s=30.0), EnvOutage(10.8, 600.0, error=0.6, host=2),
             Deploy(219.1, "r2", restart_s=20.0, settle_s=0.0, announce=True),
             Deploy(166.4, "r3", host=2, restart_s=0.5, settle_s=0.0),
             EnvOutage(39.7, 120.0, error=0.3, probes=True)), tail=120),
    ("no_false_rollback",), fixed=True,
)

example(
    "n40-a-flapping-release-deployed-while-the-service-was-down",
    "r1 fails 30% of requests for 30 s, then 0% for 15 s. It is deployed while the service is down "
    "(a crash, back 300 s later); the restarted service sees it at t+380, in an 'off' half, and "
    "its `[$window]` opens there: the first tick's breach is held (the clamped range reaches "
    "before the deploy was seen), the next reads 0%, and it fires in the next 'on' half (t+410). "
    "The invariant gave the 'off' half only to a window whose evidence the deploy lock had "
    "discarded (sim seed 11000017).",
    History(Setup(interval=10.0, scrape=2.0, watch_window=120.0, max_window=120.0, errors_for=0.0, latency_for=0.0,
                  verify_attempts=4, verify_every=1.0, lock_timeout=30.0, known_good_hosts=1, skews=(0.0,),
                  releases=(("r0", Profile(error=0.005)),
                            ("r1", Profile(error=0.0, flap_on_s=30.0, flap_off_s=15.0, flap_error=0.3, start_s=0.5)))),
            (Crash(69.8, down_s=300.0, at="take requests"), Reload(18.1, mode="shadow"), Human(11.5, "rollback"),
             Deploy(66.6, "r1", settle_s=5.0), Wait(7.4)), tail=420),
    ("bad_release_rolled_back_or_told",), fixed=True,
)

example(
    "n41-a-halted-watcher-blessed-a-release-failing-its-probe",
    "The watcher is halted (r5's rollback did not verify). r4 is deployed without the deploy lock "
    "(a 20 s restart) and deployed again 26 s later (a 60 s restart): /health fires twice in its "
    "window and the halted watcher acts not. Each tick counted as evidence because the 5xx ratio "
    "read a real number, and r4 became known-good when the probe cleared, though it served 45 s "
    "of its 125 s window. A tick on which a rollback rule fires is no evidence now (sim seed "
    "12001124, the final run).",
    History(Setup(hosts=3, scrape=1.0, watch_window=120.0, probe_failures=3, latency_for=30.0, verify_attempts=2,
                  verify_every=0.5, cooldown=600.0, lock_timeout=300.0, fleet=True, lease=15.0, known_good_hosts=3,
                  skews=(45.0, 0.0, -600.0),
                  releases=(("r0", Profile(error=0.005)), ("r1", Profile(error=1.0, start_s=3.0)),
                            ("r2", Profile(error=0.3, start_s=0.5)), ("r3", Profile(crashes=True)),
                            ("r4", Profile(error=0.005, bad_after_s=120.0, bad_error=0.3, start_s=3.0)),
                            ("r5", Profile(error=0.001, bad_after_s=10.0, bad_probe=True, start_s=3.0)))),
            (Deploy(230.6, "r5", lock=False, settle_s=30.0),
             Deploy(85.4, "r4", lock=False, restart_s=20.0, settle_s=5.0, mid_tick=True),
             Deploy(23.7, "r4", lock=False, restart_s=60.0)), tail=120),
    ("known_good_only_with_evidence",), fixed=True,
)

example(
    "n42-a-deploy-during-a-verification-the-backend-could-not-see",
    "r2 fails /health during an outage and is rolled back to r0, which fails it too (the outage). "
    "During the verification the tool deploys r3, and the backend cannot read `current` (six "
    "injected failures): the verification's last look failed, and the watcher halted 'did not "
    "verify' without a word of it. It looks once more now, and says in the halt that the backend "
    "could not tell (a deploy may have landed); with one failed look it sees the deploy and the "
    "rollback is superseded (tests/service/test_verify_landed.py) (sim seed 12001760).",
    History(Setup(interval=1.0, scrape=15.0, errors_for=10.0, probe_failures=1, up_for=0.0, verify_attempts=7,
                  verify_every=3.0, max_auto_rollbacks=2, lease=3.0, known_good_hosts=1, watch_delay=3.0,
                  skews=(-120.0,),
                  releases=(("r0", Profile(error=0.005)), ("r1", Profile(error=0.3, start_s=0.5)),
                            ("r2", Profile(error=0.2)), ("r3", Profile(error=0.6, start_s=0.5)))),
            (Deploy(268.1, "r2", restart_s=0.5, settle_s=5.0), EnvOutage(1.6, 600.0, error=0.6, probes=True),
             BackendFault(25.8, what="broken", count=6), Deploy(0.2, "r3", settle_s=0.0)), tail=30),
    ("halt_is_true",), fixed=True,
)

example(
    "n43-a-probe-breach-at-the-window-ends-very-instant",
    "r3's /health fails from the exact moment its window ends (aimed); the probe of that tick "
    "answers healthy, since the truth asks `age >= after` and the invariant asked `t >= ready + "
    "after`, which differ in the last bit. The release is blessed, and the failure told 'outside "
    "window' three ticks later, as d1's window rule allows (sim seed 13000624).",
    History(Setup(hosts=2, interval=1.0, scrape=1.0, watch_window=120.0, max_window=30.0, errors_for=120.0,
                  probe_failures=3, verify_attempts=2, verify_every=0.5, cooldown=60.0, lock_timeout=30.0, fleet=True,
                  watch_delay=3.0, skews=(0.0, 0.0),
                  releases=(("r0", Profile(error=0.005)),
                            ("r1", Profile(error=0.0, flap_on_s=1.0, flap_off_s=0.5, flap_error=0.5, start_s=0.5)),
                            ("r2", Profile(error=0.001, bad_after_s=290.0, bad_probe=True, start_s=0.5)),
                            ("r3", Profile(error=0.02, bad_after_s=118.3, bad_probe=True, start_s=3.0)))),
            (Crash(1.5, host=1, down_s=10.0), Deploy(113.7, "r3", host=1, restart_s=5.0, settle_s=0.0)), tail=300),
    ("known_good_only_with_evidence",), fixed=True,
)

example(
    "n44-a-peer-on-the-same-release-is-no-witness",
    "r3 passed its window on web-3; web-1 deploys r3 too, and an outage of every host begins in its "
    "window while web-2 cannot read Prometheus. web-1 rolls r3 back alone: the only host breaching "
    "with it runs r3 itself, and the coordinator compares with hosts on another release (a host "
    "on the release judged cannot tell its fault from an outage). The invariant counted web-3 as "
    "a witness (sim seed 14000105).",
    History(Setup(hosts=3, interval=2.0, scrape=15.0, watch_window=120.0, max_window=30.0, probe_failures=3,
                  latency_for=0.0, verify_attempts=3, verify_every=3.0, cooldown=60.0, max_auto_rollbacks=2,
                  lock_timeout=300.0, fleet=True, lease=15.0, watch_delay=3.0, skews=(0.0, -600.0, -120.0),
                  releases=(("r0", Profile(error=0.005)), ("r1", Profile(error=0.6)),
                            ("r2", Profile(error=0.0, start_s=0.5)), ("r3", Profile(error=0.02)))),
            (Deploy(491.2, "r3", host=2, settle_s=0.0), Deploy(226.3, "r3", restart_s=5.0, settle_s=5.0, announce=True),
             EnvOutage(1.2, 600.0, error=0.6), SourceOutage(3.2, 600.0, host=1)), tail=120),
    ("no_false_rollback",), fixed=True,
)

example(
    "n45-up-read-from-a-scrape-before-the-deploy",
    "A deploy under the deploy lock restarts the app for 0.5 s, lock and restart both between two "
    "ticks. The next tick saw the deploy and read `up`, whose newest sample was the scrape taken "
    "during that restart: 0, and `for: 0` rolled the healthy release back. An instant query's "
    "breach is held for a scrape interval after a deploy a tick saw late (not a first start, "
    "not a rollback's switch) (sim seed 15000520).",
    History(Setup(hosts=3, watch_window=120.0, max_window=30.0, errors_for=120.0, probe_failures=0, up_for=0.0,
                  verify_attempts=6, verify_every=1.0, lock_timeout=300.0, fleet=True, lease=3.0, known_good_hosts=3,
                  watch_delay=0.5, skews=(0.0, 0.0, -120.0),
                  releases=(("r0", Profile(error=0.005)), ("r1", Profile(error=0.0, start_s=3.0)),
                            ("r2", Profile(error=0.001)), ("r3", Profile(error=0.001, start_s=3.0)),
                            ("r4", Profile(error=0.001, start_s=0.5)))),
            (Deploy(240.0, "r4", restart_s=0.5),), tail=30),
    ("no_false_rollback",), fixed=True,
)

example(
    "n46-a-confirmation-under-a-deploys-lock",
    "r1 is rolled back to r0 during an outage and confirmed; the service dies. While it is down the "
    "tool ships r2 (no lock), then r0 again under the deploy lock with a 60 s restart. The restarted "
    "service reads r0, the confirmation's own target, while the lock is still held, and the "
    "confirmation halted 'errors did not clear on r0' on that restart. A deploy holding the lock "
    "now supersedes a rollback being confirmed (sim seed 16002640, the final run).",
    History(Setup(interval=2.0, scrape=2.0, watch_window=120.0, errors_for=0.0, probe_failures=3, up_for=0.0,
                  verify_attempts=9, verify_every=3.0, cooldown=60.0, max_auto_rollbacks=2, known_good_hosts=1,
                  watch_delay=3.0, skews=(0.0,),
                  releases=(("r0", Profile(error=0.005)),
                            ("r1", Profile(error=0.02, bad_after_s=60.0, bad_latency=0.8, start_s=3.0)),
                            ("r2", Profile(error=0.3)), ("r3", Profile(error=0.0, start_s=3.0, traffic=0.0)),
                            ("r4", Profile(crashes=True)))),
            (EnvOutage(29.5, 120.0, error=0.6, probes=True, host=0),
             Deploy(35.7, "r4", lock=False, restart_s=5.0, settle_s=5.0, announce=True),
             Deploy(3.7, "r1", restart_s=20.0, settle_s=30.0), Crash(86.7, down_s=60.0),
             Deploy(6.0, "r2", lock=False, restart_s=5.0, settle_s=0.0), Deploy(22.9, "r0", restart_s=60.0, settle_s=5.0)),
            tail=120),
    ("halt_is_true",), fixed=True,
)

example(
    "n47-a-redeploy-the-watcher-could-not-see",
    "r2 is deployed under the lock and serves its window; the tool replaces it by r0 while the "
    "backend cannot say which release is current (the only tick r0 was live), then ships r2 again "
    "with a 60 s restart. To the watcher r2 was current all along: it watched r2 serve for two "
    "minutes and blessed it at its window's end. The invariant counted the window from the "
    "redeploy the watcher could not see (sim seed 18000702).",
    History(Setup(interval=10.0, scrape=15.0, max_window=120.0, errors_for=20.0, probe_failures=0,
                  verify_attempts=10, verify_every=0.5, cooldown=600.0, lock_timeout=30.0, lease=15.0,
                  known_good_hosts=1, watch_delay=0.5, skews=(-120.0,),
                  releases=(("r0", Profile(error=0.005)), ("r1", Profile(start_s=0.5)),
                            ("r2", Profile(error=0.001, start_s=3.0)))),
            (Deploy(650.9, "r2", restart_s=60.0, settle_s=5.0, mid_tick=True),
             BackendFault(236.5, what="current", count=3), Deploy(0.3, "r0", restart_s=5.0, settle_s=0.0),
             Deploy(11.6, "r2", lock=False, restart_s=60.0, settle_s=0.0)), tail=120),
    ("known_good_only_with_evidence",), fixed=True,
)

example(
    "n48-fleet-blind-said-after-a-verification",
    "An outage of every host; web-2, cut off from etcd, rolls its new release back alone (as "
    "documented: a host without etcd decides alone) and verifies for 21 s in its tick. 'Fleet "
    "blind' is said at the first tick after the verification, past the invariant's grace, which "
    "did not allow for time spent inside a tick (sim seed 18000111; the tail runs on to see it said).",
    History(Setup(hosts=2, interval=2.0, scrape=1.0, watch_window=60.0, probe_failures=0, latency_for=0.0,
                  verify_attempts=8, verify_every=3.0, lock_timeout=30.0, fleet=True, lease=15.0, watch_delay=3.0,
                  skews=(0.0, -600.0),
                  releases=(("r0", Profile(error=0.005)), ("r1", Profile(error=0.0)), ("r2", Profile(error=0.1)),
                            ("r3", Profile(error=0.001)), ("r4", Profile(burst_s=40.0, burst_error=0.9)),
                            ("r5", Profile(bad_after_s=60.0, bad_probe=True, start_s=3.0)))),
            (EnvOutage(119.6, 600.0, error=0.3, probes=True), Deploy(18.1, "r1", host=1, restart_s=0.5, settle_s=30.0),
             Deploy(3.9, "r2", host=1, mid_tick=True, announce=True), Partition(50.0, 120.0, host=1)), tail=90),
    ("fleet_trouble_is_said",), fixed=True,
)

example(
    "n49-no-witness-a-watch-after-a-partition",
    "An outage of every host; a partition of both from etcd for 30 s, longer than the lease: both "
    "memberships expire. web-1's first tick 1.7 s after etcd answers again sees r4 fail /health and "
    "rolls it back alone: web-2's membership, written again after the partition, reaches it a "
    "watch (3 s) later, and the one before it was 38 s old, past what the coordinator trusts. The "
    "invariant counted web-2 as a witness though no membership of it was in etcd then (sim seed "
    "18001930). A documented trade-off (without etcd each host decides alone; docs/fleet.md).",
    History(Setup(hosts=2, interval=2.0, watch_window=60.0, max_window=30.0, errors_for=60.0, latency_for=30.0,
                  verify_attempts=2, verify_every=3.0, lock_timeout=300.0, fleet=True, lease=3.0,
                  known_good_hosts=1, watch_delay=3.0, skews=(-600.0, -600.0),
                  releases=(("r0", Profile(error=0.005)),
                            ("r1", Profile(error=0.02, bad_after_s=60.0, bad_latency=0.8, start_s=0.5)),
                            ("r2", Profile(error=0.02, start_s=3.0)), ("r3", Profile(error=0.2, start_s=3.0)),
                            ("r4", Profile()))),
            (EnvOutage(42.5, 120.0, error=0.3, probes=True), Partition(13.8, 30.0, host=None),
             Deploy(16.9, "r4", restart_s=0.5, settle_s=5.0, announce=True)), tail=30),
    ("no_false_rollback",), fixed=True,
)

example(
    "n51-a-flap-as-long-as-the-interval-never-fires",
    "r1 fails 50% for 5 s, then 0% for 10 s, over and over (16.7% on average); "
    "the watcher ticks every 15 s, the flap's period, so every tick lands at the same phase, and "
    "the trailing window (three 5 s scrapes) always spans the 'off' part between its samples. "
    "`[$window]` breaches on every tick, the trailing gate holds it on every tick: pending, never "
    "firing: at its end the window is held open ('errors pending: held until decided') and never "
    "decided, a missed bad deploy (sim seed 20002129). Fixed: a gate held for longer than "
    "`[$window]` spans fires (evaluate.both_windows); r1 is rolled back about 75 s later than a "
    "trailing window that saw the 'on' half would have.",
    History(Setup(interval=15.0, errors_for=0.0, probe_failures=3, latency_for=30.0, verify_attempts=4,
                  verify_every=3.0, lock_timeout=30.0, known_good_hosts=1, skews=(-120.0,),
                  releases=(("r0", Profile(error=0.005)),
                            ("r1", Profile(error=0.001, flap_on_s=5.0, flap_off_s=10.0, flap_error=0.5, start_s=3.0)))),
            (Deploy(230.2, "r1", lock=False, restart_s=20.0, settle_s=30.0, announce=True),), tail=360),
    ("bad_release_rolled_back_or_told",), fixed=True,
)

example(
    "n50-a-sighting-lost-with-its-save",
    "The service sees r2's deploy, journals it, and dies in that tick's save: the sighting is "
    "lost with the state, and the service, back 300 s later, sees the deploy again and watches "
    "r2 from then. The invariant counted the window from the first journal line and expected a "
    "decision 300 s too early; counted from the last sighting, its deadline for r2 (30% / 0% "
    "every 30 s) was still too early: a young `[$window]` dips below 10% in an 'off' half and "
    "restarts `for`, and a trailing window may read every 'off' half; the invariant now allows "
    "the gate its bound (`[$window]` and a tick). Not a watcher defect (sim seed 20001814).",
    History(Setup(interval=15.0, scrape=2.0, watch_window=600.0, max_window=120.0, errors_for=20.0,
                  probe_failures=1, up_for=30.0, latency_for=30.0, verify_attempts=6, verify_every=0.5,
                  cooldown=600.0, max_auto_rollbacks=2, lock_timeout=30.0, lease=3.0, known_good_hosts=1,
                  watch_delay=3.0, skews=(-600.0,),
                  releases=(("r0", Profile(error=0.005)),
                            ("r1", Profile(bad_after_s=280.0, bad_error=0.3, start_s=0.5)),
                            ("r2", Profile(error=0.005, flap_on_s=30.0, flap_off_s=30.0, flap_error=0.3,
                                           start_s=0.5)))),
            (Crash(560.2, down_s=300.0, at="save"), Deploy(4.4, "r2", restart_s=60.0, settle_s=30.0)), tail=660),
    ("bad_release_rolled_back_or_told",), fixed=True,
)

example(
    "n52-a-lock-taken-as-a-tick-began",
    "The deploy tool redeploys r3, the current release, under a 0.5 s lock taken at the very "
    "moment a tick began (the tick ran first: it found the lock free) and let go before the next. "
    "The next tick reads `up` 0 from a scrape of the restart and `for: 0` rolls healthy r3 back: "
    "a restart the watcher cannot see (design section 5; `check` now warns of an instant rollback "
    "rule with `for` under two scrape intervals). The invariant counted that tick as one that saw "
    "the lock; it now asks whether the tool held it when the tick began (sim seed 22000561).",
    History(Setup(interval=2.0, scrape=2.0, errors_for=120.0, probe_failures=3, up_for=0.0, latency_for=0.0,
                  verify_attempts=8, verify_every=3.0, max_auto_rollbacks=1, lock_timeout=30.0, watch_delay=0.5,
                  skews=(45.0,),
                  releases=(("r0", Profile(error=0.005, start_s=1.0)), ("r1", Profile(error=0.01, crashes=True)),
                            ("r2", Profile(error=0.3, start_s=0.5)), ("r3", Profile(error=0.01, start_s=0.5)))),
            (Deploy(43.5, "r3", restart_s=60.0, settle_s=30.0), Deploy(266.5, "r3", restart_s=0.5, settle_s=0.0)),
            tail=30),
    ("no_false_rollback",), fixed=True,
)

# flapping and its control -------------------------------------------------------------------------
DECISION_SUITE = dict(interval=1.0, scrape=1.0, errors_for=10.0, probe_failures=0, verify_every=0.5,
                      verify_attempts=10)
example(
    "flapping-30-0-every-5s",
    "r1 fails 30% of requests for 5 s, then 0% for 5 s (15% on average), `for: 10s`: the "
    "trailing window (4 s) sees 0% every other period and restarts `for`: never rolled back.",
    History(Setup(releases=(("r0", GOOD), ("r1", Profile(error=0.0, flap_on_s=5, flap_off_s=5, flap_error=0.3))),
                  **DECISION_SUITE),
            (Deploy(10, "r1"),), tail=120),
    ("bad_release_rolled_back_or_told",), fixed=True,
)
example(
    "control-warm-up-burst",
    "r1 fails 50% for its first 6 s, then 0.5%, `for: 10s`: not rolled back (the design's "
    "multiwindow case); it becomes known-good.",
    History(Setup(releases=(("r0", GOOD), ("r1", Profile(error=0.005, burst_s=6, burst_error=0.5))),
                  **DECISION_SUITE),
            (Deploy(10, "r1"),), tail=400),
)
example(
    "control-bad-release-rolled-back",
    "r1 fails 30% from its start: rolled back to r0, verified.",
    History(Setup(releases=(("r0", GOOD), ("r1", BAD))), (Deploy(30, "r1"),), tail=200),
)


def by_name(name: str) -> Example:
    return next(e for e in EXAMPLES if e.name == name)


def main(argv: list[str]) -> int:
    from sim.world import run_history

    chosen = [by_name(n) for n in argv] if argv else EXAMPLES
    failing = 0
    for ex in chosen:
        started = time.monotonic()
        result = run_history(ex.history)
        found = sorted({v.invariant for v in result.violations})
        if ex.catches:
            status = ("passes (fixed)" if not found else "FAILS (fixed, broken again)") if ex.fixed else \
                ("FAILS (defect present)" if set(ex.catches) <= set(found) else
                 "passes (fixed?)" if not found else "FAILS differently")
        else:
            status = "passes" if not found else "FAILS (a control broke)"
        failing += bool(found)
        print(f"{ex.name:45} {status:24} {time.monotonic() - started:5.2f}s  {', '.join(found) or '-'}")
        for v in result.violations[:4]:
            print(f"      {v}")
    print(f"{len(chosen)} examples, {failing} with violations")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
