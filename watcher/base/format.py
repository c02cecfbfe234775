"""How every output of the watcher writes numbers, durations, times and labels: the messages,
the webhook payload's `value_text`/`threshold_text`, the log lines, the incident timeline, the
fleet's messages and every CLI command (eval, explain, status, backtest, the demo) use these, so
a value reads the same wherever it appears. Pure: no I/O, no clock.

Numbers are formatted by the unit the rule declares (`value_unit`), its value and its
thresholds alike ("40.29% against > 10% for 2m", never "> 0.1"):
  - "%", "percent" or "ratio": the value is a fraction, shown as a percent (0.3021 -> 30.21%);
  - "s": seconds, shown as 250ms, 1.2s, 2m10s;
  - anything else: 4 significant digits followed by the unit.
Machines get the raw number beside the text (the journal, `--json`, the payload's `value`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime

_LABELS_MAX = 80


def shorten(text: str, limit: int) -> str:
    """`text` cut in the middle with "…" to at most `limit` characters (ends carry the meaning:
    a release id's date or hash, a host's domain)."""
    text = " ".join(str(text).split())  # no newlines in titles
    if len(text) <= limit:
        return text
    if limit <= 1:
        return "…"[:limit]
    head = (limit - 1) // 2
    tail = limit - 1 - head
    return text[:head] + "…" + (text[-tail:] if tail else "")


# Control characters (newlines, terminal escapes), invisible format characters and bidi
# overrides: a line of text from elsewhere must not end a message's line, recolour a terminal or
# reverse what a reader sees. U+200B is left: it is what defuses a mention below.
_UNSEEN = re.compile("[\x00-\x1f\x7f-\x9f\u200c-\u200f\u2028-\u202e\u2060-\u2069\ufeff]+")
_MENTION = re.compile(r"(?<=[@!])(?=[\w&!#])")  # @channel, @here, @everyone, <@123>, <@&role>, <!channel>
_MASKED_LINK = re.compile(r"\]\s*\(")  # markdown's [text](url)


def untrusted(text: object, limit: int = 120) -> str:
    """Text that did not come from this host's own config (a verdict or a membership another
    host, or anyone who can write to etcd, stored; an error a server answered), made safe to put
    into a message, a log line or a terminal: one line without control or invisible characters;
    no mention (a zero-width space after each @ or !, so that Slack, Mattermost or Discord page
    nobody); no link whose text hides its address (`[login here](http://...)` becomes
    `[login here] (http://...)`: the address stays in sight); at most `limit` characters (cut in
    the middle, see `shorten`).

    Other markup is left as it is here: the notifier hands every message to Apprise as plain
    text, which escapes it for each target's format (HTML for e-mail, Slack's and CommonMark's
    escapes; notify/targets.py). Discord and Mattermost render markdown even in plain text: there
    a `**word**` from elsewhere still shows bold, but pages nobody and hides no link."""
    cleaned = _UNSEEN.sub(" ", str(text))
    cleaned = _MASKED_LINK.sub("] (", cleaned)
    return shorten(_MENTION.sub("\u200b", cleaned), limit)


def format_duration(seconds: float | None) -> str:
    """45s, 2m10s, 1h5m, 2d3h; below 10 s with one decimal (1.2s), below 1 s in ms."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    seconds = max(0.0, float(seconds))
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 10:
        return f"{seconds:.1f}s".replace(".0s", "s")
    total = int(round(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h{minutes}m" if minutes else f"{hours}h"
    if minutes:
        return f"{minutes}m{secs}s" if secs else f"{minutes}m"
    return f"{secs}s"


def format_time(epoch: float | None) -> str:
    """UTC ISO time to the second, e.g. 2024-05-01T03:12:00Z."""
    if epoch is None or not math.isfinite(epoch):
        return "?"
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_value(value: float | None, unit: str = "") -> str:
    """A value in the rule's unit, readable (see the module docstring)."""
    if value is None:
        return "n/a"
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, float) and math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    unit = (unit or "").strip()
    if unit in ("%", "ratio", "percent"):
        return format_number(value * 100) + "%"
    if unit == "s":
        return ("-" if value < 0 else "") + format_duration(abs(value))
    text = format_number(value)
    return f"{text}{unit}" if unit else text


def format_number(value: float | None, grouped: bool = True) -> str:
    """4 significant digits; whole numbers whole. `grouped=False` leaves out the thousands
    separator, for text that is parsed again (a rule's condition, read by format_condition)."""
    if value is None:
        return "-"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    group = "," if grouped else ""
    if value == int(value) and abs(value) < 1e15:
        return f"{int(value):{group}}" if abs(value) >= 1e4 else str(int(value))
    if abs(value) >= 1e4:
        return f"{value:{group}.0f}"
    return f"{value:.4g}" if abs(value) >= 1e-3 else f"{value:.3g}"


_SIMPLE_CONDITION = re.compile(r"^\s*(>=|<=|==|!=|>|<)\s*(-?\d+(?:\.\d+)?(?:[eE]-?\d+)?)\s*$")


def format_condition(condition: str, unit: str = "") -> str:
    """"> 0.1" in the rule's unit ("> 10%"); any other condition as written."""
    match = _SIMPLE_CONDITION.match(condition or "")
    if not match:
        return (condition or "").strip()
    return f"{match.group(1)} {format_value(float(match.group(2)), unit)}"


def format_reading(value: float | None, condition: str, unit: str = "") -> str:
    """"40.29% against > 10% for 2m": a value and the condition it is held against, both in the
    rule's unit (a condition a rule wrote in its unit already is kept as it is)."""
    shown = format_condition(condition, unit) or "its condition"
    return shown if value is None else f"{format_value(value, unit)} against {shown}"


def format_labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    inner = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "__name__")
    return shorten("{" + inner + "}", _LABELS_MAX) if inner else ""
