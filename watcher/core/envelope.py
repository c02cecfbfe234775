"""A message as it travels: what it is (Message, its Severity), who sends it (MessageContext),
who receives it (NotifyTarget: `min_severity` and route tags) and the event as data for
webhooks (payload). Pure: no I/O, no clock. What each event says is core/messages.py's; how it
is delivered, notify/'s.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

from watcher.base.redact import is_config_path
from watcher.core.rules import Finding, Rule


class Severity(str, Enum):
    """How bad it is. Ordered for `min_severity` filtering by `rank`:

        info < success < warning < failure < critical

    The order follows ntfy's priorities (info 2, success 3, warning 4, failure 4, critical 5), so
    a target with `min_severity: failure` receives failure and critical, one with `warning`
    receives warning, failure and critical. Note that `success` ranks below `warning`: to hear
    that a rollback verified, a target needs `min_severity: success` (or info).
    """

    INFO = "info"
    WARNING = "warning"
    SUCCESS = "success"
    FAILURE = "failure"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def at_least(self, other: Severity) -> bool:
        """True if this severity passes a filter of `min_severity = other`."""
        return self.rank >= Severity(other).rank

    @classmethod
    def parse(cls, value: str | Severity) -> Severity:
        """Severity from its name, case-insensitive; ValueError naming the choices otherwise."""
        if isinstance(value, Severity):
            return value
        try:
            return cls(str(value).strip().lower())
        except ValueError:
            choices = ", ".join(s.value for s in sorted(cls, key=lambda s: s.rank))
            raise ValueError(f"unknown severity {value!r}; one of: {choices}") from None


_RANK = {
    Severity.INFO: 0,
    Severity.SUCCESS: 1,
    Severity.WARNING: 2,
    Severity.FAILURE: 3,
    Severity.CRITICAL: 4,
}


@dataclass(frozen=True)
class Message:
    """One notification, ready to send. `route_tags` come from a rule's `notify: [tag, ...]`:
    set them with `dataclasses.replace(message, route_tags=rule.notify)`."""

    kind: str
    severity: Severity
    title: str
    body: str
    route_tags: tuple[str, ...] = ()
    release: str = ""  # for the journal
    rules: tuple[str, ...] = ()  # for the journal
    # The event as data, for receivers that automate (`payload()`): target, rule, value,
    # threshold, action, incident... as each template knows them.
    facts: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    # The picture of the breach (a notify.pictures.BreachPicture: plain data, drawn by the
    # notifier for the targets that take attachments); set by the service, see tick.py.
    picture: object = field(default=None, hash=False, compare=False, repr=False)


@dataclass(frozen=True)
class NotifyTarget:
    """One `notify:` entry of watcher.yaml, `${VAR}` already expanded."""

    url: str
    min_severity: Severity = Severity.INFO
    tags: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "min_severity", Severity.parse(self.min_severity))
        object.__setattr__(self, "tags", tuple(self.tags or ()))

    @property
    def is_config_file(self) -> bool:
        return is_config_path(self.url)

    def accepts(self, message: Message) -> bool:
        """Severity at least min_severity, and routing as in the module docstring."""
        if not message.severity.at_least(self.min_severity):
            return False
        if not self.tags or not message.route_tags:
            return True
        return bool(set(self.tags) & set(message.route_tags))


@dataclass(frozen=True)
class MessageContext:
    """Who is speaking, and when. Build once with service and host; `ctx.at(now)` per event."""

    service: str
    host: str
    now: float | None = None  # epoch seconds; enables "for 2m10s"

    def at(self, now: float) -> MessageContext:
        return replace(self, now=now)


# --- the structured payload of json:// and jsons:// targets ----------------------------------

PAYLOAD_SCHEMA = "rollback-watcher/1"
PAYLOAD_KEYS = ("schema", "event", "severity", "service", "host", "release", "target", "rule", "rules",
                "value", "unit", "threshold", "value_text", "threshold_text", "breach_value", "breach_value_text",
                "action", "incident", "next", "evidence")


def payload(message: Message) -> dict[str, Any]:
    """The event as JSON for webhooks that automate, beside Apprise's own title/message/type.
    Version 1 (`"schema": "rollback-watcher/1"`); every key is always present, null when the
    event has no such thing:

        event      the message kind (rolling_back, rollback_verified, rollback_failed, ...)
        severity   info | success | warning | failure | critical
        service, host
        release    the release the event is about (the one rolled back from)
        target     the release rolled back to, or the candidate a human may roll back to;
                   for deploy_seen, where a rollback of the new release would go
        rule       the first rule behind it; rules: all of them
        value      that rule's value (a number, in `unit`); threshold: its condition as written
        value_text, threshold_text
                   the same as the messages write them, in the rule's unit ("40.29%", "> 10%")
        breach_value, breach_value_text
                   the value when the rule first breached (the incident's start)
        action     what the watcher did or asks: rollback, rolled_back, needs_human, none,
                   notify, deploy, marked_good, human
        incident   the open incident's id
        next       the one command a human should run next
        evidence   a sequential judge rule's evidence (`judge: sequential`): share, low, high
                   (its confidence interval), level, limit, requests, failures, log_e,
                   log_needed, rejected, old_share, old_high, factor; null for other rules

    A new key may be added within version 1; a key's meaning never changes without a new one.
    """
    facts = message.facts
    next_line = next((line[len("Next: "):] for line in message.body.splitlines() if line.startswith("Next: ")), None)
    data = {"schema": PAYLOAD_SCHEMA, "event": message.kind, "severity": message.severity.value,
            "release": message.release or None,
            "rules": list(message.rules), "rule": message.rules[0] if message.rules else None, "next": next_line}
    data.update({k: v for k, v in facts.items() if k in PAYLOAD_KEYS})
    return {k: data.get(k) for k in PAYLOAD_KEYS}


def with_context(message: Message, ctx: MessageContext, incident: str | None = None) -> Message:
    """`message` with who sends it (and the open incident) in its facts, for `payload()`."""
    facts = {**message.facts, "service": ctx.service, "host": ctx.host}
    if incident:
        facts["incident"] = incident
    return replace(message, facts=facts)


def routed(message: Message, findings: Sequence[Finding], rules: Iterable[Rule]) -> Message:
    """`message` routed by the `notify:` tags of the rules behind `findings`."""
    tags = sorted({t for f in findings for r in rules if r.name == f.rule for t in r.notify})
    return replace(message, route_tags=tuple(tags)) if tags else message
