"""Rules and their pure state machine (DESIGN.md section 4). No I/O, no clock: `now` comes in."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Finding:
    """What a rule saw, in the words a message needs: used by decisions, journal and notifications."""

    rule: str
    action: str  # "rollback" | "notify"
    condition: str  # human form, e.g. "> 0.1" or "> 5 x baseline 0.12 and > 0.2"
    value: float | None = None  # the worst breaching value, None for probes without a number
    unit: str = ""  # e.g. "s", "%", "" as declared by the rule
    since: float | None = None  # epoch seconds the condition first held (pending start)
    labels: dict = field(default_factory=dict, compare=False, hash=False)  # breaching series
    detail: str = ""  # e.g. "connect error", "3 consecutive failures"
