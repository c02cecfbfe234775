"""An incident: from the first firing rollback rule to its end (rolled back, cleared,
superseded by a deploy, resolved by a human). Pure: no I/O, no clock; the service passes the
time and journals what `close` returns.

Its timeline starts where the trouble did (when each firing rule first breached, with the value
it had then, in the rule's unit) and holds one line per change of the decision, so `incidents`
and `status` tell the story in order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from watcher.core.rules import Finding


@dataclass
class Incident:
    id: str
    opened_at: float
    release: str | None
    rules: list[str] = field(default_factory=list)
    timeline: list[dict[str, Any]] = field(default_factory=list)  # {"time": epoch, "what": text}
    last_kind: str | None = None  # the verdict kind last told: one message per change

    @classmethod
    def open(cls, incident_id: str, now: float, release: str | None, findings: Sequence[Finding]) -> Incident:
        incident = cls(incident_id, now, release, [f.rule for f in findings])
        for f in sorted(findings, key=lambda f: f.since or now):
            incident.note(f.since or now, f"{f.rule} breached: {_breach(f)}")
        return incident

    def note(self, at: float, what: str) -> None:
        self.timeline.append({"time": round(at, 3), "what": what})

    def step(self, kind: str, reason: str, at: float) -> bool:
        """Record a verdict; True when it is news (its kind differs from the last one)."""
        if self.last_kind == kind:
            return False
        self.last_kind = kind
        self.note(at, f"{kind}: {reason}")
        return True

    def close(self, at: float, resolution: str, summary: str) -> dict[str, Any]:
        """The closed incident, as the journal's `incident` event records it."""
        record = asdict(self)
        record.pop("last_kind")
        return dict(record, closed_at=round(at, 3), resolution=resolution, summary=summary)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Incident:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def _breach(f: Finding) -> str:
    """What a rule breached with: its value at the breach against its condition, or a probe's
    answer (a fleet verdict's words, for `fleet:RULE`)."""
    if f.value is None and f.breach_value is None:
        return f.detail or f.reading()
    return f.reading(at_breach=True)
