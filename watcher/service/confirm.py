"""After the switch: when a rollback counts as verified. rollback.execute (and reconcile) make
the switch and run the target's probes; what remains is here:

    start_confirmation   the probes pass: the rules that fired must now clear on the restored
                         release within `clear_bound` (the decider meanwhile does not act:
                         VerdictKind.CONFIRMING)
    confirm              each tick (the service's `confirm` step): verified once every fired
                         rule is clear; "probably not the cause", and a halt, once the bound
                         passes without that
    after_verified       back on a known-good release: fresh rule states, the incident
                         closed, old releases pruned, the message
    after_verify_failed  the probes failed: halted until a human runs `resolve`

A rollback made on another host's verdict alone (`fleet:RULE`) has no rule here to clear: its
probes verify it (local_findings).
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable, Sequence
from typing import Protocol

from watcher.backends.base import Backend
from watcher.base.format import format_duration
from watcher.config.schema import WatcherConfig
from watcher.core import messages
from watcher.core.fleetmodel import is_fleet_rule
from watcher.core.rules import Finding, HostCheck, Phase, PromQuery, finding
from watcher.core.rules import Outcome as Observed
from watcher.service import deploys
from watcher.service.recorder import Recorder
from watcher.store.state import State

log = logging.getLogger(__name__)


class Confirmer(Recorder, Protocol):
    """What the confirmation needs of the service (tick.Watcher): its state, config and
    backend, the steady clock, and the incident and the rollback counters it closes and counts."""

    state: State
    config: WatcherConfig
    backend: Backend | None
    clock: Callable[[], float]

    def close_incident(self, why: str, resolution: str) -> None: ...

    def count_rollback(self, result: str) -> None: ...


def local_findings(findings: Sequence[Finding]) -> list[Finding]:
    """The findings of this host's own rules: those can clear on the restored release. A fleet
    verdict (`fleet:RULE`) is another host's evidence, never re-evaluated here, so a rollback
    it triggered is verified by the target's probes alone."""
    return [f for f in findings if not is_fleet_rule(f.rule)]


def start_confirmation(w: Confirmer, from_id: str, to_id: str, findings: Sequence[Finding], now: float,
                       detail: str) -> None:
    """The switch is made and the target's probes pass; what remains of "verified" is that the
    rules that fired clear on it within `clear_within` (confirm, at the next ticks). Until then
    the decider acts not (VerdictKind.CONFIRMING): no rolling back further, no false page."""
    s = w.state
    rules = list(dict.fromkeys(f.rule for f in findings))
    # `[$window]` starts at the switch: the fired rules must clear on the target alone.
    deploys.restored(s, to_id, now)
    bound = clear_bound(w.config, rules)
    s.confirming = {"from": from_id, "to": to_id, "rules": rules, "switched_at": now,
                    "until": now + bound, "findings": [dataclasses.asdict(f) for f in findings]}
    w.journal("rollback_confirming", release=from_id, target=to_id, rules=rules, detail=detail,
              until=s.confirming["until"])
    w.timeline(f"switched to {to_id}, probes pass; waiting up to {bound:.0f}s for "
               f"{', '.join(rules)} to clear on it")
    log.info("rollback switched, confirming release=%s target=%s rules=%s", from_id, to_id, ",".join(rules))


_RANGE = re.compile(r"\[(\d+(?:ms|s|m|h|d|w)(?:\d+(?:ms|s|m|h|d|w))*)(?::[^\]]*)?\]")


def clear_bound(config, rules: Sequence[str]) -> float:
    """How long the fired rules get to clear: `verify.clear_within` when set; else the longest
    range any of them reads (a fixed `[5m]` holds the bad release's samples for five minutes,
    `[$window]` starts at the switch; a host counter's `window`), at least `max_window`, plus
    three intervals. A rule cannot be asked to clear before its range has slid past the bad
    release: that would call a good rollback "probably not the cause"."""
    from watcher.base.durations import parse_duration

    if config.verify.clear_within is not None:
        return config.verify.clear_within
    longest = config.max_window
    for rule in config.rules:
        if rule.name not in rules:
            continue
        if isinstance(rule.signal, PromQuery):
            for text in _RANGE.findall(rule.signal.query):
                longest = max(longest, parse_duration(text))
        elif isinstance(rule.signal, HostCheck):
            longest = max(longest, rule.signal.window)
    return longest + 3 * config.interval


