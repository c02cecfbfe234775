"""After the switch: when a rollback counts as verified. rollback.execute (and reconcile) make
the switch and run the target's probes; what remains is here:

    start_confirmation   the probes pass: the rules that fired must now clear on the restored
                         release within `clear_bound` (the decider meanwhile does not act:
                         VerdictKind.CONFIRMING)
    too_early            the restored release is judged on its own samples: `[$window]` runs
                         from the switch (evaluate.watch_window), and until `min_window` has
                         passed the `[$window]` rules are not read at all
    confirm              each tick (the service's `confirm` step): verified once every fired
                         rule reads healthy on the restored release. Once the bound passes
                         without that: a rule that breached on the restored release means the
                         release was probably not the cause (a halt); rules that only read
                         nothing (no request: NaN or no data; or no answer) leave the rollback
                         unconfirmed, which is said, and is no halt
    after_verified       back on a known-good release: fresh rule states, the incident
                         closed, old releases pruned, the message
    after_unconfirmed    the same, told as "rolled back, unconfirmed (no traffic)"
    after_verify_failed  the probes failed: halted until a human runs `resolve`

A rollback made on another host's verdict alone (`fleet:RULE`) has no rule here to clear: its
probes verify it (local_findings).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from watcher.backends.base import Backend
from watcher.base.format import format_duration
from watcher.config.schema import WatcherConfig
from watcher.core import evidence, messages
from watcher.core.evaluate import Evaluation, RuleEvaluation
from watcher.core.fleetmodel import is_fleet_rule
from watcher.core.rules import WINDOW_TOKEN, Finding, HostCheck, Phase, PromQuery, finding
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
    # `[$window]` starts at the switch: the fired rules must clear on the target alone. The
    # switch was made after the tick's reads (`now`), and its probes have passed: from this
    # moment on every sample is the restored release's.
    now = max(now, w.clock())
    deploys.restored(s, to_id, now)
    bound = clear_bound(w.config, rules)
    s.confirming = {"from": from_id, "to": to_id, "rules": rules, "switched_at": now,
                    "until": now + bound, "findings": [dataclasses.asdict(f) for f in findings]}
    w.journal("rollback_confirming", release=from_id, target=to_id, rules=rules, detail=detail,
              until=s.confirming["until"])
    w.timeline(f"switched to {to_id}, probes pass; waiting up to {bound:.0f}s for "
               f"{', '.join(rules)} to clear on it")
    log.info("rollback switched, confirming release=%s target=%s rules=%s", from_id, to_id, ",".join(rules))


def clear_bound(config: WatcherConfig, rules: Sequence[str]) -> float:
    """How long the fired rules get to clear: `verify.clear_within` when set; else the longest
    range any of them reads (a fixed `[5m]` holds the bad release's samples for five minutes,
    `[$window]` starts at the switch and is read from `min_window` on; a host counter's
    `window`), at least `max_window`, plus three intervals. A rule cannot be asked to clear
    before its range has slid past the bad release: that would call a good rollback "probably
    not the cause"."""

    if config.verify.clear_within is not None:
        return config.verify.clear_within
    longest = max(config.max_window, config.min_window)
    for rule in config.rules:
        if rule.name not in rules:
            continue
        if isinstance(rule.signal, PromQuery):
            longest = max([longest, *rule.signal.fixed_ranges()])
        elif isinstance(rule.signal, HostCheck):
            longest = max(longest, rule.signal.window)
    return longest + 3 * config.interval


def too_early(state: State, config: WatcherConfig, now: float) -> dict[str, str]:
    """The rules not read on this tick of a confirmation, with the reason: every `[$window]`
    rule until `min_window` has passed since the switch. Their range would be shorter than
    rate() needs, and clamping it up to `min_window` (as after a deploy) reads the bad
    release's last samples: the rule went pending at 40% on the restored known-good release."""
    c = state.confirming
    if c is None or now - c["switched_at"] >= config.min_window:
        return {}
    why = (f"not read until {format_duration(config.min_window)} after the switch (min_window): the restored "
           "release is judged on its own samples")
    return {r.name: why for r in config.rules if isinstance(r.signal, PromQuery) and WINDOW_TOKEN in r.signal.query}


def confirm(w: Confirmer, evaluation: Evaluation, now: float) -> None:
    """One tick of a confirmation: verified once every fired rule reads healthy on the restored
    release (rules.Observation.healthy, or no data while a query sees requests: `_clear`). When
    `until` passes without that: "probably not the cause" (a halt) if a fired rule breached on
    the restored release; else the rollback stays unconfirmed (nothing was seen of it), which
    is said and is not a halt (`_ending`)."""
    s = w.state
    c = s.confirming
    if c is None:
        return
    by_name = {e.rule.name: e for e in evaluation.rules}
    traffic = _sees_requests(evaluation.rules)
    breached = [name for name in c["rules"] if name in by_name and _breached(by_name[name])]
    if breached:
        c["breached"] = sorted(set(c.get("breached", [])) | set(breached))
    cleared = all(name in by_name and _clear(by_name[name], traffic) for name in c["rules"])
    findings = [Finding(**f) for f in c.get("findings") or []]
    if cleared:
        s.confirming = None
        w.journal("rollback_verified", release=c["from"], target=c["to"], rules=c["rules"],
                  detail=f"{', '.join(c['rules'])} cleared on {c['to']}", seconds=round(now - c["switched_at"], 3))
        after_verified(w, c["from"], c["to"], now - c["switched_at"], findings)
        return
    if now < c["until"]:
        return
    s.confirming = None
    waited = now - c["switched_at"]
    still = [name for name in c["rules"] if not (name in by_name and _clear(by_name[name], traffic))]
    not_cleared, why = _ending(still, by_name, c.get("breached", []))
    if not not_cleared:
        w.journal("rollback_unconfirmed", release=c["from"], target=c["to"], rules=still, reason=why,
                  seconds=round(waited, 3))
        after_unconfirmed(w, c["from"], c["to"], still, why, waited, findings)
        return
    s.halted = (f"rolled back {c['from']} -> {c['to']}, but {', '.join(not_cleared)} did not clear on {c['to']} "
                f"within {waited:.0f}s: the release was probably not the cause")
    w.journal("rollback_not_cleared", release=c["from"], target=c["to"], rules=not_cleared, seconds=round(waited, 3))
    w.count_rollback("not_cleared")
    w.timeline(s.halted)
    log.error("rollback did not clear release=%s target=%s rules=%s", c["from"], c["to"], ",".join(not_cleared))
    w.notify(messages.rollback_not_cleared(w.ctx, c["from"], c["to"], not_cleared, waited))


