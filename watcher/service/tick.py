"""One tick of the watcher. `Watcher.tick()` reads as its table of contents; each step is a
call, in this order, to a method below it or to the module named here. One tick is read in
four files: this one, deploys.py (which release, baselines), window.py (what the tick records
of the watch window) and verdict.py (decide and act); the pure core (evaluate, decide) and
rollback.py are called by name.

    clock      a wall-clock step is journaled and said once (window.check_clock)
    lock       the deploy lock is looked at before the reads (and again after them); it counts
               as held until Prometheus has scraped once after it (window.lock_settling);
               once a deploy lets it go, what the rollback rules saw under it is discarded
               (window.discard_deploy_evidence)
    requests   apply what humans asked through the CLI (requests.py)
    release    ask the backend which release is current; a change is a deploy
               (deploys.BackendReads.current, then `on_deploy`). When it cannot tell, the
               last release seen is evaluated but never acted on
    baselines  capture each baseline rule's pre-deploy median, once per deploy (deploys.Baselines)
    evaluate   read every signal once and step each rule (evaluate.py); keep the rule
               states, journal and tell the transitions, count evidence (window.record);
               keep what the rollback rules read for the pictures (history.py)
    straddle   a rollback rule fires but `current` moved during the reads (a deploy landed
               mid-tick): nothing below runs this tick (deploys.BackendReads.moved)
    confirm    a switched rollback is verified once the rules that fired clear on the restored
               release's own samples, or ends unconfirmed when they see nothing of it (confirm.py)
    lock wait  a deploy lock held while a rollback rule fires stops the window's clock
               (window.hold_for_lock)
    window     a release that survived its watch window becomes known-good (window.assess,
               then `on_good`)
    decide     the safety policy (core/decide.py) turns firing rules into a verdict
               (verdict.decide); the releases to choose from are listed only when a rollback
               rule fires (deploys.BackendReads.listed); a wait for the backend's retry stops
               the window's clock (window.hold_for_retry)
    act        a message once per change of the incident, or plan, lock, re-read current,
               journal the intent, switch, verify (verdict.act, then rollback.py)
    persist    state.json, telemetry, this host's fleet membership
    tell       send the tick's messages, gathered in one outbox, in order (a rollback or
               halt message with the picture of its breach: history.breach_picture)

With a `fleet:` section, `self.fleet` (coordinator.py) joins in without ever waiting on etcd:
`learn` after the requests, a bad verdict from another host for the current release as one
more firing rule (`fleet:RULE`) for `window` and `decide`, the fleet-wide-symptom check in
`decide`, the survived mark in `window`, the membership in `persist`; rollback.py publishes the
bad verdict of every rollback made here.

The clock is passed in; the loop that sleeps between ticks, signals, reload and sd_notify
live in daemon.py. Every action is journaled before it is taken, so that a crash
mid-rollback is reconciled at the next start (`start()`, rollback.reconcile).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from watcher.backends.base import Backend
from watcher.base.clock import Timebase, boot_id, restart_shift, shift_state_times
from watcher.base.errors import StateError
from watcher.config.schema import WatcherConfig
from watcher.core import decide as decider
from watcher.core import envelope, messages
from watcher.core.envelope import Message
from watcher.core.evaluate import Evaluation, SignalReader, evaluate, watch_window
from watcher.core.model import VerdictKind
from watcher.core.rules import Finding, Phase, PromQuery
from watcher.service import confirm, deploys, history, requests, rollback, verdict, window
from watcher.service.telemetry import Telemetry
from watcher.signals import promtime as prometheus_time
from watcher.store.locks import DeployLock
from watcher.store.state import State, StateStore

if TYPE_CHECKING:
    # Imported where it is built (build.py): the fleet link imports etcd3gw, which a
    # watcher without `fleet:` never needs.
    from watcher.service.coordinator import FleetCoordinator

log = logging.getLogger(__name__)


class Notifier(Protocol):
    """What the watcher sends messages through (notify.Notifier)."""

    def send(self, message: Message) -> None: ...

    def restore_undelivered(self, events: Iterable[dict[str, Any]]) -> int: ...

    def retry_undelivered(self) -> int: ...

    def undelivered_by_target(self) -> dict[str, int]: ...

    def flush(self, timeout: float) -> bool: ...

    def close(self, timeout: float = 5.0) -> bool: ...

    def expect_pictures(self) -> None: ...


@dataclass
class TickReport:
    """What one tick saw and did; `eval` prints it, tests read it."""

    now: float
    current: str | None
    window_s: int
    rows: list[dict[str, Any]] = field(default_factory=list)  # per rule: name, value, condition, outcome, phase
    verdict: decider.Verdict | None = None
    acted: str | None = None  # a RollbackResult: "rolled_back", "rollback_failed", "verify_failed", ...
    seconds: float = 0.0


class Watcher:
    def __init__(
        self,
        config: WatcherConfig,
        backend: Backend | None,
        reader: SignalReader,
        notifier: Notifier | None,
        store: StateStore,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] | None = None,
        telemetry: Telemetry | None = None,
    ):
        self.config = config
        self.backend = backend
        self.reader = reader
        self.notifier = notifier
        self.store = store
        # `clock` is the wall clock. Durations run on steady time (clock.Timebase): the wall
        # time at start plus the monotonic time since. A fake wall clock given without a
        # monotonic one drives both (tests that simulate time).
        if monotonic is None:
            monotonic = time.monotonic if clock is time.time else clock
        self.timebase = Timebase(clock, monotonic)
        self._boot = boot_id()
        self.wall = clock
        self.clock = self.timebase.now
        self.sleep = sleep
        self.monotonic = monotonic
        self.telemetry = telemetry
        self.state = State()
        self._ctx = envelope.MessageContext(config.service, config.host)
        self.deploy_lock = DeployLock(config.deploy_lock)
        self._outbox: list[Message] = []
        self._blind_episode: frozenset[str] = frozenset()  # rules blind so far in this episode
        self.fleet: FleetCoordinator | None = None  # when the config has `fleet:`
        self.reads = deploys.BackendReads(self)
        self.baselines = deploys.Baselines(self)
        # What the rules read, for the rollback and halt messages' pictures (history.py): the
        # watch window and as much again before the deploy.
        self.history = history.RuleHistory(2 * config.watch_window + 600)

    @property
    def ctx(self) -> envelope.MessageContext:
        """Message context at this moment, so bodies can say "for 2m10s"."""
        return self._ctx.at(self.clock())

    # ------------------------------------------------------------------------------------------
    # Start

    def start(self) -> None:
        """Load the state and finish what a crash left half-done. Raises StateError."""
        self.store.ensure_dir()
        self.load_state()
        self.reader.keep_host_counters(self.state.host_counters)
        self.config = prometheus_time.learn_at_start(self.config, self.reader, self.journal)
        self.journal("start", release=self.state.current, rules=len(self.config.rules), mode=self.config.mode)
        if self.notifier is not None:
            # Messages that had not got through before a restart are tried again.
            self.notifier.restore_undelivered(self.store.events())
        if self.state.intent is not None:
            rollback.reconcile(self, self.state.intent)
        self.tell()
        self.save()

    def load_state(self) -> None:
        """state.json, its times moved into this process's steady time: they are the steady time
        of the process that saved them, which may differ from ours by a wall-clock step (the
        saved offset). Raises StateError."""
        self.state = self.store.load()
        shift_state_times(self.state, restart_shift(self.state, self.clock(), self.monotonic(), self._boot))

    # ------------------------------------------------------------------------------------------
    # One tick

    def tick(self) -> TickReport:
        started, now = self.monotonic(), self.clock()
        window.check_clock(self.timebase, self.config.interval, self)
        # The deploy lock is looked at before the reads as well as after them: a deploy that
        # held it during the reads (a restart's closed port, its errors) and let go before the
        # decision must not be judged on what its restart looked like.
        lock_held = window.lock_settling(self.state, now, self.deploy_lock.held_by_other(), self._settle)
        if self.state.lock_seen and not lock_held:
            window.discard_deploy_evidence(self.state, self.config, self)
        requests.apply_pending(self, now)
        # A human's `rollback` verifies inside apply_pending (seconds of sleeps): what the tick
        # reads next is read now, and a deploy seen by it opens its window from now, not from
        # before the verification (a window that began before its deploy was shorter).
        now = self.clock()
        if self.fleet is not None:
            self.fleet.learn(self, now)
        report = TickReport(now, self.state.current, 0)
        current = self.reads.current(self.backend, self.state, self.config.error_limit, now, self.on_deploy)
        if current is not None:
            report.current = current
            self.baselines.capture(self.config, getattr(self.reader, "prometheus", None), self.state,
                                   self.timebase.offset())
            evaluation = self.measure(now)
            lock_held = lock_held or self.deploy_lock.held_by_other()
            report.window_s, report.rows = evaluation.window_s, evaluation.rows
            firing = evaluation.firing + (self.fleet.triggers(current) if self.fleet is not None else [])
            # Read again when a rollback rule fires, or while a rollback is confirmed (what it
            # judges must be the restored release's, firing or not: sim seed 9002203).
            judged = any(f.action == "rollback" for f in firing) or self.state.confirming is not None
            landed = self.reads.moved(self.backend, self.state) if judged else None
            if landed is not None:
                # A deploy landed between this tick's read of `current` and its probes: what
                # fires may be the new release's, not the one the tick judges. The next tick
                # sees the deploy and judges the new release on its own reads.
                self.journal("deploy_during_tick", release=current, rules=[f.rule for f in firing])
                log.info("a deploy landed during this tick's reads, not deciding on them release=%s", current)
                # A rollback being confirmed ends here as it would at the next tick's read: the
                # tool may put the restored release back before then (a redeploy), and the
                # confirmation would go on judging it on that deploy's restart.
                self.supersede_confirmation(landed, notify=True)
            else:
                if lock_held and self.state.confirming is not None:
                    # A deploy holds the deploy lock: what the confirmation would read now is
                    # that deploy at work (its restart), not the restored release. A deploy
                    # supersedes a rollback being confirmed, whatever it ships (the restored
                    # release again included): before, the confirmation halted "did not clear"
                    # on the redeploy's restart (sim seed 16002640).
                    self.supersede_confirmation("a release under the deploy lock", notify=True)
                if self.reads.current_error is None:
                    # A confirmation judges the restored release on its own samples: with
                    # `current` unreadable, what the probes saw may be a release deployed
                    # since (a restart after a crash found r5 serving; the unreadable tick
                    # halted "r0 did not clear" on r5's errors). The next readable tick
                    # either sees the deploy (which supersedes it) or judges r0.
                    confirm.confirm(self, evaluation, now)
                window.hold_for_lock(self.state, now, firing, self.deploy_lock, lock_held, self.config.lock_timeout,
                                     self, self.config.interval)
                if self.reads.current_error is None:  # never mark known-good a host that cannot be read
                    window.assess(self.state, now, firing, self.config, self, self.on_good)
                report.verdict = verdict.decide(self, now, firing, lock_held)
                if report.verdict.kind is VerdictKind.BACKEND_RETRY:
                    window.hold_for_retry(self.state, now, firing, self.config.interval, self)
                report.acted = verdict.act(self, report.verdict, now)
        self.state.lock_seen = lock_held
        self.persist(report, started)
        self.tell()
        return report

    @property
    def _settle(self) -> float:
        """How long after the deploy lock is let go Prometheus' newest samples may still be the
        deploy's (window.lock_settling): a scrape interval, when a rollback rule reads it."""
        reads = any(isinstance(r.signal, PromQuery) and r.action == "rollback" for r in self.config.rules)
        return self.config.prometheus.scrape_interval if reads else 0.0

    def on_deploy(self, release: str, at: float, first_start: bool = False) -> None:
        """A new current release (seen by the tick, or a human's `mark deployed`): its watch
        window opens (deploys.open_window), and the open incident and a rollback being
        confirmed are superseded."""
        previous = self.state.current
        self.supersede_confirmation(release, notify=False)  # the deploy message says what follows
        deploys.open_window(self.state, release, at, self.config.watch_window, first_start)
        self.close_incident(f"{release} was deployed", resolution="superseded")
        self.journal("deploy", release=release, previous=previous, first_start=first_start,
                     window_ends=self.state.window_ends)
        log.info("deploy seen release=%s previous=%s window=%ss", release, previous, self.config.watch_window)
        if self.state.window_ends is not None:
            target, why = deploys.rollback_target(self.backend, self.state, release)
            self.notify(messages.deploy_seen(self.ctx, release, self.config.watch_window, target, why))

    def supersede_confirmation(self, release: str, notify: bool) -> None:
        """A deploy of `release` replaced the release a rollback restored and is confirming:
        neither verified nor "did not clear" (that would blame the restored release for the
        deploy's restart); the deployed release is watched as any deploy."""
        confirming = self.state.confirming
        if confirming is None:
            return
        self.state.confirming = None
        self.journal("rollback_superseded", release=confirming["from"], target=confirming["to"], by=release)
        log.info("a deploy ends a rollback's confirmation release=%s target=%s deployed=%s",
                 confirming["from"], confirming["to"], release)
        if notify:
            self.close_incident(f"{release} was deployed", resolution="superseded")
            self.notify(messages.rollback_superseded(self.ctx, confirming["from"], confirming["to"], release))

    def measure(self, now: float) -> Evaluation:
        """Evaluate the rule table once (evaluate.py); what it changed is recorded (window.record)."""
        s = self.state
        window_s = watch_window(now, s, self.config)
        evaluation = evaluate(self.config.rules, self.reader, now, window_s, s.rules, s.baselines,
                              self.config.error_limit, scrape_interval=self.config.prometheus.scrape_interval,
                              at=self.timebase.to_wall(now), since=s.changed_at,
                              held=confirm.too_early(s, self.config, now), interval=self.config.interval,
                              settle=self.config.prometheus.scrape_interval if s.deploy_seen_late else 0.0)
        prometheus_time.journal_skew(self.reader, self.journal)
        self.history.record(self.timebase.to_wall(now), history.readings(evaluation, self.timebase.to_wall))
        self._blind_episode = window.record(evaluation, s, now, self.config.notify_pending, self,
                                            self._blind_episode, self.telemetry, self.config.interval)
        if self.notifier is not None and any(e.rule.action == "rollback" and e.after.phase is not Phase.INACTIVE
                                             for e in evaluation.rules):
            # A rollback or halt message with a picture may follow: matplotlib (seconds of
            # import on a loaded host) is imported now, not while that message waits for it.
            self.notifier.expect_pictures()
        return evaluation

    def on_good(self, release: str, now: float) -> None:
        """A release survived its watch window (window.assess)."""
        if self.fleet is not None:
            self.fleet.survived(release, now)
        deploys.prune(self.backend, self.state, {release}, self)

    def persist(self, report: TickReport, started: float) -> None:
        self.safe_save()
        if self.fleet is not None:
            self.fleet.report(self, report.now)
        report.seconds = self.monotonic() - started
        if self.telemetry is not None:
            undelivered = self.notifier.undelivered_by_target() if self.notifier is not None else None
            self.telemetry.after_tick(self.state, report.now, report.seconds, undelivered)

    def tell(self) -> None:
        """Send what this tick has to say, in the order it happened: the one place messages
        leave (the notifier queues them; delivery runs on its own thread)."""
        outbox, self._outbox = self._outbox, []
        if self.notifier is None:
            return
        for message in outbox:
            self.notifier.send(message)
        self.notifier.retry_undelivered()

    # ------------------------------------------------------------------------------------------
    # Incidents: from the first firing rollback rule to the verified end (incident.py)

    def timeline(self, what: str) -> None:
        if self.state.incident is not None:
            self.state.incident.note(self.clock(), what)

    def close_incident(self, why: str, resolution: str) -> None:
        if self.state.incident is None:
            return
        record = self.state.incident.close(self.clock(), resolution, why)
        self.state.incident = None
        self.journal("incident", **record)

    # ------------------------------------------------------------------------------------------
    # Requests from humans, applied by the running service (requests.py)

    def apply_request(self, command: str, args: dict[str, Any], now: float) -> str:
        """Apply one human request to the state (also used directly when no service runs)."""
        result = requests.apply(self, command, args, now)
        self.tell()
        return result

    def apply_alone(self, command: str, args: dict[str, Any]) -> str:
        """The CLI's apply when no service runs (it holds the instance lock): the state loaded
        as a start loads it, the request applied at this process's steady time, saved with this
        process's clock offset, what the fleet is owed flushed once. Loading the file as it is
        and saving it with offset 0 shortened (or lengthened) every window by a wall-clock step
        the last service had seen."""
        self.load_state()
        result = self.apply_request(command, args, self.clock())
        self.save()
        if self.fleet is not None:
            self.fleet.link.flush_once()  # a rollback by hand tells the fleet now, or at the service's start
        return result

    def manual_rollback(self, to: str | None, reason: str, dry_run: bool = False) -> str:
        result = requests.manual_rollback(self, to, reason, dry_run)
        self.tell()
        return result

    # ------------------------------------------------------------------------------------------
    # What the steps, rollback.py and confirm.py share

    def journal(self, kind: str, **fields: Any) -> None:
        try:
            self.store.journal(kind, **fields)
        except StateError as exc:
            log.error("journal write failed kind=%s reason=%s", kind, exc)
            raise

    def notify(self, message: Message | None, findings: Sequence[Finding] = ()) -> None:
        """Queue a message for `tell`, routed by the `notify:` tags of the rules behind `findings`."""
        if message is not None:
            incident = self.state.incident.id if self.state.incident is not None else None
            message = envelope.with_context(message, self.ctx, incident)
            picture = history.breach_picture(message, self.history, self.state, self.config.rules,
                                             self.timebase.to_wall, self.wall(), self.config.host)
            if picture is not None:
                message = dataclasses.replace(message, picture=picture)
            self._outbox.append(envelope.routed(message, findings, self.config.rules))

    def save(self) -> None:
        self.state.clock_offset = self.timebase.offset()
        self.state.saved_at, self.state.saved_monotonic, self.state.boot_id = self.clock(), self.monotonic(), self._boot
        self.store.save(self.state)

    def safe_save(self) -> None:
        try:
            self.save()
        except StateError as exc:
            log.error("state not saved reason=%s", exc)

    def count_rollback(self, result: str) -> None:
        self.state.count(f"rollbacks_{result}")
        if self.telemetry is not None:
            self.telemetry.rollbacks.labels(result=result).inc()
