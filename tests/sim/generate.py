"""Generated histories: one generator, two sources of choices.

`generate(choose)` builds a History from a `Choices`: `RandomChoices(seed)` for the long seeded
runs of `make sim` (run.py), `DrawnChoices(data)` for Hypothesis (test_search.py), whose
shrinking then works on the choices themselves. The generator leans towards interleavings:
half of the actions follow the previous one within two ticks, deploys are frequent, and the
release catalogue mixes healthy, bad, flapping, bursting, late-failing and crashing releases.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence
from typing import Protocol, TypeVar

from sim import history as h
from sim.etcd import TAMPER_KINDS
from sim.truth import Profile

T = TypeVar("T")

CRASH_POINTS = ("save", "journal request_done", "journal rollback_intent", "journal rollback_switched",
                "backend switch", "backend restart", "sleep", "take requests", "journal deploy", "journal verdict",
                "journal window_passed", "journal rollback_confirming", "backend current")


class Choices(Protocol):
    def pick(self, options: Sequence[T]) -> T: ...

    def uniform(self, lo: float, hi: float) -> float: ...

    def integer(self, lo: int, hi: int) -> int: ...

    def chance(self, p: float) -> bool: ...


class RandomChoices:
    def __init__(self, seed: int):
        self.rng = random.Random(seed)

    def pick(self, options):
        return self.rng.choice(list(options))

    def uniform(self, lo, hi):
        return round(self.rng.uniform(lo, hi), 1)

    def integer(self, lo, hi):
        return self.rng.randint(lo, hi)

    def chance(self, p):
        return self.rng.random() < p


class DrawnChoices:
    """Choices drawn from Hypothesis' `st.data()`: shrinking simplifies them (smaller numbers,
    earlier options, fewer actions)."""

    def __init__(self, data):
        from hypothesis import strategies as st

        self.data = data
        self.st = st

    def pick(self, options):
        return self.data.draw(self.st.sampled_from(list(options)))

    def uniform(self, lo, hi):
        return round(self.data.draw(self.st.floats(lo, hi, allow_nan=False)), 1)

    def integer(self, lo, hi):
        return self.data.draw(self.st.integers(lo, hi))

    def chance(self, p):
        return self.data.draw(self.st.integers(0, 999)) < p * 1000


def profile(c: Choices, threshold: float) -> Profile:
    kind = c.pick(["healthy", "healthy", "healthy", "bad", "bad", "flapping", "burst", "late-errors",
                   "late-probe", "crash", "latency", "marginal", "quiet", "zero-errors"])
    base = c.pick([0.001, 0.005, 0.01, 0.02])
    start_s = c.pick([0.5, 1.0, 3.0])
    if kind == "healthy":
        return Profile(error=base, start_s=start_s)
    if kind == "bad":
        return Profile(error=c.pick([0.2, 0.3, 0.6, 1.0]) * max(threshold / 0.1, 0.5), start_s=start_s)
    if kind == "flapping":
        on = c.pick([1.0, 2.0, 5.0, 10.0, 30.0])
        return Profile(error=c.pick([0.0, base]), flap_on_s=on, flap_off_s=c.pick([on, on / 2, 2 * on]),
                       flap_error=c.pick([0.3, 0.5]), start_s=start_s)
    if kind == "burst":
        return Profile(error=base, burst_s=c.pick([2.0, 6.0, 15.0, 40.0]), burst_error=c.pick([0.3, 0.5, 0.9]),
                       start_s=start_s)
    if kind == "late-errors":
        return Profile(error=base, bad_after_s=c.pick([30.0, 120.0, 280.0, 600.0, 1700.0]),
                       bad_error=c.pick([0.3, 0.6]), start_s=start_s)
    if kind == "late-probe":
        return Profile(error=base, bad_after_s=c.pick([10.0, 60.0, 250.0, 290.0, 590.0, 1790.0]), bad_probe=True,
                       start_s=start_s)
    if kind == "crash":
        return Profile(crashes=True)
    if kind == "latency":
        return Profile(error=base, bad_after_s=c.pick([0.0, 60.0]), bad_latency=c.pick([0.8, 2.0]), start_s=start_s)
    if kind == "marginal":
        return Profile(error=threshold * c.pick([0.8, 1.0, 1.2]), start_s=start_s)
    if kind == "quiet":
        return Profile(error=0.0, traffic=0.0, start_s=start_s)
    return Profile(error=0.0, start_s=start_s)


def setup(c: Choices, short: bool = False) -> h.Setup:
    fleet = c.chance(0.3)
    hosts = c.pick([2, 2, 3]) if fleet else 1
    interval = c.pick([1.0, 2.0, 5.0, 5.0, 10.0, 15.0])
    scrape = c.pick([1.0, 2.0, 5.0, 15.0])
    window = max(c.pick([60.0, 120.0, 300.0] if short else [60.0, 120.0, 300.0, 600.0, 1800.0]), 12 * interval)
    threshold = 0.10
    releases = [("r0", Profile(error=0.005))]
    for i in range(1, c.integer(3, 10)):
        releases.append((f"r{i}", profile(c, threshold)))
    return h.Setup(
        hosts=hosts, interval=interval, scrape=scrape, watch_window=window, max_window=c.pick([30.0, 60.0, 60.0, 120.0]),
        threshold=threshold, errors_for=c.pick([0.0, 10.0, 20.0, 30.0, 60.0, 120.0]),
        probe_failures=c.pick([0, 1, 2, 3]), up_for=c.pick([None, None, 0.0, 10.0, 30.0]),
        latency_for=c.pick([None, None, 0.0, 30.0]), verify_attempts=c.integer(2, 10),
        verify_every=c.pick([0.5, 1.0, 3.0]), cooldown=c.pick([60.0, 600.0, 1800.0]),
        max_auto_rollbacks=c.pick([1, 1, 2]), mode="shadow" if c.chance(0.05) else "act",
        lock_timeout=c.pick([30.0, 120.0, 300.0]), fleet=fleet, lease=c.pick([3.0, 6.0, 15.0]),
        known_good_hosts=c.integer(1, hosts), watch_delay=c.pick([0.005, 0.005, 0.5, 3.0]),
        skews=tuple(c.pick([0.0, 0.0, 0.0, -120.0, 45.0, -600.0]) for _ in range(hosts)),
        releases=tuple(releases),
    )


def action(c: Choices, s: h.Setup, deployed: list[str]) -> object:
    host = c.integer(0, s.hosts - 1)
    names = [r for r, _ in s.releases]
    weights = ["deploy"] * 6 + ["human"] * 3 + ["crash"] * 2 + ["fault", "source", "env", "clock", "reload", "wait"]
    if s.fleet:
        weights += ["partition", "tamper"]
    kind = c.pick(weights)
    after = c.uniform(0.0, 2 * s.interval) if c.chance(0.5) else c.uniform(0.0, min(s.watch_window, 600.0))
    if kind == "deploy":
        fresh = [r for r in names[1:] if r not in deployed]
        release = fresh[0] if fresh and c.chance(0.7) else c.pick(names)
        deployed.append(release)
        return h.Deploy(after, release, host=host, lock=c.chance(0.8), restart_s=c.pick([0.5, 2.0, 5.0, 20.0, 60.0]),
                        settle_s=c.pick([0.0, 1.0, 5.0, 30.0]), mid_tick=c.chance(0.1), announce=c.chance(0.2))
    if kind == "human":
        command = c.pick(["mark", "mark", "deployed", "pause", "resume", "resolve", "rollback"])
        release = c.pick(names)
        if command == "mark":
            return h.Human(after, "mark", host, release=release, mark=c.pick(["good", "bad", "barrier", "not-barrier"]))
        if command == "deployed":
            return h.Human(after, "deployed", host, release=release)
        if command == "pause":
            return h.Human(after, "pause", host, seconds=c.pick([30.0, 300.0, 3600.0]))
        if command == "rollback":
            return h.Human(after, "rollback", host, to=c.pick([None, None, release]))
        return h.Human(after, command, host)
    if kind == "crash":
        how = c.pick(["now", "named", "counted"])
        down = c.pick([0.5, 2.0, 10.0, 60.0, 300.0])
        if how == "named":
            return h.Crash(after, host, down_s=down, at=c.pick(CRASH_POINTS))
        if how == "counted":
            return h.Crash(after, host, step=c.integer(1, 40), down_s=down)
        return h.Crash(after, host, down_s=down)
    if kind == "fault":
        return h.BackendFault(after, host, what=c.pick(["releases", "releases", "current", "broken"]),
                              count=c.pick([1, 1, 2, 3, 6]))
    if kind == "source":
        return h.SourceOutage(after, c.pick([5.0, 30.0, 120.0, 600.0]), host=host)
    if kind == "env":
        return h.EnvOutage(after, c.pick([30.0, 120.0, 600.0]), error=c.pick([0.3, 0.6, 1.0]), probes=c.chance(0.3),
                           host=None if c.chance(0.7) else host)
    if kind == "clock":
        return h.ClockStep(after, c.pick([-3600.0, -300.0, -30.0, 30.0, 300.0, 3600.0]), host=host)
    if kind == "reload":
        return h.Reload(after, host, mode=c.pick([None, None, None, "act", "shadow"]))
    if kind == "partition":
        return h.Partition(after, c.pick([5.0, 30.0, 120.0]), host=None if c.chance(0.2) else host)
    if kind == "tamper":
        return h.Tamper(after, c.pick(TAMPER_KINDS), release=c.pick(names))
    return h.Wait(after)


def generate(c: Choices, length: int | None = None, short: bool = False) -> h.History:
    """A history; `short` (the budgeted run of `make test`): windows of at most 5 minutes, a
    shorter tail, so that a few hundred fit in two minutes. Some histories are then aimed
    (`aim`): their choices come after all the others, so an unaimed seed's history is the one
    it was before aiming existed (an aimed one is that history, perhaps cut to its first few
    actions, plus the aimed events)."""
    s = setup(c, short)
    deployed: list[str] = []
    n = length if length is not None else c.integer(3, 25)
    actions = tuple(action(c, s, deployed) for _ in range(n))
    history = h.History(s, actions, tail=s.watch_window + (120.0 if short else 300.0))
    return aim(c, history) if c.chance(0.4) else history


def aim(c: Choices, history: h.History) -> h.History:
    """Events placed where the defects of a window's edges live, which uniform timing almost
    never reaches (issue 22's defects 1, 4, 6 and 9 were found by no random history of 150): a
    release of one deploy that goes bad so that its rule fires on the window's last ticks; a
    listing failure of the backend on those ticks; a crash at the save of the tick that takes a
    human's request; an outage of every host during a window, with a peer's clock minutes off."""
    s = history.setup
    kept = history.actions
    if c.chance(0.5):
        # Half of them few actions besides: in a history of twenty, something else (a halt, a
        # redeploy, a pause) almost always happens to the window first.
        kept = kept[:c.integer(1, 5)]
    timed = []  # (absolute time, action)
    t = 0.0
    for a in kept:
        t += a.after
        timed.append((t, a))
    last: dict[int, tuple[float, h.Deploy]] = {}  # each host's last deploy: its window can run out
    for t, a in timed:
        if isinstance(a, h.Deploy):
            last[a.host] = (t, a)
    targets = [(t, d) for t, d in last.values() if d.release != s.releases[0][0]]
    humans = [(t, a) for t, a in timed if isinstance(a, h.Human)]
    added: list[tuple[float, object]] = []
    profiles = dict(s.releases)
    skews = list(s.skews) + [0.0] * (s.hosts - len(s.skews))
    for _ in range(c.integer(1, 2)):
        what = c.pick(["late", "late", "late+fault", "crash", "outage"])
        if what.startswith("late") and targets:
            t_d, d = c.pick(targets)
            profile = profiles[d.release]
            probe = bool(s.probe_failures) and c.chance(0.5)
            # The window ends `watch_window` after the tick that saw the deploy (within an
            # interval of it); the release's age counts from its restart. A probe failing in the
            # last `failures` ticks before that end; a ratio firing on them.
            if probe:
                rule_for = (s.probe_failures - 1) * s.interval
                bad_after = s.watch_window - d.restart_s + c.uniform(-rule_for - s.interval, s.interval)
            else:
                bad_after = s.watch_window - d.restart_s - s.errors_for + c.uniform(-2 * s.interval, s.interval)
            profiles[d.release] = dataclasses.replace(
                profile, bad_after_s=max(bad_after, 1.0), bad_probe=probe, bad_error=None if probe else 0.3,
                crashes=False, flap_on_s=0.0, flap_off_s=0.0, burst_s=0.0)
            if what == "late+fault":
                # The listing is read when a rollback rule fires (and once for the deploy's
                # message): a failure injected after that waits for the firing tick; a failure to
                # read `current` hits the next tick, so it is aimed at the window's end.
                listing = c.chance(0.5)
                added.append((t_d + (c.uniform(2 * s.interval, s.watch_window / 2) if listing else
                                     s.watch_window + c.uniform(-s.interval, 2 * s.interval)),
                              h.BackendFault(0.0, d.host, what="releases" if listing else "current",
                                             count=c.pick([1, 1, 2]))))
        elif what == "crash" and humans:
            t_h, a = c.pick(humans)
            added.append((t_h + c.uniform(0.0, 0.5),
                          h.Crash(0.0, a.host, down_s=c.pick([0.5, 2.0, 10.0]), at="save")))
        elif what == "outage" and targets:
            t_d, d = c.pick(targets)
            added.append((t_d + c.uniform(s.interval, min(s.watch_window / 2, 300.0)),
                          h.EnvOutage(0.0, c.pick([60.0, 120.0, 600.0]), error=c.pick([0.3, 1.0]),
                                      probes=c.chance(0.5))))
            peers = [i for i in range(s.hosts) if i != d.host]
            if peers:  # a peer on the old release whose clock is minutes off
                skews[c.pick(peers)] = c.pick([-120.0, 120.0, -600.0])
    merged = sorted(timed + added, key=lambda x: x[0])  # stable: at one moment, the drawn action first
    actions, before = [], 0.0
    for t, a in merged:
        actions.append(dataclasses.replace(a, after=round(max(t - before, 0.0), 3)))
        before = max(t, before)
    setup_ = dataclasses.replace(s, releases=tuple((r, profiles[r]) for r, _ in s.releases), skews=tuple(skews))
    return h.History(setup_, tuple(actions), tail=history.tail)
