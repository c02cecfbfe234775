"""The fleet in the tick: what the service asks of the fleet and tells it, without waiting.

The service calls these at its named steps (watcher/service/tick.py); each returns at once, since
the talking to etcd runs on the FleetLink's own threads (watcher/fleet/link.py):

    learn        (start of a tick) "fleet blind"/"fleet recovered" once each; verdicts the
                 watch delivered: journaled, and a release bad fleet-wide is marked bad here
                 (never a rollback target); one known-good fleet-wide is marked good unless
                 it is current (its own window decides)
    triggers     a bad verdict another host wrote for the current release -> a Finding whose
                 rule is "fleet:RULE", naming the originating host, for the decider
    symptoms     the rollback rules firing here that fire at the same time on hosts still on a
                 known-good release (fleetmodel.fleet_wide_symptom): not the release's fault
    rolled_back  a rollback here (automatic or by hand): the bad verdict, first writer wins
    survived     a window survived here: the mark; known-good fleet-wide after K hosts
    report       this host's membership: release, phase, window, breaching rules since when

What it publishes carries wall times (`to_wall`, from the service's Timebase): the service's
own times are its steady time, which another host cannot compare with its clock.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Summary

from watcher.base.format import format_value, untrusted
from watcher.config.schema import WatcherConfig
from watcher.core import messages
from watcher.core.fleetmodel import (
    BAD,
    FLEET_RULE_PREFIX,
    GOOD,
    HOST_MAX,
    REASON_MAX,
    RULE_MAX,
    FleetVerdict,
    FleetView,
    Member,
    fleet_wide_symptom,
    is_fleet_rule,
)
from watcher.core.model import Mark
from watcher.core.rules import Finding, Outcome, Phase
from watcher.fleet.link import MEMBER_REFRESH, FleetLink
from watcher.service.recorder import Recorder
from watcher.service.telemetry import Telemetry
from watcher.store.state import State

# How long after its tick a peer's membership may reach this host: the tick's own duration
# (probes that time out, queries) and etcd's watch, seconds on a loaded member.
PEER_REPORT_LAG = 5.0

log = logging.getLogger(__name__)


class Seat(Recorder, Protocol):
    """What the coordinator needs of the service (tick.Watcher): its state and config, and the
    Recorder for what it journals and tells."""

    state: State
    config: WatcherConfig

def is_fleet_finding(f: Finding) -> bool:
    return is_fleet_rule(f.rule)


def fleet_finding(v: FleetVerdict) -> Finding:
    """A bad verdict from another host, in the words of a firing rollback rule. Every word of it
    came from etcd, not from this host's config: each is `untrusted` (one line, no mention,
    capped) before it reaches a message, a log line or the journal's reason."""
    rule = untrusted(v.rule or "manual", RULE_MAX)
    unit = untrusted(v.unit, 12)
    seen = f"{rule} was {format_value(v.value, unit)} there" if v.value is not None else f"{rule} there"
    reason = untrusted(v.reason, REASON_MAX)
    return Finding(rule=f"{FLEET_RULE_PREFIX}{rule}", action="rollback",
                   condition=f"bad fleet-wide: {untrusted(v.host, HOST_MAX)} rolled {v.release} back", since=v.at,
                   detail=f"{seen}{': ' + reason if reason else ''}")


