"""What must hold after every step of a simulated history, judged against the ground truth.

Each invariant is one function below, with its documented exceptions in its docstring. The
`Checker` runs every one after each tick, each action and at the end, handing each the host's
journal lines, ticks and messages that are new since the last check (`Step`), and a memory of
its own (`Step.memory`). A function returns what it found wrong, in words; the Checker records
it once as a Violation (invariant, host, time).

Words used below: a tick is CLEAN when the watcher ran it to its end, the deploy tool did not
hold the deploy lock, no injected backend failure hit it and Prometheus answered: a tick on
which the watcher could decide. A release is HEALTHY or BAD for a rule by truth.judge_*; near
its threshold it is neither, and no invariant speaks of it. TOLD means a message to a human
about that release.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sim.etcd import FakeGateway, well_formed_member, well_formed_verdict
from sim.truth import INF, trailing_of
from watcher.actions.fleet import read_view
from watcher.core.fleetmodel import GateCode, Keys, gate_answer
from watcher.store.state import StateStore

if TYPE_CHECKING:
    from sim.host import SimHost, TickRecord
    from sim.world import World


@dataclass(frozen=True)
class Violation:
    invariant: str
    host: str
    at: float  # seconds since the world's start
    what: str

    def __str__(self) -> str:
        return f"[{self.invariant}] t+{self.at:.1f}s {self.host}: {self.what}"


@dataclass
class Step:
    """What is new on one host since the last check, and the world to judge it by."""

    world: World
    host: SimHost
    events: list[dict]  # journal lines
    ticks: list[TickRecord]
    memory: dict
    final: bool = False

    @property
    def setup(self):
        return self.world.setup

    @property
    def t(self) -> float:
        return self.world.t

    def rel(self, t: float) -> str:
        return f"t+{t - self.world.t0:.1f}s"

    def state(self):
        """The host's state now: the running service's, else what is on disk."""
        w = self.host.watcher
        if w is not None and self.host.alive:
            return w.state
        try:
            return StateStore(self.host.state_dir).load()
        except Exception:  # noqa: BLE001 - a state the watcher cannot load is judged elsewhere
            return None


# ---------------------------------------------------------------------------------------------
# Helpers on the ground truth


TOLD = {"rolling_back", "rollback_verified", "rollback_failed", "verify_failed", "would_roll_back", "cannot_act"}


def told(host: SimHost, release: str, since: float, kinds=TOLD) -> list[str]:
    return [m.kind for t, m in host.messages if t >= since and m.release == release and m.kind in kinds]


def lookback(setup) -> float:
    """How far back a rule firing now may have looked: its `for`, its range, a few ticks."""
    return max(setup.rule_fors().values()) + setup.max_window + 4 * setup.interval + 3 * setup.scrape


def served_between(host: SimHost, a: float, b: float) -> set[str]:
    return {s.release for s in host.app.segments if s.start < b and s.end > a}


def last_tool_deploy(host: SimHost, release: str, before: float, seen: bool = False) -> tuple | None:
    """The deploy tool's last deploy of `release` that changed the release (a redeploy of the
    current release is no deploy to the watcher: its window goes on); `seen`: the last one the
    watcher could know of (visible)."""
    found = None
    for d in host.deploys:
        if d[1] == release and d[0] <= before and d[3] != d[1] and (not seen or visible(host, d)):
            found = d
    return found


def visible(host: SimHost, d: tuple) -> bool:
    """Whether the watcher can know of deploy `d`: the state it last saved before `d` (the
    service's, or the CLI's while it was down) had another release current. A deploy that put
    back the release the watcher last knew, while it did not look (down, or between two
    ticks), cannot be told from no deploy."""
    before = [c for t, c in host.saved_currents if t <= d[0]]
    return not before or before[-1] != d[1]


def env_outage_between(host: SimHost, a: float, b: float) -> bool:
    return any(o.start < b and o.end > a for o in host.app.outages)


def lockless_restart_between(host: SimHost, a: float, b: float) -> bool:
    """A deploy's restart between `a` and `b` that the watcher could not know was under the
    deploy lock: made without it, or holding it only between two ticks (flock leaves no trace:
    a lock no tick saw held is no lock to the watcher). A restart at `b` itself counts: a
    deploy that lands during a tick's reads (which take no simulated time) restarts the app at
    the very moment of the tick's decision, and a redeploy of the current release is no change
    of `current` for the watcher to see (seed 1000367 of make sim)."""
    for seg in host.app.segments:
        d = next((d for d in host.deploys if d[0] == seg.start), None)
        if d is None or seg.start > b or seg.ready <= a:
            continue
        if not d[2] or not _lock_seen(host, d[0]):
            return True
    return False


def _lock_seen(host: SimHost, at: float) -> bool:
    """A tick began while the deploy tool held the lock it took for the deploy at `at`. Not a
    tick at the lock's very moment that ran before the tool took it (sim seed 22000561: a
    redeploy of the current release under a 0.5 s lock taken as a tick began)."""
    span = next(([x, y] for x, y in host.lock_spans if x <= at < y), None)
    return span is not None and any(span[0] <= r.start < span[1] and r.tool_lock for r in host.ticks)


def breaching_now(world: World, host: SimHost, rule: str, t: float) -> tuple[str, float] | None:
    """(release, since when) if the release serving `host` breaches `rule` at `t` by truth:
    a BAD release past its breach age, or (probe and `up` rules) nothing serving while the
    deploy tool does not hold the lock."""
    seg = host.app.segment_at(t)
    if seg is None:
        return None
    judgement = world.setup.judge(seg.release).get(rule)
    if judgement is None:
        return None
    if rule in ("health", "up"):
        if not seg.up_at(t) and not host.lock_held_at(t):
            return seg.release, seg.start
        if judgement.bad and seg.up_at(t) and t - seg.ready >= judgement.breach_from:
            return seg.release, seg.ready + judgement.breach_from
        return None
    if judgement.bad and seg.up_at(t) and t - seg.ready >= judgement.breach_from:
        return seg.release, seg.ready + judgement.breach_from
    return None


def clean(rec: TickRecord) -> bool:
    return not rec.crashed and not rec.faults and not rec.lock_held and not rec.source_outage


# ---------------------------------------------------------------------------------------------
# The invariants


def no_false_rollback(s: Step) -> list[str]:
    """An automatic rollback is never made of a release that is HEALTHY, by truth, on every
    rollback rule (judged on every release that served since it became current, within the
    rules' look-back).

    Documented trade-offs (not violations): an outage of something every release depends on
    (EnvOutage) while the release is in its window, on a host alone or in a fleet where no
    host on a known-good release could witness it (the rollback is then followed by "did not
    clear: probably not the cause", design section 5); a deploy without the deploy lock whose
    restart is what a probe or `up` rule saw. A rollback on another host's verdict (`fleet:`)
    is judged where that verdict was made, unless the verdict is not one a watcher wrote."""
    out = []
    for e in s.events:
        if e["kind"] != "rollback_intent" or e.get("manual"):
            continue
        release, t = e["release"], e["_t"]
        rules = e.get("rules") or []
        local = [r for r in rules if not r.startswith("fleet:")]
        if len(local) < len(rules):  # another host's verdict among the triggers: judged there
            v = s.world.fleet.etcd.get(f"{s.host.config.fleet.root}releases/{release}/verdict") if s.setup.fleet else None
            # A bad verdict a watcher wrote before `t` is what the host acted on, even if garbage
            # replaced it since: the fleet cache keeps the last verdict it could read (sim seed
            # 4000038), and nothing replaces bad.
            if v is not None and not watcher_wrote(s, release, "bad", t):
                if all(s.setup.judge(release)[r].healthy for r in s.setup.judge(release)):
                    out.append(f"rolled back {release} on a fleet verdict nobody's watcher wrote: {v[:80]!r}")
            continue
        # What the rules saw of `release`: its own samples since it became current (the
        # table's PromQL reads `[$window]`, from the deploy; probes and `up` are instant).
        since = max((c.at for c in s.host.links if c.release == release and c.at <= t), default=s.world.t0)
        span = (max(t - lookback(s.setup), since), t)
        served = served_between(s.host, *span) | {release}
        # Healthy on every rule: a release bad (or near a threshold) on any is no false
        # rollback, whichever rule fired first.
        if not all(j.healthy for r in served for j in s.setup.judge(r).values()):
            continue
        if lockless_restart_between(s.host, *span) and all(r in ("health", "up") for r in local):
            continue
        if env_outage_between(s.host, *span):
            witness = fleet_witness(s, local, t, release)
            if witness is None:
                continue
            out.append(f"rolled back {release} ({', '.join(local)}) during an outage of every release, while "
                       f"{witness} on a known-good release fired the same rule: a fleet-wide symptom taken for "
                       "the release's fault")
            continue
        out.append(f"rolled back {release}, healthy by truth ({s.setup.profile(release).describe()}), "
                   f"on {', '.join(local)}")
    return out


def fleet_witness(s: Step, rules: list[str], t: float, judged: str | None = None) -> str | None:
    """A host that, by its own state, ran a known-good release at `t` and breached one of
    `rules` (pending or firing, as its membership reports) since a tick of its own that ended an
    interval and more before `t` (its membership was rewritten then), ticking, with both its
    fleet link and this host's working and able to reach etcd: a fleet-wide symptom the
    coordinator could see.

    All of it as it was at `t`, the decision (docs/fleet.md, "Not the deploy's fault": the
    hosts *still on* a known-good release that report the rule firing *now*), not when this
    check runs: that can be seconds later, after the deciding host's tick waited out a
    verification while the other host ticked on. A host on a fresh release that fired with
    this one and rolled back to its known-good release in the meantime (sim seed 2000153) was,
    at `t`, a host on a release in its window: no witness."""
    if not s.setup.fleet:
        return None
    fleet = s.world.fleet

    def reachable_at_t(host: SimHost) -> bool:  # partitioned at `t`, even if healed since
        return t >= fleet.partitioned.get(host.name, -1.0)

    mine = fleet.runs.get(s.host.name)
    if mine is None or mine.stopped or mine.sync_dead or mine.watch_dead or not reachable_at_t(s.host):
        return None
    margin = 2 * s.setup.interval + 1.0
    for other in s.world.hosts:
        run = fleet.runs.get(other.name)
        if other is s.host or not other.alive or other.watcher is None or run is None:
            continue
        if run.stopped or run.sync_dead or run.watch_dead or not reachable_at_t(other):
            continue
        last = next((r for r in reversed(other.ticks) if r.start <= t), None)
        if last is None or t - last.start > 2 * s.setup.interval:
            continue
        if last.lock_held:
            # Its deploy held the deploy lock: its membership names no breach and every rule
            # unseen (coordinator.report): neither witness nor denial (sim seed 8000792).
            continue
        st = other.watcher.state
        w = other.watcher
        then = w.clock() - (s.t - t)  # its service's steady time at `t`
        # The release it ran at `t`: what its state says, unless its link moved since (then the
        # one it pointed to before the move; a move at `t` itself was not yet reported).
        moved = [c for c in other.links if c.at >= t]
        release = st.current if not moved else next((c.release for c in reversed(other.links) if c.at < t), None)
        if judged is not None and release == judged:
            # On the very release this host judges (known-good there, in its window here):
            # the coordinator compares with hosts on another release only (sim seed 14000105).
            continue
        rec = st.releases.get(release or "")
        if rec is None or rec.mark != "good" or (rec.marked_at is not None and rec.marked_at > then):
            continue
        if watcher_wrote(s, release or "", "bad", t):
            # Good by a human's word there, bad by the fleet's verdict: known-good to nobody else
            # (fleetmodel.fleet_wide_symptom), so no witness (sim seed 6001169).
            continue
        for rule in rules:
            rs = st.rules.get(rule)
            # What it reports to the fleet: the rule pending or firing, breaching since when,
            # and since within symptom_window of this host's breach (design section 11: one that
            # began long before is that host's own story).
            if rs is None or not (rs.phase.value in ("pending", "firing") or rs.failures) or rs.breach_since is None \
                    or (t - run.started) < margin:
                continue
            began_there = s.t - (w.clock() - rs.breach_since)  # true time of its first breaching tick
            # Seen at `t` only if that tick, which rewrote its membership, ended before; an interval
            # of slack for the sync thread and the watch, or the watch's delay when it is longer
            # (sim seed 1000056: a 3 s watch). Not its age when this check runs.
            seen_by = t - max(s.setup.interval, s.setup.watch_delay + 0.02)
            if not any(r.start >= began_there - 1e-3 and not r.crashed and 0 < r.end <= seen_by
                       for r in other.ticks):
                continue
            # And a membership of it written by then stayed in etcd until `t`: a partition longer
            # than its lease deletes it, and the one its host writes after the partition reaches
            # the deciding host a watch later (sim seed 18001930: the deciding host's first
            # tick after etcd answered again, 1.7 s after the partition).
            member = [x for x in fleet.etcd.history if x.key == member_key(other) and x.at <= t]
            written = [x.at for x in member if x.kind == "put" and x.at <= seen_by]
            if not written or any(x.kind == "delete" and x.at > written[-1] for x in member):
                continue
            began_here = next((e["_t"] for e in reversed(s.host.journal) if e["kind"] == "rule"
                               and e.get("rule") == rule and e.get("before") == "inactive" and e["_t"] <= t), None)
            if began_here is not None and abs(began_here - began_there) > s.host.config.fleet.symptom_window:
                continue
            return other.name
    return None


def member_key(host: SimHost) -> str:
    return Keys(host.config.fleet.root).member(host.name)


def watcher_wrote(s: Step, release: str, verdict: str, t: float) -> bool:
    """A watcher had written a well-formed `verdict` ("good" or "bad") for `release` by `t`:
    what a fleet cache could have read, whatever was written over it since (it keeps the last
    verdict it could read)."""
    return any(w.kind == "put" and w.key.endswith(f"releases/{release}/verdict") and w.at <= t
               and w.by in s.world.fleet.runs and (v := well_formed_verdict(w.value)) is not None
               and v["verdict"] == verdict for w in s.world.fleet.etcd.history)


RATE_RULES = ("errors", "latency", "up")  # read through Prometheus: their lag is a bound, one tick of slack
WINDOW_RULES = ("errors", "latency")  # their queries read `[$window]`


def bad_release_rolled_back_or_told(s: Step) -> list[str]:
    """A release BAD by truth on a rollback rule is rolled back (it is no longer current) or
    the policy's reason is told (would roll back: paused, shadow; cannot act: no target,
    barrier, limit, cooldown, a backend that cannot be read; the rollback failed) by the end
    of the first clean tick at which the rule has held for its `for` (or `failures`), counted
    from the first clean tick that could see the breach (after its signal's lag, and after the
    deploy lock was let go: what was seen under it is discarded); a rule read through
    Prometheus gets one tick more. That tick must lie inside the watch window: from the first
    tick that saw the deploy (or the deploy hook's `mark deployed`, when the CLI applied it
    before, no service running), `watch_window` long, one interval longer for every tick on
    which the release breached while the deploy lock was held or the backend failed (the
    watcher holds its window for both).

    Exceptions: a release a human marked good, or known-good before this deploy (its window
    passed here, or the fleet marked it good: it survived on known_good_hosts hosts); a deploy
    that did not change the release; a halted watcher (halt_is_true judges the halt); while a
    host on a known-good release breaches too (an outage there, a restart without the lock),
    "fleet-wide symptom" told instead (design section 11: the fleet cannot tell)."""
    out = []
    mem = s.memory.setdefault("deployments", {})
    host, setup = s.host, s.setup
    for d in host.deploys:
        key = (d[0], d[1])
        if key not in mem:
            mem[key] = {"release": d[1], "at": d[0], "end": None, "rules": {}, "done": d[3] == d[1]}
    fors = setup.rule_fors()
    for rec in s.ticks:
        for dep in mem.values():
            if dep["done"] or rec.start <= dep["at"]:  # a tick at the deploy's moment ran before it
                continue
            release = dep["release"]
            if _moved_after(host, dep["at"], rec.start, release) or host.link_target() != release:
                dep["done"] = True
                continue
            if dep["end"] is None:
                d = next(x for x in host.deploys if (x[0], x[1]) == (dep["at"], release))
                if not _eligible(s, release, dep["at"]) or not visible(host, d):
                    dep["done"] = True
                    continue
                # A deploy announced (`mark deployed`) while no service ran opened its window
                # then: the CLI applies it alone (design sections 2 and 8), as _seen counts it. A
                # window that passed while the service was down is not watched again: its
                # release is not known-good (no evidence, section 4), and a rule firing on it is
                # told "outside window" (section 5, check 3) (seed 1000438 of make sim).
                # The last sighting: a tick that journaled it and died before its save lost it,
                # and the restarted service sees the deploy again (sim seed 20001814).
                said = next((e["_t"] for e in reversed(host.journal[d[4]:]) if e["kind"] == "deploy"
                             and e.get("release") == release and e["_t"] <= rec.start), None)
                if rec.crashed or (said is None and rec.faults):
                    # The backend failed this tick (`current` unreadable) or the service died in
                    # it: the watcher sees the deploy at a later tick (sim seed 5000535), or
                    # the next tick tells whether the sighting was saved.
                    continue
                dep["seen"] = min(said if said is not None else rec.start, rec.start)
                dep["end"] = dep["seen"] + setup.watch_window
            if rec.start >= dep["end"]:
                dep["done"] = True
                continue
            breaching = False
            for rule, for_s in fors.items():
                now = breaching_now(s.world, host, rule, rec.start)
                if now is None or now[0] != release:
                    dep["rules"].pop(rule, None)
                    continue
                # The watcher holds its window only for what it sees firing: not a rule read
                # through a Prometheus that does not answer (sim seed 9003320).
                breaching = breaching or rule not in RATE_RULES or not rec.source_outage
                judgement = setup.judge(release).get(rule)
                r = dep["rules"].setdefault(rule, {"since": max(now[1], dep["at"]), "first": None})
                if rec.lock_held:
                    r["first"] = None  # discarded once the lock is let go
                    r.pop("ticks", None)
                    r["relocked"] = True
                    continue
                if not clean(rec):
                    continue
                lag = _lag(setup, rule, judgement)
                if r["first"] is None and rec.start >= r["since"] + lag:
                    r["first"] = rec.start
                    # Started again from the first reads after the lock (design section 5), its
                    # firing gated by the trailing window (section 4): a flapping release let go
                    # in an "off" half fires in the next "on" one (sim seed 3000050).
                    # So is a window opened after the breach began (a deploy made while the
                    # service was down): its `[$window]` starts where the watcher saw the
                    # deploy, maybe in an "off" half (sim seed 11000017).
                    late = r["since"] < dep["seen"]
                    r["regate"] = _regate(setup, release, for_s, judgement) \
                        if (r.pop("relocked", False) or late) and rule in WINDOW_RULES else 0.0
                slack = setup.interval if rule in RATE_RULES else 0.0
                due = r["first"] + for_s + r["regate"] if r["first"] is not None else None
                if due is not None and rule == "health":
                    # `failures` counts ticks, not seconds: a tick the service died in before
                    # its save is not counted, however short the restart (sim seed 10001065).
                    r["ticks"] = r.get("ticks", 0) + 1
                    due = rec.start if r["ticks"] >= setup.probe_failures else math.inf
                if due is not None and rule in WINDOW_RULES:
                    # Its `[$window]` reaches before the deploy until min_window (3 scrapes)
                    # after the watcher saw it: held until then (evaluate.held_before_change).
                    due = max(due, dep["seen"] + 3 * setup.scrape)
                elif due is not None and rule == "up":
                    # An instant query's newest sample may predate the deploy for a scrape
                    # after the watcher saw it: held until then (sim seed 15000520).
                    due = max(due, dep["seen"] + setup.scrape)
                if due is not None and rec.start >= due + slack - 1e-6:
                    dep["done"] = True
                    said = told(host, release, dep["at"])
                    span = (dep["at"] - lookback(setup), s.t)
                    if any(env_outage_between(o, *span) or (o is not host and (
                            lockless_restart_between(o, *span) or breaching_now(s.world, o, rule, rec.start) is not None))
                           for o in s.world.hosts):
                        # A host on a known-good release breached at the same time: "fleet-wide
                        # symptom, not the release" is the documented answer (design section 11),
                        # right or not for this release, whatever made that host breach: its
                        # own release going bad just after its window passed looks the same
                        # (sim seed 7000372).
                        said += told(host, release, dep["at"], {"fleet_symptom"})
                    if host.link_target() == release and not said and not _halted(s) \
                            and _eligible(s, release, dep["at"]):  # a human may have marked it good since
                        out.append(f"{release} ({setup.profile(release).describe()}) breaches {rule} since "
                                   f"{s.rel(r['since'])} (deployed {s.rel(dep['at'])}, seen breaching from "
                                   f"{s.rel(r['first'])}): neither rolled back nor a reason told by the end of the "
                                   f"tick at {s.rel(rec.start)}")
                    break
            if breaching and (rec.lock_held or rec.faults):
                dep["end"] += setup.interval
    return out


def _lag(setup, rule: str, judgement) -> float:
    """How long after a breach its signal shows it: the judgement's for a bad profile; a scrape
    for `up` (a restart's closed port shows at the next scrape), nothing for a probe."""
    lag = judgement.lag if judgement is not None and judgement.bad else 0.0
    return max(lag, setup.scrape) if rule == "up" else lag


def _regate(setup, release: str, for_s: float, judgement=None) -> float:
    """How long a `[$window]` rule whose evidence was discarded may wait for its trailing window
    to breach again: a flapping release's "off" half, the trailing window and three scrapes; and
    no less than a fresh deploy of it is allowed (its judgement's lag: the window starts afresh,
    a young `[$window]` dips below the threshold in an "off" half and restarts `for`, and the
    trailing gate may hold for `[$window]`'s span; sim seed 20001814)."""
    p = setup.profile(release)
    if not p.flap_on_s:
        return 0.0
    fresh = judgement.lag if judgement is not None and judgement.bad else 0.0
    return max(p.flap_off_s + trailing_of(for_s, setup.scrape, setup.interval) + 3 * setup.scrape, fresh)


def _moved_after(host: SimHost, since: float, until: float, release: str) -> bool:
    """The deploy tool put another release in place after `since`."""
    return any(since < c.at <= until and c.by == "tool" and c.release != release for c in host.links)


def _eligible(s: Step, release: str, at: float) -> bool:
    for e in s.host.journal:
        if e["kind"] == "mark" and e.get("release") == release and e.get("by") == "sim-human" \
                and e.get("mark") == "good":
            return False
    # Known-good before this deploy: its window passed here, or the fleet marked it good (it
    # survived its window on known_good_hosts hosts, design section 11; check 3 of section 5
    # tells a rule firing on it "known-good", acts not) (sim seed 2000512). Unless marked bad
    # or rolled back here since.
    known_good = False
    for e in s.host.journal:
        if e["_t"] > at or e.get("release") != release:
            continue
        if e["kind"] == "window_passed" or (e["kind"] == "mark" and e.get("by") == "fleet" and e.get("mark") == "good"):
            known_good = True
        elif (e["kind"] == "mark" and e.get("mark") == "bad") or e["kind"] == "rollback_intent":
            known_good = False
    return not known_good


def _halted(s: Step) -> bool:
    state = s.state()
    return state is not None and bool(state.halted)


def known_good_only_with_evidence(s: Step) -> list[str]:
    """A release becomes known-good by the watcher (its window passed) only if, by truth, no
    rollback rule showed a breach on it to a clean tick before (a probe: at or before) the tick
    that marks it; it served for most of its window; and it was never marked bad before. A
    release marked good by the fleet was never marked bad here either."""
    out = []
    for e in s.events:
        if e["kind"] == "window_passed":
            release, t = e["release"], e["_t"]
            # The window the watcher knows: a deploy that put back the release it last knew,
            # while it did not look, is no deploy to it (visible), and the window it watches
            # runs from the deploy before (sim seed 18000702: r2 replaced by r0 while `current`
            # could not be read, then r2 again; the watcher saw r2 all along).
            d = last_tool_deploy(s.host, release, t, seen=True)
            if d is not None:
                out += _breached_before(s, release, d[0], t)
                up = sum(max(0.0, min(seg.end, t) - max(seg.ready, d[0])) for seg in s.host.app.segments
                         if seg.release == release and seg.ready < t and seg.end > d[0])
                # The time under the deploy lock is the deploy at work (restarts), not the release.
                locked = sum(max(0.0, min(b, t) - max(a, d[0])) for a, b in s.host.lock_spans)
                if up < 0.5 * (t - d[0] - locked):
                    out.append(f"{release} marked known-good at {s.rel(t)} though it served {up:.0f}s of "
                               f"{t - d[0]:.0f}s of its window")
                # And the watcher watched it: its ticks cover most of the window (a tick covers
                # the time since the one before, up to three intervals).
                starts = [r.start for r in s.host.ticks if d[0] < r.start <= t and not r.crashed]
                covered = sum(min(b - a, 3 * s.setup.interval) for a, b in zip(starts, starts[1:], strict=False))
                if starts and covered < 0.5 * (t - starts[0] - locked):
                    out.append(f"{release} marked known-good at {s.rel(t)} though the watcher watched {covered:.0f}s "
                               f"of its {t - starts[0]:.0f}s window")
        if (e["kind"] == "window_passed" or (e["kind"] == "mark" and str(e.get("by", "")).startswith("fleet")
                                              and e.get("mark") == "good")):
            release = e["release"]
            # A rollback's intent marks the release bad once the state is saved after it: a
            # service that died in that save switched nothing and never marked it (rollback.py:
            # "if this write fails, nothing is switched"), and its successor judges the release
            # afresh (sim seed 5000326).
            earlier = [x for x in s.host.journal if x["_t"] < e["_t"] and x.get("release") == release
                       and ((x["kind"] == "mark" and x.get("mark") == "bad")
                            or (x["kind"] == "rollback_intent" and _saved_after(s.host, x["_t"])))]
            if earlier:
                out.append(f"{release} made known-good ({e['kind']}) after it was marked bad")
    return out


def _saved_after(host: SimHost, t: float) -> bool:
    """Whether the process that was running at `t` saved its state at or after `t`."""
    restarted = min((st for st in host.starts if st > t), default=float("inf"))
    return any(t <= sv < restarted for sv in host.saves)


def _breached_before(s: Step, release: str, deployed: float, t: float) -> list[str]:
    """A breach of `release` by its profile (not a passing restart) that lasts to `t` and that a
    clean tick before `t` (a probe's: at `t` too) could see."""
    seg = s.host.app.segment_at(t)
    if seg is None or seg.release != release:
        return []
    for rule in s.setup.rule_fors():
        judgement = s.setup.judge(release).get(rule)
        if judgement is None or not judgement.bad:
            continue
        origin, offset = (seg.start, 0.0) if seg.ready == INF else (seg.ready, judgement.breach_from)
        start = origin + offset
        for rec in s.host.ticks:
            # The breach's start in the truth's own arithmetic (age = t - ready, as
            # truth.Profile asks it): `t >= ready + after` differs from it in the last bit, and
            # a probe at that very instant answered healthy (sim seed 13000624).
            if rec.start <= deployed or rec.start - origin < offset + judgement.lag or not clean(rec):
                continue
            if rec.start > t or (rule in RATE_RULES and rec.start >= t):
                break
            return [f"{release} marked known-good at {s.rel(t)} though {rule} breaches since {s.rel(start)}, "
                    f"seen by the tick at {s.rel(rec.start)} ({s.setup.profile(release).describe()})"]
    return []


def rollback_target_is_known_good(s: Step) -> list[str]:
    """An automatic rollback's target is known-good, and no barrier lies between it and the
    release rolled back (that release included, the target excluded), in the watcher's own
    release order."""
    out = []
    state = None
    for e in s.events:
        if e["kind"] != "rollback_intent" or e.get("manual"):
            continue
        state = state or s.state()
        if state is None:
            continue
        release, target = e["release"], e["target"]
        rec = state.releases.get(target)
        if rec is None or rec.mark != "good":
            out.append(f"rolled back {release} -> {target}, which is {rec.mark if rec else 'unknown'}, not known-good")
        cur = state.releases.get(release)
        if cur is not None and cur.barrier:
            out.append(f"rolled back {release} -> {target} across {release}, a barrier")
        if rec is not None and cur is not None and rec.deployed_at is not None and cur.deployed_at is not None:
            between = [r.id for r in state.releases.values() if r.barrier and r.deployed_at is not None
                       and rec.deployed_at < r.deployed_at < cur.deployed_at]
            if between:
                out.append(f"rolled back {release} -> {target} across the barrier {', '.join(between)}")
    return out


STATE_DIFFERENCE_SAID = {"current_unreadable", "backend_error", "deploy_during_tick", "verify_failed",
                         "rollback_failed", "reconcile", "rollback_not_made"}


def state_agrees_with_backend(s: Step) -> list[str]:
    """At the end of every tick the watcher finished, `state.current` is the release the
    backend's `current` names, or the tick journaled why it may not be (the backend could not
    be read, a deploy landed during the tick, a rollback failed or did not verify). A deploy
    during the tick itself is not the tick's to know."""
    out = []
    for rec in s.ticks:
        if rec.crashed or rec.link_moved_by_tool or rec.faults:
            continue
        if rec is not s.host.ticks[-1] or s.host.watcher is None:
            continue
        current = s.host.watcher.state.current
        link = s.host.link_target()
        kinds = {e["kind"] for e in s.host.journal[rec.journal_from:rec.journal_to]}
        if current != link and not kinds & STATE_DIFFERENCE_SAID:
            out.append(f"state.current is {current} but the backend's current is {link} "
                       f"(this tick journaled: {', '.join(sorted(kinds)) or 'nothing'})")
    return out


def every_deploy_is_watched(s: Step) -> list[str]:
    """A deploy by the deploy tool that changed the release is journaled as a deploy (its
    watch window opens) by the end of the first clean tick that starts after it, unless
    another deploy or a switch replaced it first, or it put back the release the watcher last
    saw while it was not looking (`visible`)."""
    out = []
    pending = s.memory.setdefault("pending", {})
    known = s.memory.setdefault("known", set())
    for d in s.host.deploys:
        if (d[0], d[1]) not in known and d[3] != d[1]:
            known.add((d[0], d[1]))
            pending[(d[0], d[1])] = d
    for key, d in list(pending.items()):
        if any(r.start > d[0] for r in s.host.ticks) and not visible(s.host, d):
            del pending[key]
    for rec in s.ticks:
        for key, d in list(pending.items()):
            t_d, release, _lock, _before, index = d
            if rec.start <= t_d:
                continue
            if any(t_d < c.at <= rec.end for c in s.host.links):
                del pending[key]
                continue
            if not clean(rec) or rec.link_moved_by_tool:
                continue
            del pending[key]
            seen = [e for e in s.host.journal[index:] if e["kind"] == "deploy" and e.get("release") == release]
            # The release a rollback was switching to when the service died, deployed before it
            # started again: on disk, the same as the rollback's own switch, which its restart
            # reconciles as done (rollback.reconcile). A known-good release, as every target is,
            # unwatched: the documented price (sim seed 6000480).
            reconciled = [e for e in s.host.journal[index:] if e["kind"] == "reconcile" and e.get("target") == release]
            if not seen and not reconciled:
                out.append(f"{release}, deployed at {s.rel(t_d)}, is current but no deploy was journaled by the "
                           f"end of the clean tick at {s.rel(rec.start)}: its window never opened")
    return out


def halt_is_true(s: Step) -> list[str]:
    """A halt says what happened: "did not clear on T" only when T served from the switch to
    the halt, and not before the confirmation's bound (confirm.clear_bound) had passed since
    the switch; "did not verify" only when no deploy landed between the rollback's intent and
    its verification."""
    out = []
    for e in s.events:
        t = e["_t"]
        if e["kind"] == "rollback_not_cleared":
            # The switch of the rollback being confirmed: after its intent (one that died before
            # journaling its switch was reconciled at the restart, with no switch line: an
            # older rollback's must not stand in for it, sim seed 7000909).
            intent_at = next((x["_t"] for x in reversed(s.host.journal) if x["kind"] == "rollback_intent"
                              and x.get("target") == e.get("target") and x["_t"] <= t), -INF)
            switch = next((x for x in reversed(s.host.journal) if x["kind"] in ("rollback_switched", "reconcile")
                           and x.get("target") == e.get("target") and intent_at <= x["_t"] <= t), None)
            if switch is not None and s.host.config is not None:
                from watcher.service.confirm import clear_bound

                bound = clear_bound(s.host.config, e.get("rules") or [])
                if t - switch["_t"] < bound - s.setup.interval - 1.0:
                    out.append(f"halted: {e['rules']} 'did not clear on {e['target']}' {t - switch['_t']:.0f}s after "
                               f"the switch, before its bound of {bound:.0f}s")
            switched = switch["_t"] if switch is not None else t - float(e.get("seconds") or 0.0)
            moved = [c for c in s.host.links if switched < c.at <= t and c.by == "tool" and c.release != e["target"]]
            if moved:
                out.append(f"halted: {e['rules']} 'did not clear on {e['target']}', but {moved[0].release} was "
                           f"deployed at {s.rel(moved[0].at)}, during the confirmation")
        if e["kind"] == "verify_failed":
            intent = next((x for x in reversed(s.host.journal) if x["kind"] == "rollback_intent"
                           and x.get("target") == e.get("target") and x["_t"] <= t), None)
            since = intent["_t"] if intent is not None else t
            moved = [c for c in s.host.links if since <= c.at <= t and c.by == "tool" and c.release != e.get("target")]
            # The backend could not say what was current at the verification's end (injected
            # faults): the watcher cannot know a deploy landed, and says so in the halt.
            blind = "could not say which release is current after it" in str(e.get("detail", ""))
            if moved and not blind:
                out.append(f"halted: {e.get('release')} -> {e.get('target')} 'did not verify', but "
                           f"{moved[0].release} was deployed at {s.rel(moved[0].at)}, during the verification")
    return out


def acknowledged_request_survives(s: Step) -> list[str]:
    """A request the running service acknowledged (`request_done`, ok, which the waiting CLI
    reports as applied) is in the state every later start loads: the service died neither
    between the acknowledgement and the save of its effect."""
    out = []
    acked = s.memory.setdefault("acked", [])
    for e in s.events:
        if e["kind"] == "request_done" and e.get("ok"):
            req = next((r for r in s.host.requests if r.id == e.get("request")), None)
            if req is not None:
                acked.append((e["_t"], req))
    checked = s.memory.setdefault("starts", 0)
    for t_start, state in s.host.loaded[checked:]:
        for t_ack, req in acked:
            if t_ack >= t_start:
                continue
            saved = [x for x in s.host.saves if t_ack <= x < t_start]
            if saved:
                continue
            missing = _effect_missing(req, state)
            if missing:
                out.append(f"`{req.command} {_args(req)}` was acknowledged at {s.rel(t_ack)}, but the state the "
                           f"service loaded at {s.rel(t_start)} {missing}")
    s.memory["starts"] = len(s.host.loaded)
    if s.host.loaded[checked:]:
        acked[:] = [(t, r) for t, r in acked if t >= s.host.loaded[-1][0]]
    return out


def _args(req) -> str:
    return " ".join(f"{k}={v}" for k, v in req.args.items() if k != "by" and v is not None)


def _effect_missing(req, state) -> str | None:
    a = req.args
    if req.command == "pause" and state.paused_until is None:
        return "is not paused"
    if req.command == "resume" and state.paused_until is not None:
        return "is still paused"
    if req.command == "resolve" and state.halted:
        return "is still halted"
    if req.command == "mark":
        rec = state.releases.get(a["release"])
        if a["mark"] in ("good", "bad") and (rec is None or rec.mark != a["mark"]):
            return f"has {a['release']} {rec.mark if rec else 'unmarked'}"
        if a["mark"] == "barrier" and (rec is None or not rec.barrier):
            return f"has no barrier on {a['release']}"
    return None


def watch_window_is_true(s: Step) -> list[str]:
    """The current release's watch window, as the watcher counts it, ends `watch_window` after
    the first tick that saw the deploy, give or take an interval: never sooner (a window that
    ends early blesses a release, or calls its failure "outside window"); later only by the
    time it was held for the deploy lock, a pending rule or a retry."""
    out = []
    setup = s.setup
    for e in s.events:
        if e["kind"] in ("window_passed", "window_ended") and e.get("release"):
            seen = _seen(s, e["release"], e["_t"])
            if seen is not None and e["_t"] < seen + setup.watch_window - setup.interval - 1.0:
                out.append(f"{e['release']}'s window ended at {s.rel(e['_t'])}, {seen + setup.watch_window - e['_t']:.0f}s "
                           f"before its deploy (seen at {s.rel(seen)}) plus watch_window")
    w = s.host.watcher
    if not s.ticks or w is None or not s.host.alive or s.ticks[-1].crashed:
        return out
    st = w.state
    if st.window_ends is None or st.current is None or st.current != s.host.link_target():
        return out
    last = max((c for c in s.host.links if c.at <= s.t), key=lambda c: c.at, default=None)
    if last is None or last.by != "tool":
        return out  # current by the watcher's switch: no deploy's window to compare with
    seen = _seen(s, st.current, s.t)
    if seen is None:
        return out
    mine = st.window_ends - w.clock()
    truth = seen + setup.watch_window - s.t
    # Held, and a scrape interval after (window.lock_settling counts that as held too).
    spans = [(a, b + setup.scrape + setup.interval) for a, b in s.host.lock_spans]
    held = sum(min(b, s.t) - max(a, seen) for a, b in spans if b > seen and a < s.t)
    # Before its end, a window moves only while a wait holds it (the deploy lock, a backend
    # retry); from its end on, a pending rule holds it too, a tick at a time.
    waits = held + setup.interval * sum(1 for r in s.host.ticks if r.start >= seen and r.faults)
    slack = waits + 3 * setup.interval + s.host.crash_downtime(seen - setup.interval)
    if any(t >= seen - setup.interval for t in s.host.starts):
        slack += setup.scrape + setup.interval  # a start waits a settle for a lock it saw before
    if truth <= 0:
        slack += lookback(setup) + setup.verify_attempts * setup.verify_every
        if any(rs.phase.value == "pending" or rs.failures for rs in st.rules.values()):
            return out  # held a tick at a time until decided, blind ones until they see again
    key = (seen, st.current)
    if key in s.memory.setdefault("said", set()):
        return out
    if mine < truth - setup.interval - 1.0:
        s.memory["said"].add(key)
        out.append(f"{st.current}'s window ends in {mine:.0f}s by the watcher, {truth:.0f}s by the deploy: shorter")
    elif mine > truth + slack:
        s.memory["said"].add(key)
        out.append(f"{st.current}'s window ends in {mine:.0f}s by the watcher, {truth:.0f}s by the deploy: longer")
    return out


def _seen(s: Step, release: str, before: float) -> float | None:
    """When the watcher first knew of the deploy tool's last deploy of `release`: the first tick
    that started after it and finished (the service may have been down, or died in that tick
    before saving), or a `mark deployed` the CLI applied before that."""
    d = last_tool_deploy(s.host, release, before)
    if d is None or not visible(s.host, d):
        return None
    tick = next((r.start for r in s.host.ticks if r.start > d[0] and not r.crashed), None)
    lines = [e["_t"] for e in s.host.journal[d[4]:] if e["kind"] == "deploy" and e.get("release") == release
             and e["_t"] <= before]
    if len(lines) > 1:
        # A `mark deployed` of the current release (a redeploy the link does not show) opened
        # its window again (sim seed 9002536).
        return lines[-1]
    said = lines[0] if lines else next((e["_t"] for e in s.host.journal[d[4]:] if e["kind"] == "deploy"
                                         and e.get("release") == release), None)
    return min((t for t in (tick, said) if t is not None), default=None)


# ---------------------------------------------------------------------------------------------
# The fleet


def one_verdict_per_release(world: World, memory: dict) -> list[tuple[str, str]]:
    """In etcd a release's verdict is written once, first writer wins; the one change allowed
    is bad over good (compare-and-swap); bad is never replaced, and never by good."""
    out = []
    seen = memory.setdefault("seen", 0)
    history = world.fleet.etcd.history
    for w in history[seen:]:
        if not w.key.endswith("/verdict") or w.by in ("somebody else", "etcd"):
            continue
        old = well_formed_verdict(w.old) if w.old is not None else None
        new = well_formed_verdict(w.value) if w.kind == "put" else None
        if old is None:
            continue
        if old["verdict"] == "bad" and (new is None or new != old):
            out.append((w.by, f"{w.key}: a bad verdict replaced by {w.value[:80]!r}"))
        elif old["verdict"] == "good" and (new is None or new["verdict"] != "bad"):
            out.append((w.by, f"{w.key}: a good verdict replaced by {w.value[:80]!r}, which is not bad"))
    memory["seen"] = len(history)
    return out


def fleet_trouble_is_said(s: Step) -> list[str]:
    """A fleet link that stops working while its watcher runs (a thread dead, etcd not
    answering) is told to a human ("fleet blind") within a lease and a few ticks, plus the time
    the watcher spent inside ticks meanwhile (a rollback's verification sleeps in its tick)."""
    out = []
    if not s.setup.fleet or not s.host.alive:
        return out
    run = s.world.fleet.runs.get(s.host.name)
    if run is None or run.stopped:
        return out
    setup = s.setup
    grace = setup.lease + 2 * max(0.5, setup.lease / 3) + 3 * setup.interval + 1.0
    trouble = run.dead_at
    if trouble is None:
        last = run.last_ok if run.last_ok is not None else run.started
        if s.t - last > grace:
            trouble = last
    if trouble is None or s.host.tick_record is not None:
        # Inside a tick (verifying a rollback in its sleeps): the watcher says what it learned
        # of the fleet at its next tick, after the verification (sim seed 18000111).
        return out
    busy = sum(max(0.0, min(r.end, s.t) - max(r.start, trouble)) for r in s.host.ticks if r.end > trouble)
    if s.t - trouble < grace + busy:
        return out
    said = s.memory.setdefault("said", set())
    if (run.started, trouble) in said:
        return out
    if not any(t >= trouble and m.kind == "fleet_blind" for t, m in s.host.messages):
        said.add((run.started, trouble))
        why = run.sync_dead or run.watch_dead or "etcd does not answer"
        out.append(f"the fleet link stopped working at {s.rel(trouble)} ({why}); nobody was told")
    return out


def etcd_values_checked(world: World, memory: dict) -> list[tuple[str, str]]:
    """Nothing read from etcd is trusted unchecked: a verdict that is not one this version
    writes never makes `gate` say go; a member key without a lease or with wrong types is not
    a live member in any host's view; a release is declared known-good fleet-wide only on
    survived marks the watchers wrote."""
    out = []
    if not world.setup.fleet:
        return out
    etcd = world.fleet.etcd
    host0 = world.hosts[0]
    root = host0.config.fleet.root
    keys = Keys(root)
    said = memory.setdefault("said", set())
    try:
        view = read_view(FakeGateway(etcd, "gate", lambda: True), host0.config.fleet)
    except Exception as exc:  # noqa: BLE001 - the gate itself failing is a finding
        if "gate-crash" not in said:
            said.add("gate-crash")
            out.append(("gate", f"`gate` fails on what etcd holds: {type(exc).__name__}: {exc}"))
        view = None
    for key, stored in etcd.kv.items():
        parsed = keys.parse(key)
        if parsed is None:
            continue
        what, release, host = parsed
        if what == "verdict" and well_formed_verdict(stored.value) is None and view is not None:
            answer = gate_answer(release, view, None)
            if answer.code is GateCode.GO and ("gate", key, stored.value) not in said:
                said.add(("gate", key, stored.value))
                out.append(("gate", f"`gate {release}` says go on {stored.value[:80]!r}"))
    for h in world.hosts:
        run = world.fleet.runs.get(h.name)
        if run is None or run.stopped or not h.alive:
            continue
        for name in run.link.view().members:
            stored = etcd.kv.get(keys.member(name))
            if stored is None:
                continue
            if stored.lease == 0 or not well_formed_member(stored.value):
                if (h.name, name, stored.value) not in said:
                    said.add((h.name, name, stored.value))
                    out.append((h.name, f"counts {name} as a live member from {stored.value[:80]!r} "
                                        f"(lease {stored.lease or 'none'})"))
    seen = memory.setdefault("writes", 0)
    for w in etcd.history[seen:]:
        if w.kind != "put" or not w.key.endswith("/verdict") or w.by in ("somebody else", "etcd"):
            continue
        v = well_formed_verdict(w.value)
        if v is None or v["verdict"] != "good":
            continue
        release = keys.parse(w.key)[1]
        real = {h for k, st in etcd.kv.items() if (p := keys.parse(k)) and p[0] == "survived" and p[1] == release
                and (h := p[2]) and _well_formed_survived(st.value)}
        if len(real) < world.setup.known_good_hosts:
            out.append((w.by, f"declared {release} known-good fleet-wide on {len(real)} real survived mark(s) "
                              f"(known_good_hosts {world.setup.known_good_hosts})"))
    memory["writes"] = len(etcd.history)
    return out


def _well_formed_survived(raw: bytes) -> bool:
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return False
    return isinstance(data, dict) and isinstance(data.get("at"), (int, float))


def fleet_marks_checked(s: Step) -> list[str]:
    """A release marked good here by the fleet had a well-formed good verdict in etcd that a
    watcher wrote, before the mark. Garbage written over it since is not what the host read:
    the fleet cache keeps the last verdict it could read (sim seed 5000191, as 4000038 for a
    bad one)."""
    out = []
    if not s.setup.fleet:
        return out
    for e in s.events:
        if e["kind"] == "mark" and str(e.get("by", "")).startswith("fleet") and e.get("mark") == "good":
            if not watcher_wrote(s, e["release"], "good", e["_t"]):
                key = f"{s.host.config.fleet.root}releases/{e['release']}/verdict"
                last = next((w for w in reversed(s.world.fleet.etcd.history)
                             if w.key == key and w.kind == "put" and w.at <= e["_t"]), None)
                out.append(f"{e['release']} marked good by the fleet on {last.value[:80] if last else None!r}")
    return out


HOST_INVARIANTS: list[Callable[[Step], list[str]]] = [
    no_false_rollback,
    bad_release_rolled_back_or_told,
    known_good_only_with_evidence,
    rollback_target_is_known_good,
    state_agrees_with_backend,
    every_deploy_is_watched,
    halt_is_true,
    acknowledged_request_survives,
    watch_window_is_true,
    fleet_trouble_is_said,
    fleet_marks_checked,
]
WORLD_INVARIANTS = [one_verdict_per_release, etcd_values_checked]
NAMES = [f.__name__ for f in HOST_INVARIANTS + WORLD_INVARIANTS] + ["deploy_never_overwritten"]


class Checker:
    def __init__(self, world: World):
        self.world = world
        self.violations: list[Violation] = []
        self._cursor: dict[str, tuple[int, int]] = {}
        self._memory: dict[tuple[str, str], dict] = {}

    def record(self, invariant: str, host: str, what: str) -> None:
        self.violations.append(Violation(invariant, host, self.world.t - self.world.t0, what))

    def check(self, final: bool = False) -> None:
        for host in self.world.hosts:
            host.read_journal()
            events_at, ticks_at = self._cursor.get(host.name, (0, 0))
            events, ticks = host.journal[events_at:], host.ticks[ticks_at:]
            self._cursor[host.name] = (len(host.journal), len(host.ticks))
            for invariant in HOST_INVARIANTS:
                memory = self._memory.setdefault((invariant.__name__, host.name), {})
                for what in invariant(Step(self.world, host, events, ticks, memory, final)):
                    self.record(invariant.__name__, host.name, what)
        if self.world.setup.fleet:
            for invariant in WORLD_INVARIANTS:
                memory = self._memory.setdefault((invariant.__name__, ""), {})
                for who, what in invariant(self.world, memory):
                    self.record(invariant.__name__, who, what)

    def switching(self, host: SimHost, target: str) -> None:
        """deploy_never_overwritten: the watcher's switch replaces the release its recorded
        intent rolls back, and never while the deploy tool holds the deploy lock."""
        link = host.link_target()
        try:
            intent = StateStore(host.state_dir).load().intent
        except Exception:  # noqa: BLE001 - no intent to compare with
            intent = None
        if host.tool_lock_fd is not None:
            self.record("deploy_never_overwritten", host.name, f"switched to {target} while the deploy tool holds "
                                                               "the deploy lock")
        elif intent is not None and intent.get("from") != link:
            self.record("deploy_never_overwritten", host.name, f"switched {link} to {target}, but the intent "
                                                               f"rolls back {intent.get('from')}: a deploy overwritten")
