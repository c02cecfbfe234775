"""One tick of the watcher. `Watcher.tick()` reads as its table of
contents; each step is a method below it, in the same order:

    requests   apply what humans asked through the CLI (requests.py)
    release    ask the backend which release is current; a change is a deploy. When it
               cannot tell, the last release seen is evaluated but never acted on
    baselines  capture each baseline rule's pre-deploy median, once per deploy
    evaluate   read every signal once and step each rule (evaluate.py)
    confirm    a switched rollback is verified once the rules that fired clear (rollback.py)
    lock wait  a deploy lock held while a rollback rule fires stops the window's clock
    window     a release that survived its watch window becomes known-good
    decide     the safety policy (decide.py) turns firing rules into a verdict
    act        plan, lock, re-read current, journal the intent, switch, verify (rollback.py)
    persist    state.json, telemetry, this host's fleet membership
    tell       send the tick's messages, gathered in one outbox, in order

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
import uuid
from dataclasses import dataclass, field
from typing import Callable, Iterable, Protocol, Sequence

from watcher import decide as decider
from watcher import evidence
from watcher import messages, requests, rollback
from watcher.backends.base import Backend
from watcher.clock import Timebase, shift_state_times
from watcher.config import WatcherConfig
from watcher.errors import BrokenCurrent, StateError, WatcherError
from watcher.evaluate import Evaluation, SignalReader, blindness, capture_baselines, evaluate, watch_window
from watcher.fleetmodel import is_fleet_rule
from watcher.incident import Incident
from watcher.locks import DeployLock
from watcher.messages import Message
from watcher.model import Action, Mark, RollbackResult, TransitionKind, Trigger, VerdictKind
from watcher.rules import Finding, Rule, finding
from watcher.scrub import redactor_for
from watcher.sdnotify import sd_notify
from watcher.state import State, StateStore

log = logging.getLogger(__name__)


class Notifier(Protocol):
    """What the watcher sends messages through (notify.Notifier)."""

    def send(self, message: Message) -> None: ...

    def restore_undelivered(self, events: Iterable[dict]) -> int: ...

    def retry_undelivered(self) -> int: ...


@dataclass
class TickReport:
    """What one tick saw and did; `eval` prints it, tests read it."""

    now: float
    current: str | None
    window_s: int
    rows: list[dict] = field(default_factory=list)  # per rule: name, value, condition, outcome, phase
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
        telemetry=None,
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
        self.wall = clock
        self.clock = self.timebase.now
        self.sleep = sleep
        self.monotonic = monotonic
        self.telemetry = telemetry
        self.state = State()
        self._ctx = messages.MessageContext(config.service, config.host)
        self.deploy_lock = DeployLock(config.deploy_lock)
        self._baseline_errors: set[tuple] = set()
        self._outbox: list[Message] = []
        self._blind_episode: frozenset[str] = frozenset()  # rules blind so far in this episode
        self.fleet = None  # a coordinator.FleetCoordinator when the config has `fleet:`
        # Backend reads that failed, ticks in a row: one failure is a wait, error_limit a page.
        self._current_failures = 0
        self._list_failures = 0
        self._current_error: tuple[str, bool] | None = None  # this tick: (reason, broken)

    @property
    def ctx(self) -> messages.MessageContext:
        """Message context at this moment, so bodies can say "for 2m10s"."""
        return self._ctx.at(self.clock())

    # ------------------------------------------------------------------------------------------
    # Start

    def start(self) -> None:
        """Load the state and finish what a crash left half-done. Raises StateError."""
        self.store.ensure_dir()
        self.state = self.store.load()
        # Saved times are the last process's steady time: into this one's, once.
        shift_state_times(self.state, self.state.clock_offset)
        self.learn_scrape_interval()
        self.journal("start", release=self.state.current, rules=len(self.config.rules), mode=self.config.mode)
        if self.notifier is not None:
            # Messages that had not got through before a restart are tried again.
            self.notifier.restore_undelivered(self.store.events())
        if self.state.intent is not None:
            rollback.reconcile(self, self.state.intent)
        self.tell()
        self.save()

    # ------------------------------------------------------------------------------------------
    # One tick

    def tick(self) -> TickReport:
        started, now = self.monotonic(), self.clock()
        self.check_clock()
        self.apply_requests(now)
        if self.fleet is not None:
            self.fleet.learn(self, now)
        report = TickReport(now, self.state.current, 0)
        current = self.resolve_release(now)
        if current is not None:
            report.current = current
            self.capture_baselines()
            evaluation = self.measure(now)
            report.window_s, report.rows = evaluation.window_s, evaluation.rows
            firing = evaluation.firing + (self.fleet.triggers(current) if self.fleet is not None else [])
            rollback.confirm(self, evaluation, now)
            self.hold_window_for_lock(now, firing)
            if self._current_error is None:  # never mark known-good a host that cannot be read
                self.assess_window(now, firing)
            report.verdict = self.decide(now, firing)
            report.acted = self.act(report.verdict, now)
        self.persist(report, started)
        self.tell()
        return report

    def check_clock(self) -> None:
        """A wall-clock step larger than one interval is journaled and said once; durations
        are not affected (they run on steady time)."""
        moved = self.timebase.step(max(self.config.interval, 1.0))
        if moved is None:
            return
        log.warning("the wall clock stepped seconds=%.1f", moved.seconds)
        self.journal("clock_step", seconds=round(moved.seconds, 3), wall=moved.wall, steady=moved.steady)
        self.notify(messages.clock_stepped(self.ctx, moved.seconds))

    def learn_scrape_interval(self) -> None:
        """Without `prometheus.scrape_interval` in the config, ask Prometheus' targets; the
        learned interval sets `min_window` (when not set either) and the trailing windows."""
        from watcher.prometheus_time import learn_into

        self.config, learned = learn_into(self.config, self.reader)
        if learned is None:
            return
        self.journal("scrape_interval_learned", seconds=learned.seconds, detail=learned.detail,
                     min_window=self.config.min_window)
        log.info("scrape interval learned seconds=%s detail=%s", learned.seconds, learned.detail)

    def apply_requests(self, now: float) -> None:
        requests.apply_pending(self, now)

    def resolve_release(self, now: float) -> str | None:
        """The current release; a change since the last tick is a deploy. When the backend
        cannot tell, the last release seen (its rules are still evaluated; the decider never
        acts on it); None when there is none yet."""
        self._current_error = None
        if self.backend is None:
            return self.state.current
        try:
            current = self.backend.current().id
        except WatcherError as exc:
            self._current_unreadable(exc)
            return self.state.current
        self._current_failures = 0
        if self.state.current_problem is not None:
            self.state.current_problem = None
            self.journal("current_readable", release=current)
            log.info("current is readable again release=%s", current)
            self.notify(messages.current_readable(self.ctx, current))
        if current != self.state.current:
            self.on_deploy(current, now, first_start=self.state.current is None)
        return current

    def _current_unreadable(self, exc: WatcherError) -> None:
        """Said once: at once for a broken `current` (BrokenCurrent), after error_limit ticks in
        a row for a read that may pass (docker restarting, a slow command)."""
        self._current_failures += 1
        broken = isinstance(exc, BrokenCurrent)
        reason = f"the backend cannot say which release is current: {exc}"
        self._current_error = (reason, broken)
        if self.state.current_problem is not None:
            return
        if broken or self._current_failures >= self.config.error_limit:
            self.state.current_problem = reason
            self.journal("current_unreadable", reason=reason, broken=broken, failures=self._current_failures,
                         release=self.state.current)
            log.error("cannot tell which release is current, not acting reason=%s", exc)
            self.notify(messages.current_unreadable(self.ctx, self.state.current, reason))
        elif self._current_failures == 1:
            self.journal("backend_error", reason=str(exc))
            log.warning("backend cannot say which release is current, trying again reason=%s", exc)

    def on_deploy(self, release: str, at: float, first_start: bool = False) -> None:
        """A new current release: open its watch window and forget the previous rule states.
        Its `deployed_at` is the timeline that orders releases (decide.order_releases)."""
        previous = self.state.current
        rec = self.state.release(release, at)
        rec.deployed_at = at
        rec.window_ends = at + self.config.watch_window
        self.state.current = release
        self.state.deployed_at = at
        self.state.changed_at = at
        self.state.window_ends = rec.window_ends if rec.mark != Mark.GOOD else None
        self.state.baselines = {}
        self.state.rules = {}
        self.close_incident(f"{release} was deployed", resolution="superseded")
        self.journal("deploy", release=release, previous=previous, first_start=first_start,
                     window_ends=self.state.window_ends)
        log.info("deploy seen release=%s previous=%s window=%ss", release, previous, self.config.watch_window)
        if self.state.window_ends is not None:
            has_known_good = any(r.mark == Mark.GOOD for rid, r in self.state.releases.items() if rid != release)
            self.notify(messages.deploy_seen(self.ctx, release, self.config.watch_window, has_known_good))

    def capture_baselines(self) -> None:
        for event in capture_baselines(self.config, getattr(self.reader, "prometheus", None), self.state,
                                       self._baseline_errors, wall_offset=self.timebase.offset()):
            kind = event.pop("kind")
            self.journal(kind, **event)

    def measure(self, now: float) -> Evaluation:
        """Evaluate the rule table once, keep the new rule states, journal and tell transitions."""
        s = self.state
        window_s = watch_window(now, s, self.config)
        evaluation = evaluate(self.config.rules, self.reader, now, window_s, s.rules, s.baselines,
                              self.config.error_limit, scrape_interval=self.config.prometheus.scrape_interval,
                              at=self.timebase.to_wall(now), since=s.changed_at)
        guard = getattr(self.reader, "clock_guard", None)
        for news in guard.take_news() if guard is not None else ():
            self.journal("prometheus_skew", skewed=news.skewed, seconds=round(news.skew, 3), limit=news.limit,
                         reason=news.reason)
        for e in evaluation.rules:
            s.rules[e.rule.name] = e.after
            for t in e.transitions:
                self._on_transition(e.rule, t, e.after, e.baseline)
            if self.telemetry is not None:
                self.telemetry.rule_evaluated(e)
        self.count_evidence(now, evaluation)
        # Each rule's blind/recovered is journaled above; people hear once per episode.
        sight = blindness(evaluation, self._blind_episode)
        self._blind_episode = sight.episode
        if sight.started:
            self.notify(messages.blind(self.ctx, sight.started, s.rules[sight.started[0]].last_detail))
        if sight.ended:
            self.notify(messages.recovered(self.ctx, sight.ended))
        return evaluation

    def _on_transition(self, rule: Rule, t, state, baseline) -> None:
        self.journal("rule", rule=rule.name, transition=t.kind, before=t.before.value, after=t.after.value,
                     reason=t.reason, value=state.last_value, labels=state.last_labels, release=self.state.current)
        # A blind rule and a firing one are what `journalctl -p warning` must show.
        level = logging.WARNING if t.kind is TransitionKind.BLIND or t.after.value == "firing" else logging.INFO
        log.log(level, "rule %s rule=%s %s->%s reason=%s", t.kind, rule.name, t.before.value, t.after.value, t.reason)
        if t.kind is not TransitionKind.PHASE:
            return
        self.timeline(f"{rule.name} {t.after.value}: {t.reason}")
        f = finding(rule, state, baseline)
        self.notify(messages.for_phase_change(self.ctx, f, t.after.value, self.state.current or "?",
                                              self.config.notify_pending), [f])

    def count_evidence(self, now: float, evaluation: Evaluation) -> None:
        if self.state.current is not None and self.state.in_watch_window(now):
            evidence.count_tick(self.state.release(self.state.current, now), evaluation.rules)

    def assess_window(self, now: float, firing: list[Finding]) -> None:
        """At the end of its watch window a release with no rollback rule firing is known-good."""
        s = self.state
        if s.window_ends is None or now < s.window_ends or s.current is None:
            return
        rec = s.release(s.current, now)
        rolling = [f.rule for f in firing if f.action == "rollback"]
        short = evidence.shortfall(rec, self.config.rules, self.config.evidence)
        if rolling:
            self.journal("window_ended", release=s.current, marked=False,
                         reason=f"{', '.join(rolling)} firing at the end of the window: not marked known-good")
        elif short is not None and rec.mark != Mark.BAD:
            self.journal("window_ended", release=s.current, marked=False, reason=f"{short}: not marked known-good",
                         watched_ticks=rec.watched_ticks, evidence_ticks=rec.evidence_ticks)
            self.notify(messages.window_without_evidence(self.ctx, s.current, short))
        elif rec.mark != Mark.BAD:
            rec.mark, rec.marked_at, rec.reason = Mark.GOOD.value, now, "survived its watch window"
            self.journal("window_passed", release=s.current)
            self.notify(messages.window_passed(self.ctx, s.current))
            if self.fleet is not None:
                self.fleet.survived(s.current, now)
            rollback.prune(self, protect={s.current})
        s.window_ends = None

    def hold_window_for_lock(self, now: float, firing: list[Finding]) -> None:
        """While a deploy holds the deploy lock and a rollback rule fires, the watch window's
        clock stops (it is extended by the wait), so the lock cannot outlive the window and
        leave a bad release live; a wait longer than `lock_timeout` is said once."""
        s = self.state
        rolling = [f for f in firing if f.action == "rollback"]
        # While waiting, the window's end moves by the time since the last tick, before it is
        # compared: a window that "ended" during the wait has not.
        held_for = now - s.lock_wait["last"] if s.lock_wait is not None else 0.0
        in_window = s.window_ends is not None and now < s.window_ends + held_for
        waiting = bool(rolling) and in_window and self.deploy_lock.held_by_other()
        if not waiting:
            if s.lock_wait is not None:
                self.journal("lock_wait_ended", release=s.current, seconds=round(now - s.lock_wait["since"], 3))
                s.lock_wait = None
            return
        if s.lock_wait is None:
            s.lock_wait = {"since": now, "last": now, "notified": False}
            self.journal("lock_wait", release=s.current, lock=str(self.deploy_lock.path),
                         rules=[f.rule for f in rolling])
        else:
            s.window_ends += held_for
            if s.current in s.releases:
                s.releases[s.current].window_ends = s.window_ends
            s.lock_wait["last"] = now
        waited = now - s.lock_wait["since"]
        if not s.lock_wait["notified"] and waited >= self.config.lock_timeout:
            s.lock_wait["notified"] = True
            self.journal("lock_wait_long", release=s.current, seconds=round(waited, 3), lock=str(self.deploy_lock.path))
            log.error("a deploy has held the deploy lock while a rollback rule fires seconds=%.0f", waited)
            self.notify(messages.lock_wait_long(self.ctx, s.current or "?", str(self.deploy_lock.path), waited,
                                                rolling), rolling)

    def decide(self, now: float, firing: list[Finding]) -> decider.Verdict:
        s = self.state
        releases: tuple[str, ...] = ()
        problem, failures, broken = None, 0, False
        if self._current_error is not None:
            (problem, broken), failures = self._current_error, self._current_failures
        # Listing releases reads a directory or runs a command: only worth it when acting may follow.
        elif self.backend is not None and any(f.action == "rollback" for f in firing):
            try:
                listed = self.backend.releases()
                releases = tuple(r.id for r, _ in decider.order_releases(listed, s.releases))
                self._list_failures = 0
            except WatcherError as exc:
                self._list_failures += 1
                problem, failures = f"the backend cannot list its releases: {exc}", self._list_failures
                log.warning("backend cannot list releases failures=%d reason=%s", failures, exc)
        confirming = None
        if s.confirming is not None:
            confirming = (f"rolled back {s.confirming['from']} -> {s.confirming['to']}, waiting for "
                          f"{', '.join(s.confirming['rules'])} to clear on {s.confirming['to']}")
        symptoms, symptom_reason = self.fleet.symptoms(self, firing, now) if self.fleet is not None else (frozenset(), "")
        situation = decider.Situation(
            now=now, current=s.current or "", releases=releases, marks=s.releases,
            in_watch_window=s.in_watch_window(now), firing=tuple(firing), paused_until=s.paused_until,
            halted=s.halted, lock_held=self.deploy_lock.held_by_other(), fleet_symptoms=symptoms,
            fleet_symptom_reason=symptom_reason, confirming=confirming,
            backend_problem=problem, backend_failures=failures, backend_broken=broken,
        )
        policy = decider.Policy(self.config.shadow, self.config.safety.max_auto_rollbacks, self.config.safety.cooldown,
                                self.config.error_limit)
        verdict = decider.decide(situation, policy)
        if verdict.action is Action.ROLLBACK and self.backend is None:
            verdict = dataclasses.replace(verdict, action=Action.REFUSE, kind=VerdictKind.NO_BACKEND,
                                          reason="no backend is configured")
        return verdict

    def act(self, verdict: decider.Verdict, now: float) -> RollbackResult | None:
        s = self.state
        if verdict.kind is VerdictKind.QUIET:
            # A rollback being confirmed closes its incident itself (rollback.confirm), as
            # rolled back or not cleared: a quiet tick meanwhile is not the end of it.
            if s.incident is not None and s.confirming is None:
                self.close_incident("no rollback rule fires any more", resolution="cleared")
            return None
        findings = list(verdict.findings)
        changed = self._incident_step(verdict, now)
        if changed:
            self.journal("verdict", action=verdict.action, check=verdict.kind, reason=verdict.reason,
                         release=verdict.current, target=verdict.target, rules=[f.rule for f in verdict.findings])
            log.info("verdict action=%s kind=%s reason=%s", verdict.action, verdict.kind, verdict.reason)
        if verdict.action is Action.ROLLBACK:
            # Acting is never de-duplicated: a rollback that could not take the deploy lock this
            # tick (a deploy grabbed it after the check) is tried again on the next one.
            fleet_only = all(is_fleet_rule(f.rule) for f in verdict.findings)
            plan = rollback.RollbackPlan(verdict.current, verdict.targets, verdict.reason,
                                         Trigger.FLEET if fleet_only else Trigger.RULE, verdict.findings)
            return rollback.execute(self, plan).result
        if changed:  # one message per state change of the incident, not one per tick
            self.notify(messages.for_verdict(self.ctx, verdict), findings)
        return None

    def persist(self, report: TickReport, started: float) -> None:
        self.safe_save()
        if self.fleet is not None:
            self.fleet.report(self, report.now)
        report.seconds = self.monotonic() - started
        if self.telemetry is not None:
            self.telemetry.tick_done(report.seconds)
            rec = self.state.releases.get(self.state.current or "")
            self.telemetry.set_release(self.state.current, rec.mark if rec else None)
            self.telemetry.in_window.set(1 if self.state.in_watch_window(report.now) else 0)
            self.telemetry.set_controls(report.now, bool(self.state.halted), self.state.paused_until)
            if hasattr(self.notifier, "undelivered_by_target"):
                self.telemetry.set_undelivered(self.notifier.undelivered_by_target())

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

    def _incident_step(self, verdict: decider.Verdict, now: float) -> bool:
        """Open the incident if needed; return whether the verdict is news for it."""
        s = self.state
        if s.incident is None:
            s.incident = Incident.open(uuid.uuid4().hex[:12], now, s.current, verdict.findings)
            self.journal("incident_opened", incident=s.incident.id, release=s.current, rules=s.incident.rules)
        return s.incident.step(verdict.kind, verdict.reason, self.clock())

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

    def apply_request(self, command: str, args: dict, now: float) -> str:
        """Apply one human request to the state (also used directly when no service runs)."""
        result = requests.apply(self, command, args, now)
        self.tell()
        return result

    def manual_rollback(self, to: str | None, reason: str, dry_run: bool = False) -> str:
        result = requests.manual_rollback(self, to, reason, dry_run)
        self.tell()
        return result

    # ------------------------------------------------------------------------------------------
    # What the steps and rollback.py share

    def journal(self, kind: str, **fields) -> None:
        try:
            self.store.journal(kind, **fields)
        except StateError as exc:
            log.error("journal write failed kind=%s reason=%s", kind, exc)
            raise

    def notify(self, message: Message | None, findings: Sequence[Finding] = ()) -> None:
        """Queue a message for `tell`, routed by the `notify:` tags of the rules behind `findings`."""
        if message is not None:
            incident = self.state.incident.id if self.state.incident is not None else None
            message = messages.with_context(message, self.ctx, incident)
            self._outbox.append(messages.routed(message, findings, self.config.rules))

    def save(self) -> None:
        self.state.clock_offset = self.timebase.offset()
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


def build_watcher(config: WatcherConfig, notify: bool = True, telemetry: bool = False, clock=time.time,
                  fleet: bool = False) -> Watcher:
    """Wire a Watcher from its config: backend, signals, notifier, state store, and (with
    `fleet` and a `fleet:` section) its fleet coordinator, not started yet."""
    from watcher.backends import build_backend
    from watcher.signals import build_reader

    redact = redactor_for(config)
    store = StateStore(config.state_dir, clock=clock, redact=redact)
    backend = build_backend(config.backend.type, config.backend.options) if config.backend else None
    notifier = None
    if notify and config.notify:
        from watcher.notify import Notifier

        notifier = Notifier(list(config.notify), journal=quiet_journal(store), clock=clock, redact=redact)
    tele = None
    if telemetry:
        from watcher.telemetry import Telemetry

        tele = Telemetry(config.interval, clock=clock)
    w = Watcher(config, backend, build_reader(config), notifier, store, clock=clock, sleep=_sleep_alive,
                telemetry=tele)
    if fleet and config.fleet is not None:
        from watcher.coordinator import FleetCoordinator
        from watcher.fleet import FleetLink

        w.fleet = FleetCoordinator(FleetLink(config.fleet, config.state_dir, clock=clock), tele)
    return w


def _sleep_alive(seconds: float) -> None:
    """Sleep between verify attempts, telling systemd's watchdog the service is alive: a
    rollback's verification (attempts x every, 60 s by default) runs inside one tick."""
    sd_notify("WATCHDOG=1")
    time.sleep(seconds)


def quiet_journal(store: StateStore):
    """The notifier journals failed deliveries from its own thread: a journal that cannot be
    written there is logged, never raised into the delivery thread."""

    def journal(kind: str, **fields) -> None:
        try:
            store.journal(kind, **fields)
        except StateError as exc:
            log.error("journal write failed kind=%s reason=%s", kind, exc)

    return journal
