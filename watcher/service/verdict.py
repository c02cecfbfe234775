"""The `decide` and `act` steps of a tick (tick.py): the situation handed to the pure decider
(core/decide.py), and what its verdict makes the service do — nothing, one message per change
of the incident, or a rollback (rollback.py). The incident (core/incident.py) runs from the
first firing rollback rule to its end; the steps that end it close it (confirm.py, requests.py)."""

from __future__ import annotations

import dataclasses
import logging
import uuid
from typing import TYPE_CHECKING, Protocol

from watcher.core import decide as decider
from watcher.core import messages
from watcher.core.fleetmodel import is_fleet_rule
from watcher.core.incident import Incident
from watcher.core.model import Action, RollbackResult, Trigger, VerdictKind
from watcher.core.rules import Finding
from watcher.service import deploys, rollback

if TYPE_CHECKING:
    from watcher.service.coordinator import FleetCoordinator

log = logging.getLogger(__name__)


class Verdicts(rollback.Rollbacks, Protocol):
    """What deciding and acting need of the service (tick.Watcher), beyond what a rollback
    needs (rollback.Rollbacks): the tick's backend reads, and the fleet's symptom check."""

    reads: deploys.BackendReads

    @property
    def fleet(self) -> FleetCoordinator | None: ...


def decide(w: Verdicts, now: float, firing: list[Finding], lock_held: bool) -> decider.Verdict:
    """The safety policy's verdict on this tick's firing rules. The releases to choose from are
    listed only when a rollback rule fires (deploys.BackendReads.listed)."""
    s = w.state
    listing = w.reads.listed(w.backend, s, firing)
    confirming = None
    if s.confirming is not None:
        confirming = (f"rolled back {s.confirming['from']} -> {s.confirming['to']}, waiting for "
                      f"{', '.join(s.confirming['rules'])} to clear on {s.confirming['to']}")
    symptoms, symptom_reason = w.fleet.symptoms(w, firing, now) if w.fleet is not None else (frozenset(), "")
    situation = decider.Situation(
        now=now, current=s.current or "", releases=listing.releases, marks=s.releases,
        in_watch_window=s.in_watch_window(now), firing=tuple(firing), paused_until=s.paused_until,
        halted=s.halted, lock_held=lock_held, fleet_symptoms=symptoms,
        fleet_symptom_reason=symptom_reason, confirming=confirming,
        backend_problem=listing.problem, backend_failures=listing.failures, backend_broken=listing.broken,
    )
    config = w.config
    policy = decider.Policy(config.shadow, config.safety.max_auto_rollbacks, config.safety.cooldown, config.error_limit)
    verdict = decider.decide(situation, policy)
    if verdict.action is Action.ROLLBACK and w.backend is None:
        verdict = dataclasses.replace(verdict, action=Action.REFUSE, kind=VerdictKind.NO_BACKEND,
                                      reason="no backend is configured")
    return verdict


def act(w: Verdicts, verdict: decider.Verdict, now: float) -> RollbackResult | None:
    """Do what the verdict says: a rollback (rollback.execute), or tell it once per change of
    the incident; a quiet tick closes the incident (unless a rollback is being confirmed)."""
    s = w.state
    if verdict.kind is VerdictKind.QUIET:
        # A rollback being confirmed closes its incident itself (confirm.confirm), as
        # rolled back or not cleared: a quiet tick meanwhile is not the end of it.
        if s.incident is not None and s.confirming is None:
            w.close_incident("no rollback rule fires any more", resolution="cleared")
        return None
    findings = list(verdict.findings)
    changed = _incident_step(w, verdict, now)
    if changed:
        w.journal("verdict", action=verdict.action, check=verdict.kind, reason=verdict.reason,
                  release=verdict.current, target=verdict.target, rules=[f.rule for f in verdict.findings])
        log.info("verdict action=%s kind=%s reason=%s", verdict.action, verdict.kind, verdict.reason)
    if verdict.action is Action.ROLLBACK and verdict.current is not None:  # decide always names it
        # Acting is never de-duplicated: a rollback that could not take the deploy lock this
        # tick (a deploy grabbed it after the check) is tried again on the next one.
        fleet_only = all(is_fleet_rule(f.rule) for f in verdict.findings)
        plan = rollback.RollbackPlan(verdict.current, verdict.targets, verdict.reason,
                                     Trigger.FLEET if fleet_only else Trigger.RULE, verdict.findings)
        return rollback.execute(w, plan).result
    if changed:  # one message per state change of the incident, not one per tick
        w.notify(messages.for_verdict(w.ctx, verdict), findings)
    return None


def _incident_step(w: Verdicts, verdict: decider.Verdict, now: float) -> bool:
    """Open the incident if needed; return whether the verdict is news for it."""
    s = w.state
    if s.incident is None:
        s.incident = Incident.open(uuid.uuid4().hex[:12], now, s.current, verdict.findings)
        w.journal("incident_opened", incident=s.incident.id, release=s.current, rules=s.incident.rules)
    return s.incident.step(verdict.kind, verdict.reason, w.clock())
