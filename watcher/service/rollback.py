"""Executing a rollback: plan, lock, re-read `current`, journal the intent, switch, verify;
and reconcile what a crash left half-done. The service's automatic rollback, the manual
`rollback` request and the CLI's `rollback [--to] [--dry-run]` all go through here, so they
cannot disagree about the target or skip a step.

    plan_rollback   which releases to try, in order (pure; the one planner)
    execute         under the deploy lock: re-read current (a deploy that landed since the
                    decision wins: nothing is switched), preflight the targets in turn (an
                    unusable one is skipped for the next older known-good, never across a
                    barrier), journal the intent, switch, verify. `dry_run` stops right before
                    the first side effect.
    reconcile       after a restart with an intent on record: find out, never switch blindly;
                    a restart command the crash interrupted (recorded in the intent as it ran)
                    is run again, one that finished or still runs is not

Once the switch is made and the probes answered, confirm.py says when the rollback counts as
verified (the rules that fired must clear on the restored release) and what follows.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from watcher.backends.base import Backend, Restarts, check_release_id
from watcher.base.errors import RollbackError, StateError, WatcherError
from watcher.base.process import CommandResult, Progress, identity, still_running
from watcher.core import messages
from watcher.core.decide import choose_targets, order_releases
from watcher.core.evaluate import SignalReader
from watcher.core.model import Mark, Release, ReleaseRecord, RollbackResult, Trigger
from watcher.core.rules import Finding, HttpCheck, ProbeResult, Rule
from watcher.service.confirm import Confirmer, after_verified, after_verify_failed, local_findings, start_confirmation
from watcher.service.verify import verify
from watcher.store.locks import DeployLock, LockBusy
from watcher.store.state import State

log = logging.getLogger(__name__)



class FleetTeller(Protocol):
    """What a rollback tells the fleet (coordinator.FleetCoordinator): the bad verdict, at
    once (the fleet's outbox never waits on etcd)."""

    def rolled_back(self, release: str, findings: Sequence[Finding], reason: str, at: float) -> None: ...


class Rollbacks(Confirmer, Protocol):
    """What a rollback needs of the service (tick.Watcher), beyond what the confirmation that
    follows it needs (confirm.Confirmer): the deploy lock it takes, the signal reader its probes
    go through, the fleet it tells, the clocks and the sleep of the verification, and saving
    and telling at their moments (the intent is saved before the switch; people hear of the
    rollback before it), and the deploy step for a release found current that it did not put
    there. The outcome comes back as data (Outcome)."""

    deploy_lock: DeployLock
    reader: SignalReader
    monotonic: Callable[[], float]
    sleep: Callable[[float], None]

    @property
    def fleet(self) -> FleetTeller | None: ...

    def save(self) -> None: ...

    def safe_save(self) -> None: ...

    def tell(self) -> None: ...

    def on_deploy(self, release: str, at: float, first_start: bool = False) -> None:
        """A release found current that the watcher did not put there: a deploy."""


@dataclass(frozen=True)
class RollbackPlan:
    current: str
    targets: tuple[str, ...]  # to try in order; the first that passes its preflight is used
    reason: str
    trigger: Trigger = Trigger.MANUAL
    findings: tuple[Finding, ...] = ()

    @property
    def target(self) -> str:
        return self.targets[0]


@dataclass(frozen=True)
class Outcome:
    result: RollbackResult
    target: str | None = None  # the release switched to (or, for a dry run, that would be)
    detail: str = ""


def plan_rollback(
    current: str,
    releases: Sequence[Release],
    records: Mapping[str, ReleaseRecord],
    to: str | None = None,
    reason: str = "manual rollback",
    trigger: Trigger = Trigger.MANUAL,
) -> RollbackPlan:
    """The plan for a rollback away from `current`; RollbackError says why there is none.
    Without `to`: the known-good releases older than `current` (decide.choose_targets, in the
    order of decide.order_releases). With `to`: that release, if the backend lists it, it is not
    current and not marked bad."""
    if to is None:
        ordered = tuple(r.id for r, _ in order_releases(releases, records))
        targets, why = choose_targets(current, ordered, records)
        if not targets:
            raise RollbackError(f"no rollback target: {why}")
        return RollbackPlan(current, targets, reason, trigger)
    target = check_release_id(to)
    rec = records.get(target)
    if rec is not None and rec.mark == Mark.BAD:
        raise RollbackError(f"{target} is marked bad; mark it good first if you are sure")
    if target == current:
        raise RollbackError(f"{target} is already current")
    if target not in {r.id for r in releases}:
        raise RollbackError(f"{target} is not a release this backend has")
    return RollbackPlan(current, (target,), reason, trigger)


def execute(w: Rollbacks, plan: RollbackPlan, dry_run: bool = False) -> Outcome:
    """Lock, re-read current, preflight, record the intent, switch, verify, record the result."""
    s = w.state
    from_id, findings, manual = plan.current, list(plan.findings), plan.trigger is Trigger.MANUAL
    now = w.clock()
    try:
        with w.deploy_lock.hold():
            backend = _backend(w)
            current = backend.current().id
            if current != from_id:
                # A deploy landed between the decision and the lock: it is the newest intent of
                # a human or a pipeline; overwriting it would leave no trace of it.
                detail = f"{current} is current, not {from_id}: a deploy landed since the decision"
                w.journal("rollback_not_made", release=from_id, target=plan.target, current=current,
                          reason=detail, dry_run=dry_run)
                log.warning("rollback not made release=%s current=%s", from_id, current)
                if not dry_run:
                    w.notify(messages.deploy_landed(w.ctx, from_id, plan.target, current))
                return Outcome(RollbackResult.DEPLOY_LANDED, None, detail)
            target = _first_usable(w, plan)
            if dry_run:
                return Outcome(RollbackResult.DRY_RUN, target.id, f"{target.id} passed its preflight")
            to_id = target.id
            intent = {"id": uuid.uuid4().hex[:12], "from": from_id, "to": to_id, "reason": plan.reason,
                      "at": now, "manual": manual, "trigger": plan.trigger.value,
                      # what must clear on the target for the rollback to be verified (confirm)
                      "findings": [dataclasses.asdict(f) for f in findings]}
            if s.confirming is not None:
                # A rollback being confirmed (the release it restored is the one leaving now):
                # this switch ends it; judged on what this one restores, it was called verified
                # and set `current` back to the release it had restored.
                w.journal("rollback_superseded", release=s.confirming["from"], target=s.confirming["to"],
                          by=to_id, detail=f"rolled back {from_id} -> {to_id} meanwhile")
                s.confirming = None
            rec = s.release(from_id, now)
            if not manual:
                rec.auto_rollbacks += 1
                rec.last_rollback_at = now
            rec.mark, rec.marked_at, rec.reason = Mark.BAD.value, now, plan.reason
            s.last_rollback_at = now
            s.intent = intent
            # Recorded before it is taken: if this write fails, nothing is switched.
            w.journal("rollback_intent", release=from_id, target=to_id, reason=plan.reason, manual=manual,
                      rules=[f.rule for f in findings], intent=intent["id"])
            w.save()
            if w.fleet is not None:
                # The fleet hears it now, not after the verification: other hosts running
                # from_id start their own rollback meanwhile (never waits: an outbox).
                w.fleet.rolled_back(from_id, findings, plan.reason, now)
            w.timeline(f"rolling back {from_id} -> {to_id}")
            w.notify(messages.rolling_back(w.ctx, from_id, to_id, findings, plan.reason, manual,
                                           _what_target_is(s, plan, to_id)), findings)
            w.tell()  # people hear of it before the switch and the verification, which take a while
            switch_started = w.monotonic()
            if isinstance(backend, Restarts):
                output = backend.switch(target, plan.reason, progress=_recorder(w, intent))
            else:
                output = backend.switch(target, plan.reason)
            w.journal("rollback_switched", release=from_id, target=to_id, output=output or "",
                      seconds=round(w.monotonic() - switch_started, 3), intent=intent["id"])
    except LockBusy as exc:
        w.journal("rollback_waiting", release=from_id, target=plan.target, reason=str(exc))
        return Outcome(RollbackResult.DEPLOY_LOCK, None, str(exc))
    except (RollbackError, StateError) as exc:
        if dry_run:
            raise
        return _failed(w, from_id, plan.target if s.intent is None else s.intent["to"], exc)
    except WatcherError as exc:
        # The backend could not say which release is current under the lock: do not switch.
        return _failed(w, from_id, plan.target, exc)

    result = verify(to_id, backend, w.config.verify, _probe_rules(w), _BoundedProbe(w.reader), w.clock, w.sleep,
                    previous=from_id)
    if result.landed is not None:
        return _superseded(w, from_id, to_id, result.landed, result.detail)
    if result.ok and local_findings(findings):
        # Current and healthy by its probes is not yet verified: the rules that fired must clear.
        start_confirmation(w, from_id, to_id, local_findings(findings), now, result.detail)
        s.intent = None
        w.safe_save()
        return Outcome(RollbackResult.ROLLED_BACK, to_id, f"{result.detail}; waiting for the fired rules to clear")
    if result.ok:
        w.journal("rollback_verified", release=from_id, target=to_id, detail=result.detail,
                  seconds=round(result.seconds, 3), attempts=result.attempts)
        after_verified(w, from_id, to_id, w.clock() - now, reason=plan.reason if manual else "")
        s.intent = None
        w.safe_save()
        return Outcome(RollbackResult.ROLLED_BACK, to_id, result.detail)
    w.journal("verify_failed", release=from_id, target=to_id, detail=result.detail, attempts=result.attempts)
    after_verify_failed(w, from_id, to_id, result.detail)
    s.intent = None
    w.safe_save()
    return Outcome(RollbackResult.NOT_VERIFIED, to_id, result.detail)


def _superseded(w: Rollbacks, from_id: str, to_id: str, landed: str, detail: str) -> Outcome:
    """A deploy landed while the rollback was verified: it wins, as one that lands before the
    switch does (DEPLOY_LANDED). Nothing is verified or halted ("did not verify" blamed the
    rollback for the deployed release's probes, and stopped the watcher from watching it); the
    next tick sees the deploy and watches it."""
    w.journal("rollback_superseded", release=from_id, target=to_id, by=landed, detail=detail)
    log.warning("a deploy landed while the rollback was verified release=%s target=%s deployed=%s",
                from_id, to_id, landed)
    w.count_rollback("superseded")
    w.timeline(f"{landed} was deployed while {to_id} was verified: the deploy wins")
    w.notify(messages.rollback_superseded(w.ctx, from_id, to_id, landed))
    w.state.intent = None
    w.safe_save()
    return Outcome(RollbackResult.DEPLOY_LANDED, None, detail)


def _what_target_is(state: State, plan: RollbackPlan, to_id: str) -> str:
    """For the message: what the target is. The decider's first choice is the newest known-good
    release; a human's --to may be known-good, or not (then the message says so)."""
    rec = state.releases.get(to_id)
    known_good = rec is not None and rec.mark == Mark.GOOD
    if plan.trigger is not Trigger.MANUAL and known_good:
        return "the newest known-good release" if to_id == plan.targets[0] else "a known-good release"
    return "known-good" if known_good else "chosen by hand; not marked known-good"


# A listing that fails inside the executor right after the decider's succeeded is a blip (an
# NFS hiccup, an API's 502): tried again this often, a second apart, before the rollback fails.
LISTING_ATTEMPTS = 3


def _listed(w: Rollbacks, plan: RollbackPlan) -> dict[str, Release]:
    for attempt in range(1, LISTING_ATTEMPTS):
        try:
            return {r.id: r for r in _backend(w).releases()}
        except WatcherError as exc:
            w.journal("rollback_retry", release=plan.current, target=plan.target, attempt=attempt,
                      reason=f"the backend cannot list its releases: {exc}")
            log.warning("backend cannot list releases before the rollback attempt=%d reason=%s", attempt, exc)
            w.sleep(1.0)
    return {r.id: r for r in _backend(w).releases()}  # the last attempt's failure fails the rollback


def _first_usable(w: Rollbacks, plan: RollbackPlan) -> Release:
    """The first target of the plan the backend still lists and that passes its preflight."""
    listed = _listed(w, plan)
    problems = []
    for target_id in plan.targets:
        target = listed.get(target_id)
        try:
            if target is None:
                raise RollbackError(f"the backend no longer lists {target_id}")
            _backend(w).preflight(target)
            return target
        except RollbackError as exc:
            problems.append(str(exc))
            w.journal("rollback_target_unusable", release=plan.current, target=target_id, reason=str(exc))
            log.warning("rollback target unusable release=%s target=%s reason=%s", plan.current, target_id, exc)
    raise RollbackError("; ".join(problems) if len(problems) > 1 else problems[0])


def _backend(w: Rollbacks) -> Backend:
    """The backend to switch. A watcher without one never decides to roll back (tick.decide
    refuses), but a restart may find an intent recorded under a config that had one: that is a
    rollback that cannot go on, said as one, never an AttributeError."""
    if w.backend is None:
        raise RollbackError("no backend is configured")
    return w.backend


def _failed(w: Rollbacks, from_id: str, to_id: str, exc: WatcherError) -> Outcome:
    s = w.state
    detail = str(exc)
    output = getattr(exc, "output", "")
    w.journal("rollback_failed", release=from_id, target=to_id, reason=detail, output=output)
    log.error("rollback failed release=%s target=%s reason=%s", from_id, to_id, detail)
    s.halted = f"rollback {from_id} -> {to_id} failed: {detail}"
    s.intent = None
    w.count_rollback("failed")
    w.timeline(f"rollback failed: {detail}")
    w.notify(messages.rollback_failed(w.ctx, from_id, to_id, detail))
    w.safe_save()
    return Outcome(RollbackResult.FAILED, None, detail)


def reconcile(w: Rollbacks, intent: dict[str, Any]) -> None:
    """A switch was recorded but its result was not: find out, never switch again blindly."""
    from_id, to_id = intent["from"], intent["to"]
    try:
        backend = _backend(w)
        current = backend.current().id
    except WatcherError as exc:
        w.state.halted = f"after a restart, the backend cannot say whether {from_id} -> {to_id} happened: {exc}"
        w.journal("reconcile", result="unknown", release=from_id, target=to_id, reason=str(exc))
        w.notify(messages.rollback_failed(w.ctx, from_id, to_id, w.state.halted))
        return
    if current == to_id:
        if not _finish_restart(w, intent):
            return
        result = verify(to_id, backend, w.config.verify, _probe_rules(w), _BoundedProbe(w.reader), w.clock,
                        w.sleep, previous=from_id)
        findings = [Finding(**f) for f in intent.get("findings") or []]
        if result.landed is not None:
            w.journal("reconcile", result="superseded", release=from_id, target=to_id, current=result.landed,
                      detail=result.detail)
            w.close_incident(f"{result.landed} was deployed while {to_id} was verified", resolution="superseded")
        elif result.ok and local_findings(findings):
            w.journal("reconcile", result="switched_confirming", release=from_id, target=to_id, detail=result.detail)
            start_confirmation(w, from_id, to_id, local_findings(findings), w.clock(), result.detail)
        elif result.ok:
            w.journal("reconcile", result="switched_and_verified", release=from_id, target=to_id, detail=result.detail)
            after_verified(w, from_id, to_id, result.seconds)
        else:
            w.journal("reconcile", result="switched_not_verified", release=from_id, target=to_id, detail=result.detail)
            after_verify_failed(w, from_id, to_id, result.detail)
    else:
        # The switch did not happen (or someone changed the host since). The release stays
        # marked bad with its rollback counted, so the decider will call a human rather
        # than switch a second time.
        w.journal("reconcile", result="not_switched", release=from_id, target=to_id, current=current)
        w.close_incident(f"interrupted before the switch; {current} is current", resolution="interrupted")
        if current != w.state.current:
            # Someone deployed while the watcher was down: a deploy like any other, watched.
            w.on_deploy(current, w.clock())
    w.state.intent = None


def _recorder(w: Rollbacks, intent: dict[str, Any]) -> Progress:
    """process.Progress for the switch: each command it runs is saved in the intent when it
    starts (with what tells it from a later process of the same pid) and when it ends."""
    commands = intent.setdefault("commands", [])

    def progress(pid: int, result: CommandResult | None) -> None:
        if result is None:
            commands.append(identity(pid) or {"pid": pid})
        else:
            for c in commands:
                if c.get("pid") == pid and "exit" not in c:
                    c["exit"] = result.returncode
        w.safe_save()

    return progress


def _finish_restart(w: Rollbacks, intent: dict[str, Any]) -> bool:
    """After a crash that left `current` on the target: run the backend's restart again unless
    the recorded one finished or still runs (it outlived us in its own session). A watchdog or a
    `systemctl kill` takes the restart down with the watcher, and the link alone does not bring
    the restored release up. False when the restart failed (the rollback failed: said here)."""
    if not isinstance(w.backend, Restarts):
        return True
    commands = intent.get("commands") or []
    if any(still_running(c) for c in commands):
        return True
    if commands and commands[-1].get("exit") == 0:
        return True
    from_id, to_id = intent["from"], intent["to"]
    why = "its restart command was interrupted" if commands else "it stopped before its restart command"
    w.journal("reconcile_restart", release=from_id, target=to_id, reason=why)
    log.warning("rollback %s -> %s: %s; running it again", from_id, to_id, why)
    try:
        output = w.backend.run_restart(Release(to_id), progress=_recorder(w, intent))
    except RollbackError as exc:
        w.journal("reconcile", result="restart_failed", release=from_id, target=to_id, reason=str(exc))
        _failed(w, from_id, to_id, exc)
        return False
    w.journal("reconcile_restarted", release=from_id, target=to_id, output=output)
    return True


def _probe_rules(w: Rollbacks) -> list[Rule]:
    """The rollback rules that probe HTTP: verification runs them against the restored release."""
    return [r for r in w.config.rules if isinstance(r.signal, HttpCheck) and r.action == "rollback"]


class _BoundedProbe:
    """What verify() calls `probe.probe(check)` on, through the reader's bounded pool: a
    trickling endpoint cannot hold a verification past each probe's timeout."""

    def __init__(self, reader: SignalReader):
        self._reader = reader

    def probe(self, check: HttpCheck) -> ProbeResult:
        return self._reader.probe_bounded(check)