def _clear(e: RuleEvaluation, traffic: bool = False) -> bool:
    """Whether a fired rule reads clear on the restored release: a healthy reading
    (Observation.healthy: a real number, a probe that answered), or "no data" of a `no_data: ok`
    rule while a query of the table sees requests on the restored release (`traffic`): an
    absent error series under present traffic is zero errors. A NaN ratio (no request in its
    range), no data with no request seen, and a rule not read yet (too_early) are no evidence
    that the rule cleared."""
    obs = e.observation
    if e.held:
        return False
    if e.rule.is_judge:
        # A judge counts from the switch: no request counted yet is no evidence that the
        # restored release is better (measured: a judge rule "cleared" on the first tick after
        # the switch, before a single request of the restored release), and a share that still
        # looks too high is not clear either.
        return obs.healthy and not obs.suspect
    if obs.healthy:
        return True
    return traffic and obs.outcome is Observed.NO_DATA and e.rule.no_data == "ok"


def _sees_requests(evaluated: Iterable[RuleEvaluation]) -> bool:
    """Whether a Prometheus rule that needs requests (Rule.shows_serving) reads a real number on
    this tick: the restored release is serving requests (evidence.seen_serving)."""
    return any(e.rule.reads_prometheus and evidence.seen_serving(e) for e in evaluated)


def _breached(e: RuleEvaluation) -> bool:
    """This tick's reading of a fired rule is a breach on the restored release (the state
    machine counted it: `failures` grew; a held rule's state does not move)."""
    return e.after.failures > e.before.failures


def _ending(still: Sequence[str], by_name: dict[str, RuleEvaluation], breached: Sequence[str]) -> tuple[list[str], str]:
    """At the end of the bound: the rules that did not clear because they breached on the
    restored release (now, or earlier in the confirmation), and else why the others are
    silent ("no traffic", "no answer from Prometheus")."""
    not_cleared = [n for n in still if n in breached or (n in by_name and _breached(by_name[n]))]
    if not_cleared:
        return not_cleared, ""
    errors = [n for n in still if n in by_name and by_name[n].observation.outcome is Observed.ERROR]
    if errors and len(errors) == len(still):
        return [], "no answer from Prometheus"
    return [], "no traffic"


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


def after_unconfirmed(w: Confirmer, from_id: str, to_id: str, silent: Sequence[str], why: str, seconds: float,
                      findings: Sequence[Finding]) -> None:
    """The bound passed and the fired rules saw nothing of the restored release (`why`: no
    traffic, no answer from Prometheus): it is current and its probes passed, but whether the
    rules clear on it is unknown. That is no evidence against the rollback, so no halt: the
    watcher goes on watching (the restored release is known-good, so a rule that fires on it
    later is told, never rolled back further: decide.py's outside-window check)."""
    s = w.state
    deploys.restored(s, to_id, w.clock())
    w.count_rollback("unconfirmed")
    w.timeline(f"rolled back to {to_id}; unconfirmed after {format_duration(seconds)}: {', '.join(silent)} "
               f"saw nothing of it ({why})")
    w.close_incident(f"rolled back {from_id} -> {to_id}, unconfirmed ({why})", resolution="rolled_back_unconfirmed")
    deploys.prune(w.backend, s, {from_id, to_id}, w)
    log.warning("rollback unconfirmed release=%s target=%s rules=%s reason=%s", from_id, to_id, ",".join(silent), why)
    w.notify(messages.rollback_unconfirmed(w.ctx, from_id, to_id, silent, why, seconds, findings), findings)


def after_verify_failed(w: Confirmer, from_id: str, to_id: str, detail: str) -> None:
    s = w.state
    s.halted = f"rollback {from_id} -> {to_id} did not verify: {detail}"
    s.current = to_id
    # The switch was made: the window, deploy time and `[$window]` start are a rollback's
    # switch's (deploys.restored), not those of the release that left. Kept, its window stayed
    # open on the restored known-good release: its end judged it again ("passed", or "not seen
    # serving" said), `status` called it in its window, its `[$window]` read the bad release's
    # samples (sim seed 2000354). The rule states stay: the halt stands on what they saw, and
    # the incident stays open while they fire on the restored release.
    s.deployed_at, s.window_ends, s.changed_at = None, None, w.clock()
    # The watcher made this change and knows its moment: an instant query on the restored
    # release is not held as after a deploy seen late (deploys.restored does the same).
    s.deploy_seen_late = False
    w.count_rollback("not_verified")
    w.timeline(f"rollback did not verify: {detail}")
    log.error("rollback did not verify release=%s target=%s detail=%s", from_id, to_id, detail)
    w.notify(messages.verify_failed(w.ctx, from_id, to_id, detail))
