"""Durations as people write them, one parser for watcher.yaml, rule files and CLI options.

Prometheus' units (ms, s, m, h, d, w), one or more parts ("1h30m"); a part may have a decimal
fraction, as systemd and Go accept ("0.5s", "1.5m", ".5h"). Refused: a sign ("-5s"), spaces
("2 m"), a bare number ("5"; only the integer 0 means "none"), a unit alone ("m").
"""

from __future__ import annotations

import re
from typing import Any

_NUMBER = r"(?:\d+(?:\.\d+)?|\.\d+)"
_UNITS = r"(?:ms|s|m|h|d|w)"  # "ms" before "m": "250ms" is one part, not "250m" + "s"
_DURATION = re.compile(rf"^(?:{_NUMBER}{_UNITS})+$")
_DURATION_PART = re.compile(rf"({_NUMBER})({_UNITS})")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
EXAMPLES = "30s, 1.5m or 1h30m"


def parse_duration(text: Any) -> float:
    """Seconds in `text` ("2m", "1h30m", "0.5s", "250ms"); 0 alone is allowed. Raises ValueError."""
    if isinstance(text, bool):
        raise ValueError(f"expected a duration such as {EXAMPLES}")
    if isinstance(text, int) and text == 0:
        return 0.0
    if not isinstance(text, str):
        raise ValueError(f"expected a duration such as {EXAMPLES}, got {_kind(text)}")
    if not _DURATION.match(text):
        hint = ""
        squeezed = text.replace(" ", "").lstrip("-+")
        if squeezed and _DURATION.match(squeezed):
            hint = f" (write {squeezed!r}: no spaces, no sign)"
        elif re.fullmatch(_NUMBER, text.strip()):
            hint = f" (add a unit: {text.strip()}s, {text.strip()}m...)"
        raise ValueError(f"{text!r} is not a duration such as {EXAMPLES}{hint}")
    return float(sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text)))


def _kind(value: Any) -> str:
    if isinstance(value, (int, float)):
        return f"the number {value!r} (add a unit, e.g. {value!r}s)"
    return f"a {type(value).__name__}"
