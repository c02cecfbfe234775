"""What a tick records of the current release's watch: the rules' transitions, the watch
window's evidence, its clock, its end. The service's `evaluate` (after evaluate.py), `lock
wait` and `window` steps (watcher/service/tick.py), and the clock check at the start of a tick:

    record           keep the new rule states; journal each transition, tell phase changes;
                     count the tick for the window's evidence: was the release seen serving
                     (evidence.py); tell going blind and recovering once per episode
    hold_for_lock    while a deploy holds the deploy lock and a rollback rule fires, the
                     window's clock stops, so the lock cannot outlive the window and leave a
                     bad release live; a wait longer than `lock_timeout` is said once
    hold_for_retry   the same for the decider's wait on the backend (a failed read, tried
                     again next tick)
    lock_settling    the lock counts as held until Prometheus has scraped the host once more
                     after it is let go (its newest sample is then no longer the deploy's)
    discard_deploy_evidence
                     once the lock is let go, what the rollback rules saw while a deploy
                     held it (its restart's closed port, its errors) counts for nothing
    assess           at its end, a release with no rollback rule firing, seen serving enough, is
                     known-good; one not seen serving is said (naming the silent rules), one
                     with a rule firing is not
                     marked (the decider handles it); a rule pending (or firing first on this
                     tick) holds the end until it is decided
    check_clock      a wall-clock step larger than one interval is journaled and said once
                     (durations run on steady time, clock.Timebase, and are not affected)

Journal lines and messages go through the Recorder (recorder.Recorder, the Watcher).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from watcher.base.clock import Timebase
from watcher.config.schema import WatcherConfig
from watcher.core import evidence, messages
from watcher.core.evaluate import Evaluation, blindness
from watcher.core.model import Mark, TransitionKind
from watcher.core.rules import Finding, Phase, Rule, RuleState, Transition, finding, inactive
from watcher.service.recorder import Recorder
from watcher.service.telemetry import Telemetry
from watcher.store.locks import DeployLock
from watcher.store.state import State

log = logging.getLogger(__name__)


def record(evaluation: Evaluation, state: State, now: float, notify_pending: bool, out: Recorder,
           blind_episode: frozenset[str], telemetry: Telemetry | None = None, interval: float = 0.0) -> frozenset[str]:
    """Keep the tick's new rule states and journal every transition; a phase change goes into
    the incident's timeline and is told; the tick counts for the window's evidence. Going
    blind, and recovering, is told once per episode (evaluate.blindness), however the rules
    stagger: returns the rules blind so far in the episode still open, for the next tick."""
    for e in evaluation.rules:
        state.rules[e.rule.name] = e.after
        for t in e.transitions:
            _on_transition(e.rule, t, e.after, e.baseline, state.current, notify_pending, out)
        if telemetry is not None:
            telemetry.rule_evaluated(e)
    if state.current is not None and state.in_watch_window(now):
        evidence.count_tick(state.release(state.current, now), evaluation.rules, now, interval)
    # Each rule's blind/recovered is journaled above; people hear once per episode.
    sight = blindness(evaluation, blind_episode)
    if sight.started:
        out.notify(messages.blind(out.ctx, sight.started, state.rules[sight.started[0]].last_detail))
    if sight.ended:
        out.notify(messages.recovered(out.ctx, sight.ended))
    return sight.episode


def _on_transition(rule: Rule, t: Transition, after: RuleState, baseline: float | None, current: str | None,
                   notify_pending: bool, out: Recorder) -> None:
    # `at` is the tick's moment in the watcher's steady time (`time` is when the line was
    # written, after the tick's reads): `for` is measured between two `at`s of one process.
    out.journal("rule", rule=rule.name, transition=t.kind, before=t.before.value, after=t.after.value,
                reason=t.reason, value=after.last_value, labels=after.last_labels, release=current,
                at=round(t.at, 3))
    # A blind rule and a firing one are what `journalctl -p warning` must show.
    level = logging.WARNING if t.kind is TransitionKind.BLIND or t.after.value == "firing" else logging.INFO
    log.log(level, "rule %s rule=%s %s->%s reason=%s", t.kind, rule.name, t.before.value, t.after.value, t.reason)
    if t.kind is not TransitionKind.PHASE:
        return
    out.timeline(f"{rule.name} {t.after.value}: {t.reason}")
    f = finding(rule, after, baseline)
    out.notify(messages.for_phase_change(out.ctx, f, t.after.value, current or "?", notify_pending), [f])


def hold_for_lock(state: State, now: float, firing: Sequence[Finding], lock: DeployLock, lock_held: bool,
                  lock_timeout: float, out: Recorder, interval: float = 1.0) -> None:
    """While a deploy holds the deploy lock and a rollback rule fires, the watch window's
    clock stops (it is extended by the wait), so the lock cannot outlive the window and
    leave a bad release live; a wait longer than `lock_timeout` is said once."""
    s = state
    rolling = [f for f in firing if f.action == "rollback"]
    # While waiting, the window's end moves by the time since the last tick, before it is
    # compared: a window that "ended" during the wait has not. A rule that fired first on this
    # very tick counts as inside the window even when its end was held for it one interval at a
    # time (assess) and this tick came late.
    held_for = now - s.lock_wait["last"] if s.lock_wait is not None else 0.0
    fresh = any(_fired_now(s.rules.get(f.rule), now) for f in rolling)
    in_window = s.window_ends is not None and (now < s.window_ends + held_for or fresh)
    waiting = bool(rolling) and in_window and lock_held
    if not waiting:
        if s.lock_wait is not None:
            if s.window_ends is not None:
                # Held until now too; and the tick that finds the lock free is inside the window,
                # however late it came, so that the decider acts on it now.
                _end_window_at(s, max(s.window_ends + held_for, now + max(interval, 1.0)))
            ended = "backend_wait_ended" if s.lock_wait.get("for") == "backend" else "lock_wait_ended"
            out.journal(ended, release=s.current, seconds=round(now - s.lock_wait["since"], 3))
            s.lock_wait = None
        return
    if s.window_ends is None:  # never: waiting needs in_window, which needs an end
        return
    if s.lock_wait is None:
        s.lock_wait = {"since": now, "last": now, "notified": False}
        # At least one interval of window left while it waits: the next tick, however late,
        # still finds the window open (the wait then moves its end by the time that passed).
        _end_window_at(s, max(s.window_ends, now + max(interval, 1.0)))
        out.journal("lock_wait", release=s.current, lock=str(lock.path), rules=[f.rule for f in rolling])
    else:
        _end_window_at(s, s.window_ends + held_for)
        s.lock_wait["last"] = now
    waited = now - s.lock_wait["since"]
    if not s.lock_wait["notified"] and waited >= lock_timeout:
        s.lock_wait["notified"] = True
        out.journal("lock_wait_long", release=s.current, seconds=round(waited, 3), lock=str(lock.path))
        log.error("a deploy has held the deploy lock while a rollback rule fires seconds=%.0f", waited)
        out.notify(messages.lock_wait_long(out.ctx, s.current or "?", str(lock.path), waited, rolling), rolling)


def hold_for_retry(state: State, now: float, firing: Sequence[Finding], interval: float, out: Recorder) -> None:
    """The decider waits for the backend (a read that failed is tried again next tick) while a
    rollback rule fires inside the window: the window's clock stops until that tick, as for the
    deploy lock (the wait is recorded as `lock_wait` with "for": "backend"; hold_for_lock, at
    the next tick, ends it and moves the window's end by the time it took). A failed read on
    the window's last tick must not make a bad deploy one "outside the window"."""
    s = state
    if s.window_ends is None or s.lock_wait is not None:
        return  # no window, or a wait for the lock already holds it
    s.lock_wait = {"since": now, "last": now, "notified": True, "for": "backend"}
    _end_window_at(s, max(s.window_ends, now + max(interval, 1.0)))
    out.journal("backend_wait", release=s.current, rules=[f.rule for f in firing if f.action == "rollback"])


def lock_settling(state: State, now: float, held: bool, settle: float) -> bool:
    """Whether the deploy lock counts as held: held now, or let go less than `settle` seconds
    ago (the service passes the scrape interval when a rollback rule reads Prometheus, else 0).
    What Prometheus holds lags what the host does: for a scrape interval after the lock is let
    go, its newest sample can be one taken during the restart (`up` 0, the port closed). Judged
    at the first tick after the lock, a `for: 0` rule rolled back a healthy release for its
    deploy's restart."""
    if held:
        state.lock_let_go_at = None
        return True
    if not state.lock_seen:
        return False
    if state.lock_let_go_at is None:
        state.lock_let_go_at = now
    if now - state.lock_let_go_at < settle:
        return True
    state.lock_let_go_at = None
    return False


def discard_deploy_evidence(state: State, config: WatcherConfig, out: Recorder) -> None:
    """The deploy lock was let go since the last tick: what the rollback rules saw while a
    deploy held it (the closed port of its restart, a burst of errors while it swapped) is the
    deploy at work, not the release. Their pending, firing and failures-in-a-row start again
    from the next reads; errors and blindness stay (they are about the watcher's sources). A
    rollback being confirmed is left alone: its rules are judged on the restored release."""
    s = state
    if s.confirming is not None:
        return
    discarded = []
    for rule in config.rules:
        rs = s.rules.get(rule.name)
        if rule.action != "rollback" or rs is None or inactive(rs) == rs:
            continue
        s.rules[rule.name] = inactive(rs)
        discarded.append(rule.name)
    if discarded:
        out.journal("deploy_evidence_discarded", release=s.current, rules=discarded,
                    reason="seen while a deploy held the deploy lock")
        log.info("deploy lock let go: evidence seen while it was held is discarded rules=%s", ",".join(discarded))


def assess(state: State, now: float, firing: Sequence[Finding], config: WatcherConfig, out: Recorder,
           on_good: Callable[[str, float], None]) -> None:
    """At the end of its watch window a release with no rollback rule firing, and with the
    evidence `config.evidence` asks for, is known-good; `on_good` gets it (the fleet's mark,
    pruning old releases)."""
    s = state
    if s.window_ends is None or now < s.window_ends or s.current is None:
        return None
    rec = s.release(s.current, now)
    undecided = _undecided(s, config, now)
    if undecided:
        # Blessing a release while a rollback rule is pending on it (or has failed once or twice
        # of its `failures`) would make its firing a few seconds later "outside the window": a
        # bad deploy never rolled back. The window is held one interval at a time until each
        # such rule fires (the decider acts on this tick) or clears. A pending rule only lasts its `for`, unless its signal fails (a blind rule
        # holds its state): then the window waits for it to see again, never blessing blind.
        _end_window_at(s, now + max(config.interval, 1.0))
        if not rec.window_extended:
            rec.window_extended = True
            out.journal("window_extended", release=s.current, rules=undecided,
                        reason=f"{', '.join(undecided)} pending or failing at the end of the window: held "
                               "until decided")
            log.info("watch window held release=%s rules=%s", s.current, ",".join(undecided))
        return None
    rolling = [f.rule for f in firing if f.action == "rollback"]
    window_s = now - rec.deployed_at if rec.deployed_at is not None else None
    short = evidence.shortfall(rec, config.rules, config.evidence, window_s)
    if rolling:
        out.journal("window_ended", release=s.current, marked=False,
                    reason=f"{', '.join(rolling)} firing at the end of the window: not marked known-good")
    elif short is not None and rec.mark != Mark.BAD:
        out.journal("window_ended", release=s.current, marked=False, reason=f"{short}: not marked known-good",
                    watched_ticks=rec.watched_ticks, evidence_ticks=rec.evidence_ticks, firing_ticks=rec.firing_ticks,
                    serving_ticks=dict(rec.serving_ticks))
        out.notify(messages.window_without_evidence(out.ctx, s.current, short.reason()))
    elif rec.mark != Mark.BAD:
        rec.mark, rec.marked_at, rec.reason = Mark.GOOD.value, now, "survived its watch window"
        out.journal("window_passed", release=s.current)
        out.notify(messages.window_passed(out.ctx, s.current))
        on_good(s.current, now)
    s.window_ends = None


def _end_window_at(state: State, end: float) -> None:
    """Move the current release's window end: the state's and its record's (status and the
    release list show the record's) move together."""
    state.window_ends = end
    if state.current in state.releases:
        state.releases[state.current].window_ends = end


def _fired_now(rs: RuleState | None, now: float) -> bool:
    """A rule that fired on this very tick: the decider, later in it, has yet to act on it."""
    return rs is not None and rs.phase is Phase.FIRING and rs.fired_at == now


def _undecided(state: State, config: WatcherConfig, now: float) -> list[str]:
    """The rollback rules pending on the current release, counting failures in a row towards
    their `failures` (a probe's "inactive" with 1 of 3 is on its way to firing as much as a
    pending rule is), or that fired on this very tick (the decider, after this step, must still
    see the window open to act on them)."""
    out = []
    for rule in config.rules:
        rs = state.rules.get(rule.name)
        if rule.action != "rollback" or rs is None:
            continue
        if rs.phase is Phase.PENDING or _fired_now(rs, now) or (rs.phase is Phase.INACTIVE and rs.failures > 0):
            out.append(rule.name)
    return out


def check_clock(timebase: Timebase, interval: float, out: Recorder) -> None:
    """A wall-clock step larger than one interval is journaled and said once; durations
    are not affected (they run on steady time)."""
    moved = timebase.step(max(interval, 1.0))
    if moved is None:
        return
    log.warning("the wall clock stepped seconds=%.1f", moved.seconds)
    out.journal("clock_step", seconds=round(moved.seconds, 3), wall=moved.wall, steady=moved.steady)
    out.notify(messages.clock_stepped(out.ctx, moved.seconds))
