"""The service loop: one tick every `interval` (DESIGN.md section 1).

One tick, in order:

    requests   apply what humans asked through the CLI (marks, pause, resolve, rollback)
    release    ask the backend which release is current; a change is a deploy
    window     a release that survived its watch window becomes known-good
    signals    read every rule's signal at once (signals.py), then step each rule (rules.py)
    decide     the safety policy (decide.py) turns firing rules into a verdict
    act        record the intent, switch, verify, record the result (execute_rollback)
    persist    state.json, metrics, systemd status

The clock is passed in; only `run()` sleeps between ticks. Every action is journaled before
it is taken, so that a crash mid-rollback is reconciled at the next start (`start()`).
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable

from watcher import decide as decider
from watcher import messages
from watcher.config import WatcherConfig, load_config
from watcher.errors import ConfigError, RollbackError, SourceError, StateError, WatcherError
from watcher.locks import DeployLock, LockBusy
from watcher.rules import (
    Finding,
    HttpCheck,
    Phase,
    PromQuery,
    Rule,
    RuleState,
    classify,
    finding,
    render_query,
    step,
    window_seconds,
)
from watcher.sdnotify import sd_notify
from watcher.state import State, StateStore
from watcher.verify import verify

log = logging.getLogger(__name__)


@dataclass
class TickReport:
    """What one tick saw and did; `eval` prints it, tests read it."""

    now: float
    current: str | None
    window_s: int
    rows: list[dict] = field(default_factory=list)  # per rule: name, value, condition, outcome, phase
    verdict: decider.Verdict | None = None
    acted: str | None = None  # "rolled_back", "rollback_failed", "verify_failed"
    seconds: float = 0.0


class Watcher:
    def __init__(
        self,
        config: WatcherConfig,
        backend,
        reader,
        notifier,
        store: StateStore,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        telemetry=None,
    ):
        self.config = config
        self.backend = backend
        self.reader = reader
        self.notifier = notifier
        self.store = store
        self.clock = clock
        self.sleep = sleep
        self.monotonic = monotonic
        self.telemetry = telemetry
        self.state = State()
        self._ctx = messages.MessageContext(config.service, config.host)
        self.deploy_lock = DeployLock(config.deploy_lock)
        self._stop = threading.Event()
        self._reload = threading.Event()
        self._baseline_errors: set[tuple] = set()

    @property
    def ctx(self) -> messages.MessageContext:
        """Message context at this moment, so bodies can say "for 2m10s"."""
        return self._ctx.at(self.clock())

    # ------------------------------------------------------------------------------------------
    # Start and reconcile

    def start(self) -> None:
        """Load the state and finish what a crash left half-done. Raises StateError."""
        self.store.ensure_dir()
        self.state = self.store.load()
        self.journal("start", release=self.state.current, rules=len(self.config.rules), mode=self.config.mode)
        if hasattr(self.notifier, "restore_undelivered"):
            # Messages that had not got through before a restart are tried again.
            self.notifier.restore_undelivered(self.store.events())
        if self.state.intent is not None:
            self._reconcile(self.state.intent)
        self.save()

    def _reconcile(self, intent: dict) -> None:
        """A switch was recorded but its result was not: find out, never switch again blindly."""
        from_id, to_id = intent["from"], intent["to"]
        try:
            current = self.backend.current().id
        except WatcherError as exc:
            self.state.halted = f"after a restart, the backend cannot say whether {from_id} -> {to_id} happened: {exc}"
            self.journal("reconcile", result="unknown", release=from_id, target=to_id, reason=str(exc))
            self.notify(messages.rollback_failed(self.ctx, from_id, to_id, self.state.halted))
            return
        if current == to_id:
            result = verify(to_id, self.backend, self.config.verify, self._probe_rules(), self._probe(),
                            self.clock, self.sleep)
            if result.ok:
                self.journal("reconcile", result="switched_and_verified", release=from_id, target=to_id, detail=result.detail)
                self._after_verified(from_id, to_id, intent, result.seconds)
            else:
                self.journal("reconcile", result="switched_not_verified", release=from_id, target=to_id, detail=result.detail)
                self._after_verify_failed(from_id, to_id, result.detail)
        else:
            # The switch did not happen (or someone changed the host since). The release stays
            # marked bad with its rollback counted, so the decider will call a human rather
            # than switch a second time.
            self.journal("reconcile", result="not_switched", release=from_id, target=to_id, current=current)
            self.state.current = current
            self._close_incident(f"interrupted before the switch; {current} is current", resolution="interrupted")
        self.state.intent = None

    # ------------------------------------------------------------------------------------------
    # One tick

    def tick(self) -> TickReport:
        started = self.monotonic()
        now = self.clock()
        self._apply_requests(now)
        report = TickReport(now, self.state.current, 0)

        current = self._observe_release(now)
        if current is None:
            self._finish_tick(report, started)
            return report
        report.current = current

        in_window = self.state.in_watch_window(now)
        window_s = window_seconds(now, self.state.deployed_at, in_window, self.config.min_window, self.config.max_window)
        report.window_s = window_s
        self._capture_baselines()

        results = self.reader.read_all(list(self.config.rules), now, window_s)
        blind, recovered = [], []
        firing: list[Finding] = []
        for rule in self.config.rules:
            result, seconds = results[rule.name]
            baseline = self.state.baselines.get(rule.name)
            obs = classify(rule, result, baseline)
            before = self.state.rules.get(rule.name, RuleState())
            after, transitions = step(rule, before, obs, now, self.config.error_limit)
            self.state.rules[rule.name] = after
            for t in transitions:
                self._on_transition(rule, t, after, baseline, blind, recovered)
            if after.phase is Phase.FIRING:
                firing.append(finding(rule, after, baseline))
            report.rows.append(_row(rule, obs, after, baseline, seconds))
            self._count(rule, obs, seconds)
        if blind:
            self.notify(messages.blind(self.ctx, blind, self.state.rules[blind[0]].last_detail))
        if recovered:
            self.notify(messages.recovered(self.ctx, recovered))

        self._check_window_end(now, firing)
        report.verdict = self._decide(now, firing)
        report.acted = self._act(report.verdict, now)
        self._finish_tick(report, started)
        return report

    def _finish_tick(self, report: TickReport, started: float) -> None:
        try:
            self.save()
        except StateError as exc:
            log.error("state not saved reason=%s", exc)
        report.seconds = self.monotonic() - started
        if self.telemetry is not None:
            self.telemetry.tick_done(report.seconds)
            rec = self.state.releases.get(self.state.current or "")
            self.telemetry.set_release(self.state.current, rec.mark if rec else None)
            self.telemetry.in_window.set(1 if self.state.in_watch_window(report.now) else 0)
        if hasattr(self.notifier, "retry_undelivered"):
            self.notifier.retry_undelivered()

    def _observe_release(self, now: float) -> str | None:
        if self.backend is None:
            return self.state.current
        try:
            current = self.backend.current().id
        except WatcherError as exc:
            log.error("backend cannot say which release is current reason=%s", exc)
            self.journal("backend_error", reason=str(exc))
            return None
        if current != self.state.current:
            first = self.state.current is None
            self._on_deploy(current, now, first_start=first)
        return current

    def _on_deploy(self, release: str, at: float, first_start: bool = False) -> None:
        """A new current release: open its watch window and forget the previous rule states."""
        previous = self.state.current
        rec = self.state.release(release, at)
        rec.deployed_at = at
        rec.window_ends = at + self.config.watch_window
        self.state.current = release
        self.state.deployed_at = at
        self.state.window_ends = rec.window_ends if rec.mark != "good" else None
        self.state.baselines = {}
        self.state.rules = {}
        self._close_incident(f"{release} was deployed", resolution="superseded")
        self.journal("deploy", release=release, previous=previous, first_start=first_start,
                     window_ends=self.state.window_ends)
        log.info("deploy seen release=%s previous=%s window=%ss", release, previous, self.config.watch_window)
        if self.state.window_ends is not None:
            self.notify(messages.deploy_seen(self.ctx, release, self.config.watch_window))

    def _capture_baselines(self) -> None:
        """The median of each baseline rule's query over `baseline_window` before the deploy,
        captured once per deploy; retried on later ticks while Prometheus cannot answer."""
        source = getattr(self.reader, "prometheus", None)
        if self.state.deployed_at is None or source is None:
            return
        for rule in self.config.rules:
            if not rule.uses_baseline or rule.name in self.state.baselines or not isinstance(rule.signal, PromQuery):
                continue
            query = render_query(rule.signal.query, int(self.config.max_window))
            step_s = max(self.config.prometheus.scrape_interval, rule.baseline_window / 240)
            try:
                value = source.baseline(query, self.state.deployed_at, rule.baseline_window, step_s)
            except SourceError as exc:
                # Retried every tick; said once per deploy, since the rule cannot fire meanwhile.
                key = (self.state.current, self.state.deployed_at, rule.name)
                if key not in self._baseline_errors:
                    self._baseline_errors.add(key)
                    log.error("baseline not captured, rule cannot fire until it is rule=%s reason=%s", rule.name, exc)
                    self.journal("baseline_error", rule=rule.name, release=self.state.current, reason=str(exc))
                continue
            self.state.baselines[rule.name] = value
            self.journal("baseline", rule=rule.name, release=self.state.current, value=value,
                         window=rule.baseline_window, end=self.state.deployed_at)

    def _on_transition(self, rule: Rule, t, state: RuleState, baseline, blind: list, recovered: list) -> None:
        if t.kind == "blind":
            blind.append(rule.name)
        elif t.kind == "recovered":
            recovered.append(rule.name)
        self.journal("rule", rule=rule.name, transition=t.kind, before=t.before.value, after=t.after.value,
                     reason=t.reason, value=state.last_value, labels=state.last_labels, release=self.state.current)
        log.info("rule %s rule=%s %s->%s reason=%s", t.kind, rule.name, t.before.value, t.after.value, t.reason)
        if t.kind != "phase":
            return
        f = finding(rule, state, baseline)
        self._timeline(f"{rule.name} {t.after.value}: {t.reason}")
        if rule.action == "notify" and t.after is Phase.FIRING:
            self.notify(self._routed(messages.notify_only(self.ctx, f, self.state.current or "?"), [f]))
        elif rule.action == "rollback" and t.after is Phase.PENDING and self.config.notify_pending:
            self.notify(self._routed(messages.rule_pending(self.ctx, f, self.state.current or "?"), [f]))

    def _check_window_end(self, now: float, firing: list[Finding]) -> None:
        s = self.state
        if s.window_ends is None or now < s.window_ends or s.current is None:
            return
        rec = s.release(s.current, now)
        rolling = [f.rule for f in firing if f.action == "rollback"]
        if rolling:
            self.journal("window_ended", release=s.current, marked=False,
                         reason=f"{', '.join(rolling)} firing at the end of the window: not marked known-good")
        elif rec.mark != "bad":
            rec.mark, rec.marked_at, rec.reason = "good", now, "survived its watch window"
            self.journal("window_passed", release=s.current)
            self.notify(messages.window_passed(self.ctx, s.current))
            self._prune(protect={s.current})
        s.window_ends = None

    # ------------------------------------------------------------------------------------------
    # Decide and act

    def _decide(self, now: float, firing: list[Finding]) -> decider.Verdict:
        s = self.state
        releases: tuple[str, ...] = ()
        # Listing releases reads a directory or runs a command: only worth it when acting may follow.
        if self.backend is not None and any(f.action == "rollback" for f in firing):
            try:
                releases = tuple(r.id for r in self.backend.releases())
            except WatcherError as exc:
                log.error("backend cannot list releases reason=%s", exc)
        situation = decider.Situation(
            now=now, current=s.current or "", releases=releases, marks=s.releases,
            in_watch_window=s.in_watch_window(now), firing=tuple(firing), paused_until=s.paused_until,
            halted=s.halted, lock_held=self.deploy_lock.held_by_other(), last_rollback_at=s.last_rollback_at,
        )
        policy = decider.Policy(self.config.shadow, self.config.safety.max_auto_rollbacks, self.config.safety.cooldown)
        verdict = decider.decide(situation, policy)
        if verdict.action == decider.ROLLBACK and self.backend is None:
            verdict = dataclasses.replace(verdict, action=decider.REFUSE, kind="no_backend", reason="no backend is configured")
        return verdict

    def _act(self, verdict: decider.Verdict, now: float) -> str | None:
        s = self.state
        if verdict.action == decider.NOTHING and verdict.kind == "quiet":
            if s.incident is not None:
                self._close_incident("no rollback rule fires any more", resolution="cleared")
            return None
        findings = list(verdict.findings)
        changed = self._incident_step(verdict, now)
        if changed:
            self.journal("verdict", action=verdict.action, check=verdict.kind, reason=verdict.reason,
                         release=verdict.current, target=verdict.target, rules=[f.rule for f in verdict.findings])
            log.info("verdict action=%s kind=%s reason=%s", verdict.action, verdict.kind, verdict.reason)
        if verdict.action == decider.ROLLBACK:
            # Acting is never de-duplicated: a rollback that could not take the deploy lock this
            # tick (a deploy grabbed it after the check) is tried again on the next one.
            return self.execute_rollback(verdict.current, verdict.target, verdict.reason, findings)
        if not changed:
            return None  # one message per state change of the incident, not one per tick
        if verdict.action == decider.NOTIFY:
            if verdict.kind == "outside_window":
                self.notify(self._routed(messages.fired_outside_window(self.ctx, s.current, findings), findings))
            else:
                self.notify(self._routed(messages.would_roll_back(self.ctx, s.current, verdict.target, findings, verdict.reason), findings))
        elif verdict.action == decider.REFUSE:
            self.notify(self._routed(messages.cannot_act(self.ctx, s.current, verdict.reason, findings), findings))
        return None

    def execute_rollback(self, from_id: str, to_id: str, reason: str, findings: list[Finding], manual: bool = False) -> str:
        """Lock, record the intent, switch, verify, record the result. The manual `rollback`
        command goes down this same path. Returns "rolled_back", "rollback_failed",
        "verify_failed" or "deploy_lock"."""
        s = self.state
        now = self.clock()
        try:
            with self.deploy_lock.hold():
                target = next((r for r in self.backend.releases() if r.id == to_id), None)
                if target is None:
                    raise RollbackError(f"the backend no longer lists {to_id}")
                self.backend.preflight(target)
                intent = {"id": uuid.uuid4().hex[:12], "from": from_id, "to": to_id, "reason": reason,
                          "at": now, "manual": manual}
                rec = s.release(from_id, now)
                if not manual:
                    rec.auto_rollbacks += 1
                rec.mark, rec.marked_at, rec.reason = "bad", now, reason
                s.last_rollback_at = now
                s.intent = intent
                # Recorded before it is taken: if this write fails, nothing is switched.
                self.journal("rollback_intent", release=from_id, target=to_id, reason=reason, manual=manual,
                             rules=[f.rule for f in findings], intent=intent["id"])
                self.save()
                self._timeline(f"rolling back {from_id} -> {to_id}")
                self.notify(self._routed(messages.rolling_back(self.ctx, from_id, to_id, findings), findings))
                switch_started = self.monotonic()
                output = self.backend.switch(target, reason)
                self.journal("rollback_switched", release=from_id, target=to_id, output=output or "",
                             seconds=round(self.monotonic() - switch_started, 3), intent=intent["id"])
        except LockBusy as exc:
            self.journal("rollback_waiting", release=from_id, target=to_id, reason=str(exc))
            return "deploy_lock"
        except (RollbackError, StateError) as exc:
            detail = str(exc)
            output = getattr(exc, "output", "")
            self.journal("rollback_failed", release=from_id, target=to_id, reason=detail, output=output)
            log.error("rollback failed release=%s target=%s reason=%s", from_id, to_id, detail)
            s.halted = f"rollback {from_id} -> {to_id} failed: {detail}"
            s.intent = None
            self._count_rollback("failed")
            self._timeline(f"rollback failed: {detail}")
            self.notify(messages.rollback_failed(self.ctx, from_id, to_id, detail))
            self._safe_save()
            return "rollback_failed"

        result = verify(to_id, self.backend, self.config.verify, self._probe_rules(), self._probe(), self.clock, self.sleep)
        if result.ok:
            self.journal("rollback_verified", release=from_id, target=to_id, detail=result.detail,
                         seconds=round(result.seconds, 3), attempts=result.attempts)
            self._after_verified(from_id, to_id, s.intent or {}, self.clock() - now)
            s.intent = None
            self._safe_save()
            return "rolled_back"
        self.journal("verify_failed", release=from_id, target=to_id, detail=result.detail, attempts=result.attempts)
        self._after_verify_failed(from_id, to_id, result.detail)
        s.intent = None
        self._safe_save()
        return "verify_failed"

    def _after_verified(self, from_id: str, to_id: str, intent: dict, seconds: float) -> None:
        s = self.state
        findings = [f for f in (finding(r, s.rules[r.name], s.baselines.get(r.name)) for r in self.config.rules
                                if r.name in s.rules and s.rules[r.name].phase is Phase.FIRING)]
        # Back on a known-good release: it is not a deploy, no window, fresh rule states.
        s.current = to_id
        s.deployed_at = None
        s.window_ends = None
        s.rules = {}
        s.baselines = {}
        self._count_rollback("verified")
        self._timeline(f"rolled back to {to_id}, verified in {seconds:.1f}s")
        self._close_incident(f"rolled back {from_id} -> {to_id}", resolution="rolled_back")
        self._prune(protect={from_id, to_id})
        log.info("rollback verified release=%s target=%s seconds=%.1f", from_id, to_id, seconds)
        self.notify(messages.rollback_verified(self.ctx, from_id, to_id, findings, seconds))

    def _after_verify_failed(self, from_id: str, to_id: str, detail: str) -> None:
        s = self.state
        s.halted = f"rollback {from_id} -> {to_id} did not verify: {detail}"
        s.current = to_id
        self._count_rollback("not_verified")
        self._timeline(f"rollback did not verify: {detail}")
        log.error("rollback did not verify release=%s target=%s detail=%s", from_id, to_id, detail)
        self.notify(messages.verify_failed(self.ctx, from_id, to_id, detail))

    # ------------------------------------------------------------------------------------------
    # Incidents: from the first firing rollback rule to the verified end

    def _incident_step(self, verdict: decider.Verdict, now: float) -> bool:
        """Open the incident if needed; return whether the verdict is news for it."""
        s = self.state
        if s.incident is None:
            s.incident = {"id": uuid.uuid4().hex[:12], "opened_at": now, "release": s.current,
                          "rules": [f.rule for f in verdict.findings], "timeline": [], "last_kind": None}
            # The timeline starts where the trouble did: when each firing rule first breached.
            for f in sorted(verdict.findings, key=lambda f: f.since or now):
                s.incident["timeline"].append({"time": round(f.since or now, 3), "what": f"{f.rule} breached: {f.detail or f.value}"})
            self.journal("incident_opened", incident=s.incident["id"], release=s.current, rules=s.incident["rules"])
        if s.incident.get("last_kind") == verdict.kind:
            return False
        s.incident["last_kind"] = verdict.kind
        self._timeline(f"{verdict.kind}: {verdict.reason}")
        return True

    def _timeline(self, what: str) -> None:
        if self.state.incident is not None:
            self.state.incident["timeline"].append({"time": round(self.clock(), 3), "what": what})

    def _close_incident(self, why: str, resolution: str) -> None:
        s = self.state
        if s.incident is None:
            return
        incident = dict(s.incident, closed_at=round(self.clock(), 3), resolution=resolution, summary=why)
        incident.pop("last_kind", None)
        s.incident = None
        self.journal("incident", **incident)

    # ------------------------------------------------------------------------------------------
    # Requests from humans (CLI) applied by the running service

    def _apply_requests(self, now: float) -> None:
        for req in self.store.take_requests():
            try:
                result = self.apply_request(req.get("command", ""), req.get("args", {}), now)
            except WatcherError as exc:
                result = f"refused: {exc}"
            self.journal("request_done", request=req.get("id"), command=req.get("command"), result=result)

    def apply_request(self, command: str, args: dict, now: float) -> str:
        """Apply one human request to the state (also used directly when no service runs)."""
        from watcher.backends.base import check_release_id

        s = self.state
        if command == "mark":
            rid = check_release_id(args["release"])
            rec = s.release(rid, now)
            what = args["mark"]
            if what == "barrier":
                rec.barrier = True
            elif what == "not-barrier":
                rec.barrier = False
            else:
                rec.mark, rec.marked_at, rec.reason = what, now, args.get("reason") or "marked by a human"
                if rid == s.current and what == "good":
                    s.window_ends = None
            self.journal("mark", release=rid, mark=what, by="human")
            return f"{rid} marked {what}"
        if command == "deployed":
            rid = check_release_id(args["release"])
            at = float(args.get("at") or now)
            self._on_deploy(rid, at)
            return f"deploy of {rid} at {at:.0f} recorded"
        if command == "pause":
            s.paused_until = now + float(args["seconds"])
            self.journal("pause", until=s.paused_until)
            return f"paused until {s.paused_until:.0f}"
        if command == "resume":
            s.paused_until = None
            self.journal("resume")
            return "resumed"
        if command == "resolve":
            was = s.halted
            s.halted = None
            self._close_incident("resolved by a human", resolution="resolved")
            self.journal("resolve", was=was)
            return "resolved" if was else "nothing was halted"
        if command == "rollback":
            return self.manual_rollback(args.get("to"), args.get("reason") or "manual rollback")
        raise WatcherError(f"unknown request {command!r}")

    def manual_rollback(self, to: str | None, reason: str) -> str:
        from watcher.backends.base import check_release_id

        if self.backend is None:
            raise RollbackError("no backend is configured")
        current = self.backend.current().id
        if to is None:
            target, why = decider.choose_target(current, [r.id for r in self.backend.releases()], self.state.releases)
            if target is None:
                raise RollbackError(why)
        else:
            target = check_release_id(to)
            rec = self.state.releases.get(target)
            if rec is not None and rec.mark == "bad":
                raise RollbackError(f"{target} is marked bad; mark it good first if you are sure")
            if target == current:
                raise RollbackError(f"{target} is already current")
        self.state.current = current
        return self.execute_rollback(current, target, reason, [], manual=True)

    # ------------------------------------------------------------------------------------------
    # The loop

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT finish the tick in hand, SIGHUP reloads. Installed before `start()`,
        so that a stop during a reconcile's verification does not kill it half-way."""
        signal.signal(signal.SIGTERM, lambda *_: self._stop.set())
        signal.signal(signal.SIGINT, lambda *_: self._stop.set())
        signal.signal(signal.SIGHUP, lambda *_: self._reload.set())

    def run(self, install_signals: bool = True) -> int:
        if install_signals:
            self.install_signal_handlers()
        sd_notify(f"READY=1\nSTATUS={self.status_line()}\nMAINPID={_pid()}")
        log.info("watching service=%s rules=%d interval=%ss mode=%s", self.config.service, len(self.config.rules),
                 self.config.interval, self.config.mode)
        next_at = self.monotonic()
        while not self._stop.is_set():
            if self._reload.is_set():
                self._reload.clear()
                self.reload()
            report = self.tick()
            sd_notify(f"WATCHDOG=1\nSTATUS={self.status_line()}")
            next_at += self.config.interval
            late = self.monotonic() - next_at
            if late > 0:
                log.warning("tick overran the interval seconds=%.2f interval=%ss", report.seconds, self.config.interval)
                next_at = self.monotonic()
                continue
            self._stop.wait(next_at - self.monotonic())
        sd_notify("STOPPING=1")
        log.info("stopping: the tick in hand is done")
        return 0

    def stop(self) -> None:
        self._stop.set()

    def request_reload(self) -> None:
        self._reload.set()

    def reload(self) -> bool:
        """Reload config and rules; an invalid new config is refused and the old one keeps
        running. Rule states are kept by rule name (as Prometheus' rule manager does)."""
        # Newer systemd wants the reload's monotonic time beside RELOADING=1.
        sd_notify(f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}")
        try:
            new = load_config(self.config.path)
        except ConfigError as exc:
            problems = [str(p) for p in exc.problems]
            self.journal("reload_refused", problems=problems)
            log.warning("reload refused, keeping the running config problems=%d first=%s", len(problems), problems[0])
            self.notify(messages.reload_refused(self.ctx, problems))
            sd_notify("READY=1")
            return False
        from watcher.signals import build_reader

        old_reader = self.reader
        self.reader = build_reader(new)
        old_reader.close()
        if new.backend != self.config.backend and new.backend is not None:
            from watcher.backends import build_backend

            self.backend = build_backend(new.backend.type, new.backend.options)
        names = {r.name for r in new.rules}
        self.state.rules = {k: v for k, v in self.state.rules.items() if k in names}
        self.config = new
        self.deploy_lock = DeployLock(new.deploy_lock)
        self.journal("config_reloaded", rules=len(new.rules))
        log.info("config reloaded rules=%d", len(new.rules))
        sd_notify("READY=1")
        return True

    def status_line(self) -> str:
        s = self.state
        firing = [n for n, r in s.rules.items() if r.phase is Phase.FIRING]
        pending = [n for n, r in s.rules.items() if r.phase is Phase.PENDING]
        parts = [f"release {s.current or '?'}"]
        if s.window_ends:
            parts.append(f"in window until {time.strftime('%H:%M:%S', time.gmtime(s.window_ends))}Z")
        if s.halted:
            parts.append("HALTED")
        parts.append(f"firing {','.join(firing)}" if firing else "no rule firing")
        if pending:
            parts.append(f"pending {','.join(pending)}")
        return "; ".join(parts)

    # ------------------------------------------------------------------------------------------
    # Helpers

    def journal(self, kind: str, **fields) -> None:
        try:
            self.store.journal(kind, **fields)
        except StateError as exc:
            log.error("journal write failed kind=%s reason=%s", kind, exc)
            raise

    def notify(self, message) -> None:
        if self.notifier is not None:
            self.notifier.send(message)

    def save(self) -> None:
        self.store.save(self.state)

    def _safe_save(self) -> None:
        try:
            self.save()
        except StateError as exc:
            log.error("state not saved reason=%s", exc)

    def _prune(self, protect: set[str]) -> None:
        """Let a backend with `keep:` delete old releases: never a known-good one, never the
        current one, never the ones an incident is about."""
        if not hasattr(self.backend, "prune"):
            return
        protected = {rid for rid, rec in self.state.releases.items() if rec.mark == "good"} | protect
        if self.state.current:
            protected.add(self.state.current)
        try:
            removed = self.backend.prune(protected)
        except (WatcherError, OSError) as exc:
            log.warning("prune failed reason=%s", exc)
            return
        if removed:
            self.journal("pruned", releases=removed)

    def _routed(self, message, findings: list[Finding]):
        tags = sorted({t for f in findings for r in self.config.rules if r.name == f.rule for t in r.notify})
        return dataclasses.replace(message, route_tags=tuple(tags)) if tags else message

    def _probe_rules(self) -> list[Rule]:
        return [r for r in self.config.rules if isinstance(r.signal, HttpCheck) and r.action == "rollback"]

    def _probe(self):
        """Verification probes, bounded in time like a tick's (a trickling endpoint cannot hold
        a verification past each probe's timeout)."""
        return _BoundedProbe(self.reader)

    def _count(self, rule: Rule, obs, seconds: float) -> None:
        if self.telemetry is None:
            return
        state = self.state.rules[rule.name]
        self.telemetry.rule_state.labels(rule=rule.name).set({"inactive": 0, "pending": 1, "firing": 2}[state.phase.value])
        self.telemetry.rule_blind.labels(rule=rule.name).set(1 if state.blind else 0)
        self.telemetry.evaluations.labels(rule=rule.name, outcome=obs.outcome.value).inc()
        kind = type(rule.signal).__name__
        self.telemetry.query_seconds.labels(kind=kind).observe(seconds)
        if obs.outcome.value == "error":
            self.telemetry.query_errors.labels(rule=rule.name).inc()

    def _count_rollback(self, result: str) -> None:
        self.state.count(f"rollbacks_{result}")
        if self.telemetry is not None:
            self.telemetry.rollbacks.labels(result=result).inc()


