"""Every message the watcher sends, in one place (docs/design.md section 7). Pure: no I/O, no clock.

One function per event returns a `Message`: a one-line title `[SERVICE@HOST] what happened`
(at most TITLE_MAX characters; long names are shortened in the middle, the body keeps them
whole) and a plain-text body for a phone at 3 a.m.:

    what happened, in one sentence
    Why:  (the rules, each `- rule: value against threshold, since UTC time (for 2m10s)`)
    Next: the one command a human should run next

Severities (and so ntfy priorities) are fixed per event, see each function.

Numbers are written by watcher/base/format.py in the unit the rule declares (`Finding.unit`):
the value and the condition alike ("40.29% against > 10% for 2m"), and the value the rule had
when it first breached where it differs ("; 27% at the breach"). The payload carries the raw
numbers beside the same text.

"since ... (for 2m10s)" needs the time of the message: pass it as `MessageContext.now`
(`ctx.at(now)`); without it only the UTC time is shown.

What is news is decided once, by the service: it sends a message on a state change (a rule's
transition, an incident's new verdict, a rollback's outcome), and the notifier delivers every
message it is given.

Length: over 400 lines because it holds one template per event the watcher tells about (about
twenty), on purpose in one file so that their wording stays consistent.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from watcher.base.format import (
    format_condition,
    format_duration,
    format_labels,
    format_time,
    format_value,
    shorten,
    untrusted,
)
from watcher.core.envelope import Message, MessageContext, Severity
from watcher.core.model import Action, VerdictKind
from watcher.core.rules import Finding

if TYPE_CHECKING:
    # Only the annotation: `check` imports this module and never decide's.
    from watcher.core.decide import Verdict

TITLE_MAX = 80
FINDINGS_SHOWN = 5  # more than this many rules are summarised as "... and N more"
_SERVICE_MAX = 14  # in the title prefix
_HOST_MAX = 12  # the host's first DNS label, in the title prefix
_FIELD_MIN = 6  # a release id or rule name is never shortened below this in a title
CLI = "rollback-watcher"


def _finding_facts(findings: Sequence[Finding]) -> dict[str, Any]:
    """The first finding as data: raw numbers, and the same text the body shows."""
    if not findings:
        return {}
    f = findings[0]
    return {"rule": f.rule, "value": f.value, "unit": f.unit or None, "threshold": f.threshold or f.condition,
            "value_text": None if f.value is None else format_value(f.value, f.unit),
            "threshold_text": format_condition(f.condition, f.unit) or None,
            "breach_value": f.breach_value,
            "breach_value_text": None if f.breach_value is None else format_value(f.breach_value, f.unit),
            "evidence": dict(f.evidence) if f.evidence else None}


# --- formatting helpers (pure, also used by tests) -----------------------------------------


def fmt_finding(finding: Finding, now: float | None = None) -> str:
    """One line: `rule: value against threshold {labels}, since T (for D); V at the breach;
    detail`. A judge rule's line is its evidence: `rule: share 29% (99.9% confidence 24-35%)
    against 10%, after 212 requests, since T (for D)`."""
    if finding.evidence and finding.detail:
        return _since(f"{finding.rule}: {finding.detail}", finding, now)
    line = f"{finding.rule}: {finding.reading()}"
    labels = format_labels(finding.labels)
    if labels:
        line += f" {labels}"
    line = _since(line, finding, now)
    at_breach = format_value(finding.breach_value, finding.unit) if finding.breach_value is not None else None
    if at_breach is not None and finding.value is not None and at_breach != format_value(finding.value, finding.unit):
        line += f"; {at_breach} at the breach"
    if finding.detail:
        line += f"; {finding.detail}"
    return line


def _since(line: str, finding: Finding, now: float | None) -> str:
    if finding.since is not None:
        line += f", since {format_time(finding.since)}"
        if now is not None:
            line += f" (for {format_duration(now - finding.since)})"
    return line


def fmt_findings(findings: Sequence[Finding], now: float | None = None, reason: str = "") -> str:
    """"Why:" and one line per rule, at most FINDINGS_SHOWN, then "... and N more"; with no
    rule behind it (a human's rollback), the reason given."""
    findings = list(findings)
    if not findings:
        return f"Why: {reason}" if reason else ""
    lines = ["Why:"]
    lines += [f"- {fmt_finding(f, now)}" for f in findings[:FINDINGS_SHOWN]]
    if len(findings) > FINDINGS_SHOWN:
        rest = findings[FINDINGS_SHOWN:]
        names = ", ".join(f.rule for f in rest)
        lines.append(f"- ... and {len(rest)} more: {shorten(names, 120)}")
    return "\n".join(lines)


def _rules_title(names: Sequence[str]) -> str:
    """"http-5xx-ratio" or "http-5xx-ratio +2" for a title."""
    names = list(dict.fromkeys(names))
    if not names:
        return "a rule"
    return names[0] if len(names) == 1 else f"{names[0]} +{len(names) - 1}"


def _short_host(host: str) -> str:
    """web-1.eu-west-1.example.com -> web-1 (an IP address stays whole)."""
    if re.fullmatch(r"[\d.]+|[\da-fA-F:]+", host or ""):
        return host
    return (host or "?").split(".")[0]


def _title(ctx: MessageContext, template: str, **fields: str) -> str:
    """`[service@host] ` + the template with its fields (release ids, rule names) shortened in
    the middle just enough to fit TITLE_MAX; the fixed words stay whole."""
    prefix = f"[{shorten(ctx.service, _SERVICE_MAX)}@{shorten(_short_host(ctx.host), _HOST_MAX)}] "
    room = TITLE_MAX - len(prefix)
    values = {k: " ".join(str(v).split()) for k, v in fields.items()}
    left = room - len(template.format(**{k: "" for k in fields}))
    pending = len(values)
    for key in sorted(values, key=lambda k: len(values[k])):  # short ones give room to long
        values[key] = shorten(values[key], max(_FIELD_MIN, left // pending))
        left -= len(values[key])
        pending -= 1
    what = template.format(**values)
    return prefix + (what if len(what) <= room else what[: room - 1] + "…")


def _body(*parts: str) -> str:
    return "\n".join(p for p in parts if p)


def _next(command: str, then: str = "") -> str:
    text = f"Next: {command}"
    return f"{text}\nThen: {then}" if then else text


def for_verdict(ctx: MessageContext, verdict: Verdict) -> Message | None:
    """The message for a decider verdict (decide.Verdict) that is news for its incident: a
    would-roll-back, a fired-outside-window or a cannot-act; None when it says nothing."""
    findings, release = list(verdict.findings), verdict.current or "?"
    if verdict.action == Action.NOTIFY and verdict.kind == VerdictKind.FLEET_SYMPTOM:
        return fleet_symptom(ctx, release, verdict.reason, findings)
    if verdict.action == Action.NOTIFY and verdict.kind == VerdictKind.OUTSIDE_WINDOW:
        return fired_outside_window(ctx, release, findings)
    if verdict.action == Action.NOTIFY:
        return would_roll_back(ctx, release, verdict.target, findings, verdict.reason)
    if verdict.action == Action.REFUSE:
        return cannot_act(ctx, release, verdict.reason, findings, verdict.target)
    return None


def for_phase_change(ctx: MessageContext, finding: Finding, after: str, release: str, notify_pending: bool) -> Message | None:
    """The message for a rule entering phase `after`: a `notify` rule firing, or (when asked
    for with `notify_pending`) a rollback rule pending; None otherwise."""
    if finding.action == "notify" and after == "firing":
        return notify_only(ctx, finding, release)
    if finding.action == "rollback" and after == "pending" and notify_pending:
        return rule_pending(ctx, finding, release)
    return None


def _names(findings: Iterable[Finding]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(f.rule for f in findings))


# --- one function per event ----------------------------------------------------------------


def deploy_seen(ctx: MessageContext, release: str, window_s: float, target: str | None = None,
                no_target: str = "") -> Message:
    """INFO: a new release is current; its watch window starts. It names the release a rollback
    would go to (`target`, as the decider would choose it now), or says why there is none
    (`no_target`: a first start with nothing known-good, a barrier...) and that a human is
    called instead of a rollback."""
    if target:
        then = f"A firing rollback rule in that window rolls back to {target}, the newest known-good release before it."
    else:
        why = f": {no_target}." if no_target else "."
        then = (f"No rollback target{why} A firing rollback rule in that window calls a human instead "
                f"(`{CLI} mark good ID` names a target).")
    return Message(
        kind="deploy_seen",
        severity=Severity.INFO,
        title=_title(ctx, "deployed {r}, watching " + format_duration(window_s), r=release),
        body=_body(
            f"Release {release} is now current on {ctx.host}.",
            f"Watching it for {format_duration(window_s)}"
            + (f", until {format_time(ctx.now + window_s)}." if ctx.now is not None else "."),
            then,
            _next(f"nothing to do; {CLI} status shows the window"),
        ),
        release=release,
        facts={"action": "deploy", "target": target},
    )


def window_passed(ctx: MessageContext, release: str) -> Message:
    """INFO: the window passed with no firing rule; the release is known-good."""
    return Message(
        kind="window_passed",
        severity=Severity.INFO,
        title=_title(ctx, "{r} is known-good (window passed)", r=release),
        body=_body(
            f"Release {release} passed its watch window with no firing rollback rule.",
            "It is now known-good: a rollback target for later releases.",
            _next(f"nothing to do; {CLI} releases lists the marks"),
        ),
        release=release,
        facts={"action": "marked_good"},
    )


def rule_pending(ctx: MessageContext, finding: Finding, release: str) -> Message:
    """WARNING (off by default): a rollback rule's condition holds; it fires after its `for`."""
    return Message(
        kind="rule_pending",
        severity=Severity.WARNING,
        title=_title(ctx, "{rule} pending on {r}", rule=finding.rule, r=release),
        body=_body(
            f"Rule {finding.rule} is pending on release {release}: if it holds for its `for` "
            "duration, the watcher rolls back.",
            fmt_findings([finding], ctx.now),
            _next(f"{CLI} explain {finding.rule}", f"{CLI} pause --for 1h to hold off a rollback"),
        ),
        release=release,
        rules=(finding.rule,),
        facts={**_finding_facts([finding]), "action": "none"},
    )


def rolling_back(ctx: MessageContext, from_id: str, to_id: str, findings: Sequence[Finding],
                 reason: str = "", manual: bool = False, target_is: str = "the newest known-good release") -> Message:
    """WARNING: the backend is switching: the decider acts, or a human asked (`manual`, with
    their `reason`). `target_is` says what the target is: the newest known-good release for the
    decider; for a human's `--to`, whether it is known-good at all."""
    who = f"By hand ({reason})" if manual and reason else ("By hand" if manual else "")
    return Message(
        kind="rolling_back",
        severity=Severity.WARNING,
        title=_title(ctx, ("rolling back {a} → {b} by hand" if manual else "rolling back {a} → {b}"), a=from_id, b=to_id),
        body=_body(
            (f"{who}: rolling back" if who else "Rolling back") + f" {from_id} → {to_id} ({target_is}); "
            f"{from_id} is marked bad.",
            fmt_findings(findings, ctx.now, "" if manual else reason),
            _next(f"{CLI} status (a message follows when the rollback is verified)"),
        ),
        release=from_id,
        rules=_names(findings),
        facts={**_finding_facts(findings), "target": to_id, "action": "rollback"},
    )


def rollback_verified(
    ctx: MessageContext, from_id: str, to_id: str, findings: Sequence[Finding], seconds: float, reason: str = ""
) -> Message:
    """SUCCESS: switched and verified healthy."""
    return Message(
        kind="rollback_verified",
        severity=Severity.SUCCESS,
        title=_title(ctx, "rolled back {a} → {b} in " + format_duration(seconds), a=from_id, b=to_id),
        body=_body(
            f"Rolled back {from_id} → {to_id} and verified healthy; the rollback took "
            f"{format_duration(seconds)}.",
            f"{from_id} is marked bad and will not be a rollback target; fix it before "
            "deploying again.",
            fmt_findings(findings, ctx.now, reason),
            _next(f"{CLI} history (the incident's timeline)"),
        ),
        release=from_id,
        rules=_names(findings),
        facts={**_finding_facts(findings), "target": to_id, "action": "rolled_back"},
    )


def rollback_unconfirmed(ctx: MessageContext, from_id: str, to_id: str, silent: Sequence[str], why: str,
                         seconds: float, findings: Sequence[Finding]) -> Message:
    """WARNING: switched, the target's probes pass, but the rules that fired saw nothing of it
    (no request reached it, or Prometheus did not answer): not verified, not a halt."""
    names = ", ".join(silent)
    return Message(
        kind="rollback_unconfirmed",
        severity=Severity.WARNING,
        title=_title(ctx, "rolled back {a} → {b}, unconfirmed ({why})", a=from_id, b=to_id, why=why),
        body=_body(
            f"Rolled back {from_id} → {to_id}: {to_id} is current and answers its probes, but within "
            f"{format_duration(seconds)} {names} saw nothing of it ({why}), so whether the problem is gone is "
            "unconfirmed.",
            f"{from_id} is marked bad. The watcher goes on watching, and does not roll back further: if "
            f"{names} fire on {to_id} once it serves, the release was probably not the cause, and it says so.",
            fmt_findings(findings, ctx.now),
            _next(f"{CLI} eval once {to_id} serves requests", f"{CLI} history (the incident's timeline)"),
        ),
        release=from_id,
        rules=tuple(silent),
        facts={**_finding_facts(findings), "target": to_id, "action": "rolled_back_unconfirmed"},
    )


def rollback_failed(ctx: MessageContext, from_id: str, to_id: str, reason: str) -> Message:
    """CRITICAL: the backend could not switch."""
    return Message(
        kind="rollback_failed",
        severity=Severity.CRITICAL,
        title=_title(ctx, "NEEDS HUMAN: rollback {a} → {b} failed", a=from_id, b=to_id),
        body=_body(
            f"The rollback {from_id} → {to_id} failed: {reason}",
            f"The host may still run {from_id}, the release that fired. The watcher does not "
            f"act again until a human runs `{CLI} resolve`.",
            _next(f"{CLI} status", f"fix by hand, then {CLI} resolve"),
        ),
        release=from_id,
        facts={"target": to_id, "action": "needs_human"},
    )


def verify_failed(ctx: MessageContext, from_id: str, to_id: str, reason: str) -> Message:
    """CRITICAL: switched, but the verification probes failed."""
    return Message(
        kind="verify_failed",
        severity=Severity.CRITICAL,
        title=_title(ctx, "NEEDS HUMAN: {a} → {b} did not verify", a=from_id, b=to_id),
        body=_body(
            f"Switched {from_id} → {to_id}, but {to_id} did not verify: {reason}",
            f"The watcher stops acting until a human runs `{CLI} resolve`.",
            _next(f"{CLI} status", f"fix by hand, then {CLI} resolve"),
        ),
        release=from_id,
        facts={"target": to_id, "action": "needs_human"},
    )


def deploy_landed(ctx: MessageContext, from_id: str, to_id: str, current: str) -> Message:
    """WARNING: a rollback of `from_id` was decided, but under the deploy lock `current` is
    another release: a deploy landed in between. Nothing was switched; the new release is
    watched as a deploy."""
    return Message(
        kind="deploy_landed",
        severity=Severity.WARNING,
        title=_title(ctx, "rollback of {r} not made: {c} was deployed", r=from_id, c=current),
        body=_body(
            f"A rollback {from_id} -> {to_id} was decided, but when the watcher took the deploy lock "
            f"{current} was current: a deploy landed in between. Nothing was switched; {current} is "
            "watched as a new deploy.",
            _next(f"{CLI} status"),
        ),
        release=from_id,
        facts={"target": to_id, "action": "none"},
    )


def rollback_superseded(ctx: MessageContext, from_id: str, to_id: str, deployed: str) -> Message:
    """WARNING: the rollback switched to `to_id`, then a deploy of `deployed` landed while it
    was verified: the deploy wins; the new release is watched as a deploy."""
    return Message(
        kind="rollback_superseded",
        severity=Severity.WARNING,
        title=_title(ctx, "rollback {a} → {b} superseded: {c} was deployed", a=from_id, b=to_id, c=deployed),
        body=_body(
            f"The watcher switched {from_id} -> {to_id}; while it verified {to_id}, {deployed} was deployed. "
            f"The deploy wins: {to_id} was not verified, nothing is halted, and {deployed} is watched as a "
            "new deploy.",
            _next(f"{CLI} status"),
        ),
        release=from_id,
        facts={"target": to_id, "action": "none"},
    )


def cannot_act(ctx: MessageContext, release: str, reason: str, findings: Sequence[Finding],
               candidate: str | None = None) -> Message:
    """CRITICAL: a rollback rule fired but the policy forbids acting (no target, barrier,
    limit reached, cooldown). `reason` is the decider's own words."""
    return Message(
        kind="cannot_act",
        severity=Severity.CRITICAL,
        title=_title(ctx, "NEEDS HUMAN: cannot roll back {r}", r=release),
        body=_body(
            f"A rollback rule fired on release {release}, but the watcher will not roll back: "
            f"{reason}",
            fmt_findings(findings, ctx.now),
            _next(f"{CLI} status",
                  f"{CLI} rollback --to {candidate} if you decide to roll back to it" if candidate else
                  f"{CLI} releases to pick a release, then {CLI} rollback --to ID if you decide to roll back"),
        ),
        release=release,
        rules=_names(findings),
        facts={**_finding_facts(findings), "target": candidate, "action": "needs_human"},
    )


def fired_outside_window(ctx: MessageContext, release: str, findings: Sequence[Finding]) -> Message:
    """FAILURE: a rollback rule fired, but the release is past its window (or known-good)."""
    names = _names(findings)
    return Message(
        kind="fired_outside_window",
        severity=Severity.FAILURE,
        title=_title(ctx, "{rules} firing on {r} (outside window)", rules=_rules_title(names), r=release),
        body=_body(
            f"Release {release} is outside its watch window, so the deploy is probably not the "
            "cause: no automatic rollback.",
            fmt_findings(findings, ctx.now),
            _next(f"{CLI} explain {names[0] if names else 'RULE'}"),
        ),
        release=release,
        rules=names,
        facts={**_finding_facts(findings), "action": "none"},
    )


def would_roll_back(
    ctx: MessageContext,
    from_id: str,
    to_id: str | None,
    findings: Sequence[Finding],
    why: str,
) -> Message:
    """WARNING: shadow mode or paused: the decision, without the action."""
    if to_id:
        title = _title(ctx, "would roll back {a} → {b} ({why})", a=from_id, b=to_id, why=why)
        first = f"Would roll back {from_id} → {to_id}, but did not: {why}."
        command = _next(f"{CLI} rollback --to {to_id}", "only if you agree")
    else:
        title = _title(ctx, "would roll back {a}, no target ({why})", a=from_id, why=why)
        first = f"Would roll back {from_id}, but did not: {why}; and no known-good target exists."
        command = _next(f"{CLI} status")
    return Message(
        kind="would_roll_back",
        severity=Severity.WARNING,
        title=title,
        body=_body(first, fmt_findings(findings, ctx.now), command),
        release=from_id,
        rules=_names(findings),
        facts={**_finding_facts(findings), "target": to_id, "action": "none"},
    )


def window_without_evidence(ctx: MessageContext, release: str, why: str) -> Message:
    """WARNING: the window passed with no firing rollback rule, but the release was not seen
    serving enough to call it good (core/evidence.py); `why` names the silent rules."""
    return Message(
        kind="window_without_evidence",
        severity=Severity.WARNING,
        title=_title(ctx, "{r} is NOT known-good: not seen serving", r=release),
        body=_body(
            f"Release {release} passed its watch window with no firing rollback rule, but {why}.",
            "Silence is no evidence either way: it is not rolled back, and not marked known-good, so a "
            "later rollback goes past it to an older known-good release.",
            _next("send it traffic or give it a health probe (an `http:` rule) so that a window can see it "
                  f"serving; {CLI} check --online names the rules that read nothing",
                  f"{CLI} mark good {release} if it really is"),
        ),
        release=release,
    )


def clock_stepped(ctx: MessageContext, seconds: float) -> Message:
    """WARNING: the wall clock stepped; durations are unaffected (they run on steady time)."""
    way = "forward" if seconds > 0 else "back"
    return Message(
        kind="clock_step",
        severity=Severity.WARNING,
        title=_title(ctx, f"the clock stepped {way} by {format_duration(abs(seconds))}"),
        body=_body(
            f"This host's wall clock stepped {way} by {format_duration(abs(seconds))} (NTP, a resumed VM).",
            "`for`, watch windows and cooldowns keep running on the monotonic clock; times shown "
            "by the watcher may be off by the step until it restarts.",
            _next("check NTP (timedatectl timesync-status)"),
        ),
    )


def blind(ctx: MessageContext, rules: Sequence[str], error: str) -> Message:
    """WARNING: rules cannot read their signal (error_limit consecutive errors)."""
    rules = list(dict.fromkeys(rules))
    count = f"{len(rules)} rule{'s' if len(rules) != 1 else ''}"
    return Message(
        kind="blind",
        severity=Severity.WARNING,
        title=_title(ctx, "blind: " + count + " cannot read their signal"),
        body=_body(
            f"The watcher cannot see: {count} failed to read their signal: {untrusted(error, 300)}",
            "Their state is held; the watcher never rolls back because it cannot see.",
            "Rules: " + shorten(", ".join(rules), 300) if rules else "",
            _next(f"{CLI} check --online"),
        ),
        rules=tuple(rules),
    )


def recovered(ctx: MessageContext, rules: Sequence[str]) -> Message:
    """INFO: the rules that were blind can read their signal again."""
    rules = list(dict.fromkeys(rules))
    count = f"{len(rules)} rule{'s' if len(rules) != 1 else ''}"
    return Message(
        kind="recovered",
        severity=Severity.INFO,
        title=_title(ctx, "recovered: " + count + " can see again"),
        body=_body(
            f"The watcher can see again: {count} read their signal.",
            "Rules: " + shorten(", ".join(rules), 300) if rules else "",
            _next(f"nothing to do; {CLI} status"),
        ),
        rules=tuple(rules),
    )


def reload_refused(ctx: MessageContext, problems: Sequence[str]) -> Message:
    """WARNING: SIGHUP with an invalid config; the old config and rules stay in force."""
    problems = list(problems)
    shown = problems[:FINDINGS_SHOWN]
    lines = [f"- {shorten(p, 200)}" for p in shown]
    if len(problems) > len(shown):
        lines.append(f"- ... and {len(problems) - len(shown)} more")
    count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
    return Message(
        kind="reload_refused",
        severity=Severity.WARNING,
        title=_title(ctx, "config reload refused (" + count + ")"),
        body=_body(
            f"The new configuration was refused ({count}); the previous one stays in force.",
            "\n".join(lines),
            _next(f"{CLI} check"),
        ),
    )


def notify_only(ctx: MessageContext, finding: Finding, release: str) -> Message:
    """FAILURE: a rule with `action: notify` fired (e.g. CPU saturation): a human decides."""
    return Message(
        kind="notify_only",
        severity=Severity.FAILURE,
        title=_title(ctx, "{rule} firing on {r}", rule=finding.rule, r=release),
        body=_body(
            f"Rule {finding.rule} fired on release {release}. It does not roll back by itself: "
            "investigate, then decide.",
            fmt_findings([finding], ctx.now),
            _next(f"{CLI} explain {finding.rule}", f"{CLI} rollback if the release is the cause"),
        ),
        release=release,
        rules=(finding.rule,),
        facts={**_finding_facts([finding]), "action": "notify"},
    )


def human_action(ctx: MessageContext, what: str, by: str, effect: str, release: str = "") -> Message:
    """INFO: a human changed what the watcher will do (`pause`, `resume`, `resolve`, `mark`):
    whoever else is on call hears who did what, and what it changes."""
    who = by or "someone"
    return Message(
        kind="human_action",
        severity=Severity.INFO,
        title=_title(ctx, "{what} by {who}", what=what, who=who),
        body=_body(f"{what[:1].upper()}{what[1:]} by {who} on {ctx.host}.", effect, _next(f"nothing to do; {CLI} status")),
        release=release,
        facts={"action": "human"},
    )


def test_message(ctx: MessageContext, severity: Severity | str) -> Message:
    """`notify-test`: a message of the given severity; never de-duplicated."""
    severity = Severity.parse(severity)
    when = f" at {format_time(ctx.now)}" if ctx.now is not None else ""
    return Message(
        kind="test",
        severity=severity,
        title=_title(ctx, "test notification (" + severity.value + ")"),
        body=_body(
            f"A test from rollback-watcher on {ctx.host}{when}: this target receives "
            f"{severity.value} messages.",
            _next("nothing to do"),
        ),
        facts={"service": ctx.service, "host": ctx.host, "action": "none"},
    )


# --- the fleet (watcher/service/coordinator.py) -----------------------------------------------------


def fleet_blind(ctx: MessageContext, error: str) -> Message:
    """WARNING: etcd has not answered for a lease TTL; this host decides alone meanwhile."""
    return Message(
        kind="fleet_blind",
        severity=Severity.WARNING,
        title=_title(ctx, "fleet blind: etcd does not answer"),
        body=_body(
            f"The fleet's etcd does not answer: {untrusted(error, 300)}",
            "This host goes on deciding alone, exactly as without a fleet; what it owes the fleet "
            "(rollback verdicts, survived windows) is kept and written when etcd is back.",
            _next(f"{CLI} check --online", "then look at the etcd cluster"),
        ),
    )


def fleet_recovered(ctx: MessageContext, detail: str) -> Message:
    """INFO: etcd answers again."""
    return Message(
        kind="fleet_recovered",
        severity=Severity.INFO,
        title=_title(ctx, "fleet recovered: etcd answers again"),
        body=_body(f"The fleet's etcd answers again: {untrusted(detail, 300)}.", _next(f"nothing to do; {CLI} fleet status")),
    )


def fleet_symptom(ctx: MessageContext, release: str, reason: str, findings: Sequence[Finding]) -> Message:
    """FAILURE: rollback rules fire here, and also on hosts still on a known-good release."""
    return Message(
        kind="fleet_symptom",
        severity=Severity.FAILURE,
        title=_title(ctx, "fleet-wide symptom, not the release: {rules}", rules=", ".join(_names(findings))),
        body=_body(
            f"Rollback rules fire on release {release}, but at the same time on hosts still on a "
            f"known-good release: {reason}.",
            "The cause is probably shared (a database, an upstream, the network): no rollback.",
            fmt_findings(findings, ctx.now),
            _next(f"{CLI} fleet status", "look at what the hosts share"),
        ),
        release=release,
        rules=_names(findings),
        facts={**_finding_facts(findings), "action": "none"},
    )


# --- what the edges of a decision say (issue 13: verified, lock wait, unreadable current) ---


def rollback_not_cleared(ctx: MessageContext, from_id: str, to_id: str, rules: Sequence[str], waited: float) -> Message:
    """CRITICAL: switched and healthy by its probes, but the rules that fired still fire on the
    restored release: the release was probably not the cause. The watcher stops acting."""
    names = ", ".join(rules)
    return Message(
        kind="rollback_not_cleared",
        severity=Severity.CRITICAL,
        title=_title(ctx, "NEEDS HUMAN: {r} still firing after rolling back to {b}", r=names, b=to_id),
        body=_body(
            f"Rolled back {from_id} → {to_id}, but {names} did not clear on {to_id} within "
            f"{format_duration(waited)}: the release was probably not the cause.",
            f"The watcher stops acting (it will not roll back further) until a human runs `{CLI} resolve`.",
            _next(f"{CLI} explain {rules[0]}" if rules else f"{CLI} status", f"{CLI} resolve"),
        ),
        release=from_id,
        rules=tuple(rules),
    )


def current_unreadable(ctx: MessageContext, release: str | None, reason: str) -> Message:
    """CRITICAL: the backend cannot say which release is current; the watcher never acts so."""
    return Message(
        kind="current_unreadable",
        severity=Severity.CRITICAL,
        title=_title(ctx, "NEEDS HUMAN: cannot tell which release is current"),
        body=_body(
            f"{reason}.",
            f"The rules are still evaluated (last release seen: {release or 'none'}), but the watcher will "
            "not roll back, nor mark any release known-good, until it can read the host again.",
            _next(f"{CLI} status", "fix `current` (it must point at a release directory)"),
        ),
        release=release or "",
    )


def current_readable(ctx: MessageContext, release: str) -> Message:
    """INFO: the backend says which release is current again."""
    return Message(
        kind="current_readable",
        severity=Severity.INFO,
        title=_title(ctx, "current is readable again: {r}", r=release),
        body=_body(f"The backend says {release} is current again; the watcher acts as usual."),
        release=release,
    )


def lock_wait_long(ctx: MessageContext, release: str, lock: str, waited: float, findings: Sequence[Finding]) -> Message:
    """CRITICAL: a rollback rule fires, but a deploy has held the deploy lock for lock_timeout."""
    return Message(
        kind="lock_wait_long",
        severity=Severity.CRITICAL,
        title=_title(ctx, "NEEDS HUMAN: {r} should roll back, a deploy has held the lock for "
                     + format_duration(waited), r=release),
        body=_body(
            f"A rollback rule fires on {release}, but {lock} has been held for {format_duration(waited)}. "
            "The watch window waits with it; the rollback happens when the lock is free.",
            fmt_findings(findings, ctx.now),
            _next("check the deploy that holds the lock", f"{CLI} rollback --yes to act now"),
        ),
        release=release,
        rules=_names(findings),
        facts={**_finding_facts(findings), "action": "needs_human"},
    )