class FleetCoordinator:
    def __init__(self, link: FleetLink, telemetry: Telemetry | None = None,
                 to_wall: Callable[[float], float] | None = None):
        self.link = link
        self.config = link.config
        # The service's times are its steady time (base.clock.Timebase); what goes to etcd is
        # wall time, the one clock hosts share. A steady time sent as is looked minutes stale
        # to every peer once this host's wall clock had stepped after its start.
        self.to_wall = to_wall or (lambda t: t)
        self._metrics = _FleetMetrics(telemetry.registry) if telemetry is not None else None

    def start(self) -> None:
        self.link.start()

    def stop(self) -> None:
        self.link.stop()

    @property
    def view(self) -> FleetView:
        return self.link.view()

    # ------------------------------------------------------------------------------------------

    def learn(self, w: Seat, now: float) -> None:
        for notice in self.link.take_notices():
            w.journal(f"fleet_{notice.kind}", detail=notice.detail)
            if notice.kind == "blind":
                w.notify(messages.fleet_blind(w.ctx, notice.detail))
            else:
                w.notify(messages.fleet_recovered(w.ctx, notice.detail))
        for verdict, received in self.link.take_verdicts():
            delay = max(0.0, received - verdict.at)
            w.journal("fleet_verdict", release=verdict.release, verdict=verdict.verdict, host=verdict.host,
                      rule=verdict.rule, value=verdict.value, reason=verdict.reason, delay=round(delay, 3))
            if self._metrics is not None:
                self._metrics.learned.labels(verdict=verdict.verdict).inc()
                if verdict.host != self.config.host:
                    self._metrics.propagation.observe(delay)
            self._mark(w, verdict, now)
        if self._metrics is not None:
            self._metrics.update(self.link)

    def _mark(self, w: Seat, v: FleetVerdict, now: float) -> None:
        s = w.state
        if v.host == self.config.host:
            return  # our own verdicts are marked already
        rec = s.releases.get(v.release)
        # Bad is marked even on the current release: the decider acts on it through triggers(),
        # and the mark must outlive the verdict's one pass through this queue (the release may
        # stop being current at this very tick, and must never be a rollback target after).
        if v.verdict == BAD and (rec is None or rec.mark != Mark.BAD):
            rec = s.release(v.release, now)
            host = untrusted(v.host, HOST_MAX)
            rec.mark, rec.marked_at, rec.reason = Mark.BAD.value, now, f"bad fleet-wide: rolled back on {host}"
            w.journal("mark", release=v.release, mark="bad", by=f"fleet ({host})")
        elif v.verdict == GOOD and v.release != s.current and (rec is None or rec.mark is None):
            rec = s.release(v.release, now)
            rec.mark, rec.marked_at, rec.reason = Mark.GOOD.value, now, f"known-good fleet-wide ({untrusted(v.reason, REASON_MAX)})"
            w.journal("mark", release=v.release, mark="good", by="fleet")

    def triggers(self, current: str | None) -> list[Finding]:
        if not current:
            return []
        v = self.link.view().verdicts.get(current)
        if v is None or v.verdict != BAD or v.host == self.config.host:
            return []
        return [fleet_finding(v)]

    def symptoms(self, w: Seat, firing: Sequence[Finding], now: float) -> tuple[frozenset[str], str]:
        """The local rollback rules firing here that are fleet-wide symptoms, and why."""
        s = w.state
        local = [f for f in firing if f.action == "rollback" and not is_fleet_finding(f)]
        if not local or not s.current:
            return frozenset(), ""
        view = self.link.view()
        known_good = frozenset(r for r, rec in s.releases.items() if rec.mark == Mark.GOOD)
        # A membership is rewritten on every change and at least every MEMBER_REFRESH.
        stale_after = MEMBER_REFRESH + 3 * w.config.interval
        found, unseen, young, reasons = set(), set(), set(), []
        grace = self.outage_grace(w)
        for f in local:
            # On the link's monotonic clock, as the memberships' arrival (FleetView.arrived): our
            # breach began as long ago as the service's steady time says.
            mono = self.link.monotonic()
            since = mono - (now - (f.since if f.since is not None else now))
            symptom = fleet_wide_symptom(view, self.config.host, s.current, f.rule, since, mono,
                                         self.config.symptom_window, stale_after, known_good)
            if symptom.fleet_wide:
                found.add(f.rule)
                reasons.append(symptom.reason)
            elif symptom.unseen:
                unseen.add(f.rule)
                reasons.append(symptom.reason)
            elif f.since is not None and now - f.since < grace:
                young.add(f.rule)
        if not found:
            return frozenset(), ""
        if young:
            # An outage is in sight (a rule fires here and on the known-good hosts), and these
            # rules began breaching too recently for those hosts to show them yet: they tick out
            # of step and report through etcd (sim seed 1000056: /health failed here 0.1 s
            # before it did there), and outside its window a host reads `[$window]` as
            # max_window, so the same step in a ratio crosses the threshold there up to
            # max_window later (seed 5001233: `errors` fired here 8 s before the old host's
            # report arrived). Rolled back meanwhile, the healthy release did not verify (the
            # outage fails the target too), was halted on and declared bad fleet-wide. Each
            # such rule is given `grace` from its breach; a release whose own failure began
            # during the outage is rolled back that much later.
            reasons.append(f"{', '.join(sorted(young))} began breaching less than {grace:g}s ago: waiting for the "
                           "hosts on a known-good release to show it")
        # A database outage fails the health probe everywhere, but the error ratio only where
        # there is traffic: the hosts still on the known-good release, quiet at night, cannot
        # witness `errors`. A rule nobody could compare goes with the ones that have witnesses;
        # rolled back on it alone, the release was declared bad fleet-wide for the outage.
        return frozenset(found | unseen | young), "; ".join(reasons)

    def outage_grace(self, w: Seat) -> float:
        """How long after a rule began breaching here the hosts on a known-good release can
        take to show the same outage: a ratio over max_window crossing the threshold, their
        tick and their report's way (coordinator.symptoms)."""
        return w.config.max_window + w.config.interval + PEER_REPORT_LAG

    def rolled_back(self, release: str, findings: Sequence[Finding], reason: str, at: float) -> None:
        """Tell the fleet (through the outbox) that `release` is bad here."""
        local = [f for f in findings if not is_fleet_finding(f)]
        if findings and not local:
            return  # rolled back because another host said so: its verdict is already there
        first = local[0] if local else None
        self.link.publish_verdict(FleetVerdict(release, BAD, self.config.host, self.to_wall(at),
                                               first.rule if first else "", first.value if first else None, reason,
                                               first.unit if first else ""))

    def survived(self, release: str, at: float) -> None:
        self.link.publish_survived(release, self.to_wall(at))

    def report(self, w: Seat, now: float) -> None:
        s = w.state
        # Pending, firing, or counting failures toward its `failures` (a probe failing 2 of 3 is
        # on its way as much as a pending rule): peers compare their breaches with these.
        breaching = {name: self.to_wall(rs.breach_since) for name, rs in s.rules.items()
                     if (rs.phase in (Phase.PENDING, Phase.FIRING) or rs.failures > 0) and rs.breach_since is not None
                     and (rule := w.config.rule(name)) is not None and rule.action == "rollback"}
        unseen = frozenset(name for name, rs in s.rules.items()
                           if rs.last_outcome in (Outcome.NO_DATA.value, Outcome.ERROR.value) and name not in breaching
                           and (rule := w.config.rule(name)) is not None and rule.action == "rollback")
        if s.lock_seen:
            # A deploy holds the lock: what the rules read is its restart (a closed port, its
            # errors), under the release it replaces, which may still be `current` here when
            # the switch landed during the reads. This host discards it (window.
            # discard_deploy_evidence); peers must not take it for a witness of an outage
            # either: it excused another host's bad release as a fleet-wide symptom (sim seed
            # 4000618). Neither witness nor denial until the lock is let go.
            unseen = frozenset(r.name for r in w.config.rules if r.action == "rollback")
            breaching = {}
        rec = s.releases.get(s.current or "")
        in_window = s.in_watch_window(now)
        phase = "halted" if s.halted else ("in_window" if in_window else "watching")
        previous = None
        if s.current:
            older = sorted(((r.deployed_at or 0.0, rid) for rid, r in s.releases.items()
                            if rid != s.current and r.deployed_at is not None), reverse=True)
            previous = older[0][1] if older else None
        self.link.report(Member(self.config.host, s.current, phase, in_window, bool(rec and rec.mark == Mark.GOOD),
                                breaching, self.to_wall(now), previous, unseen))


class _FleetMetrics:
    def __init__(self, registry: CollectorRegistry):

        self.members = Gauge("rollback_watcher_fleet_members", "Hosts with a live membership in the fleet",
                             registry=registry)
        self.blind = Gauge("rollback_watcher_fleet_blind", "1 while etcd has not answered for a lease TTL",
                           registry=registry)
        self.learned = Counter("rollback_watcher_fleet_verdicts_learned", "Verdicts learned from etcd",
                               ["verdict"], registry=registry)
        self.errors = Gauge("rollback_watcher_fleet_etcd_errors", "Failed rounds with etcd since start",
                            registry=registry)
        self.requests = Gauge("rollback_watcher_fleet_etcd_requests", "Requests to etcd since start",
                              registry=registry)
        self.propagation = Summary("rollback_watcher_fleet_propagation_seconds",
                                   "From a verdict's write on another host to its arrival here", registry=registry)

    def update(self, link: FleetLink) -> None:
        self.members.set(len(link.view().members))
        self.blind.set(1 if link.blind else 0)
        self.errors.set(link.counters.errors)
        self.requests.set(link.counters.requests)