class _BoundedProbe:
    """What verify() calls `probe.probe(check)` on, through the reader's bounded pool."""

    def __init__(self, reader):
        self._reader = reader

    def probe(self, check):
        return self._reader.probe_bounded(check)


def _row(rule: Rule, obs, state: RuleState, baseline, seconds: float) -> dict:
    return {
        "rule": rule.name,
        "action": rule.action,
        "value": obs.value,
        "unit": rule.value_unit,
        "condition": rule.condition_text(baseline),
        "outcome": obs.outcome.value,
        "phase": state.phase.value,
        "detail": obs.detail,
        "labels": obs.labels,
        "baseline": baseline,
        "seconds": round(seconds, 4),
        "since": state.breach_since,
    }


def _pid() -> int:
    import os

    return os.getpid()


def build_watcher(config: WatcherConfig, notify: bool = True, telemetry: bool = False, clock=time.time) -> Watcher:
    """Wire a Watcher from its config: backend, signals, notifier, state store."""
    from watcher.backends import build_backend
    from watcher.signals import build_reader

    store = StateStore(config.state_dir, clock=clock)
    backend = build_backend(config.backend.type, config.backend.options) if config.backend else None
    notifier = None
    if notify and config.notify:
        from watcher.notify import Notifier

        notifier = Notifier(list(config.notify), journal=_quiet_journal(store), clock=clock)
    tele = None
    if telemetry:
        from watcher.telemetry import Telemetry

        tele = Telemetry(config.interval, clock=clock)
    return Watcher(config, backend, build_reader(config), notifier, store, clock=clock, sleep=_sleep_alive,
                   telemetry=tele)


def _sleep_alive(seconds: float) -> None:
    """Sleep between verify attempts, telling systemd's watchdog the service is alive: a
    rollback's verification (attempts x every, 60 s by default) runs inside one tick."""
    sd_notify("WATCHDOG=1")
    time.sleep(seconds)


def _quiet_journal(store: StateStore):
    """The notifier journals failed deliveries from its own thread: a journal that cannot be
    written there is logged, never raised into the delivery thread."""

    def journal(kind: str, **fields) -> None:
        try:
            store.journal(kind, **fields)
        except StateError as exc:
            log.error("journal write failed kind=%s reason=%s", kind, exc)

    return journal