def confirm(w: Confirmer, evaluation, now: float) -> None:
    """One tick of a confirmation: verified once every fired rule is clear on the restored
    release (a tick whose observation is not a breach: `ok`, or no data where the rule counts
    no data as ok); "probably not the cause" once `until` passes without that."""
    s = w.state
    c = s.confirming
    if c is None:
        return
    by_name = {e.rule.name: e for e in evaluation.rules}
    cleared = all(name in by_name and _clear(by_name[name]) for name in c["rules"])
    findings = [Finding(**f) for f in c.get("findings") or []]
    if cleared:
        s.confirming = None
        w.journal("rollback_verified", release=c["from"], target=c["to"], rules=c["rules"],
                  detail=f"{', '.join(c['rules'])} cleared on {c['to']}", seconds=round(now - c["switched_at"], 3))
        after_verified(w, c["from"], c["to"], now - c["switched_at"], findings)
    elif now >= c["until"]:
        s.confirming = None
        waited = now - c["switched_at"]
        still = [name for name in c["rules"] if not (name in by_name and _clear(by_name[name]))]
        s.halted = (f"rolled back {c['from']} -> {c['to']}, but {', '.join(still)} did not clear on {c['to']} "
                    f"within {waited:.0f}s: the release was probably not the cause")
        w.journal("rollback_not_cleared", release=c["from"], target=c["to"], rules=still, seconds=round(waited, 3))
        w.count_rollback("not_cleared")
        w.timeline(s.halted)
        log.error("rollback did not clear release=%s target=%s rules=%s", c["from"], c["to"], ",".join(still))
        w.notify(messages.rollback_not_cleared(w.ctx, c["from"], c["to"], still, waited))


def _clear(e) -> bool:
    """Whether a fired rule reads clear on the restored release (Observation.healthy: a NaN
    ratio, traffic stalled right after the switch, is not)."""
    obs = e.observation
    if e.rule.is_judge:
        # A judge counts from the switch: no request counted yet is no evidence that the
        # restored release is better (measured: a judge rule "cleared" on the first tick after
        # the switch, before a single request of the restored release), and a share that still
        # looks too high is not clear either.
        return obs.healthy and not obs.suspect
    return obs.healthy or (obs.outcome is Observed.NO_DATA and e.rule.no_data == "ok")


def after_verified(w: Confirmer, from_id: str, to_id: str, seconds: float,
                   findings: Sequence[Finding] | None = None, reason: str = "") -> None:
    s = w.state
    if findings is None:
        findings = [finding(r, s.rules[r.name], s.baselines.get(r.name)) for r in w.config.rules
                    if r.name in s.rules and s.rules[r.name].phase is Phase.FIRING]
    deploys.restored(s, to_id, w.clock())
    w.count_rollback("verified")
    w.timeline(f"rolled back to {to_id}, verified in {format_duration(seconds)}")
    w.close_incident(f"rolled back {from_id} -> {to_id}", resolution="rolled_back")
    deploys.prune(w.backend, s, {from_id, to_id}, w)
    log.info("rollback verified release=%s target=%s seconds=%.1f", from_id, to_id, seconds)
    w.notify(messages.rollback_verified(w.ctx, from_id, to_id, findings, seconds, reason))


def after_verify_failed(w: Confirmer, from_id: str, to_id: str, detail: str) -> None:
    s = w.state
    s.halted = f"rollback {from_id} -> {to_id} did not verify: {detail}"
    s.current = to_id
    w.count_rollback("not_verified")
    w.timeline(f"rollback did not verify: {detail}")
    log.error("rollback did not verify release=%s target=%s detail=%s", from_id, to_id, detail)
    w.notify(messages.verify_failed(w.ctx, from_id, to_id, detail))
