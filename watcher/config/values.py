"""Reading one YAML file of the config with every problem recorded (FILE:LINE: KEY: message,
collected and raised once by the caller, as borgmatic does), and the value kinds its keys
take: each kind takes the raw YAML value and returns the typed one or raises ValueError.
The rule test files (actions/ruletest.py) are read with the same FileReader."""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, overload

from watcher.base import yamlfile
from watcher.base.durations import parse_duration
from watcher.base.errors import ConfigProblem
from watcher.base.redact import redact_url


def show(value: Any) -> str:
    kind = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "a number",
            float: "a number", type(None): "nothing"}
    for t, name in kind.items():
        if isinstance(value, t):
            return name if t in (dict, list, type(None)) else f"{name} ({value!r})"
    return type(value).__name__


# ---------------------------------------------------------------------------------------------
# The checker: reads a YMap against a table of keys, records problems, returns typed values


class FileReader:
    """Problems of one file, and helpers that read keys of its mappings. Public: the rule test
    files (ruletest.py) are read with the same helpers, so they report problems alike."""

    def __init__(self, path: str, problems: list[ConfigProblem]):
        self.path = path
        self.problems = problems

    def problem(self, line: int | None, key: str, message: str) -> None:
        self.problems.append(ConfigProblem(self.path, line, key, message))

    def line_of(self, mapping: Any, key: str | None = None) -> int | None:
        if isinstance(mapping, yamlfile.YMap):
            if key is not None and key in mapping.key_lines:
                return mapping.key_lines[key]
            return mapping.line
        return getattr(mapping, "line", None)

    def mapping(self, value: Any, line: int | None, key: str) -> dict[str, Any] | None:
        if isinstance(value, dict):
            return value
        self.problem(line, key, f"expected a mapping, got {show(value)}")
        return None

    def unknown_keys(self, mapping: Mapping[str, Any], allowed: list[str], prefix: str) -> None:
        for key in mapping:
            if key in allowed:
                continue
            name = f"{prefix}{key}"
            close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            self.problem(self.line_of(mapping, key), name, f"unknown key{hint}")

    def read(self, mapping: Mapping[str, Any], key: str, kind: Callable[[Any], Any], prefix: str = "", default: Any = None,
             required: bool = False) -> Any:
        """The typed value of `key`, or `default` (a problem is recorded when it is invalid)."""
        name = f"{prefix}{key}"
        if key not in mapping or mapping[key] is None:
            if required:
                self.problem(self.line_of(mapping), name, "is required")
            return default
        try:
            return kind(mapping[key])
        except ValueError as exc:
            self.problem(self.line_of(mapping, key), name, str(exc))
            return default


def string(v: Any) -> str:
    if isinstance(v, str) and v.strip():
        return v
    if isinstance(v, str):
        raise ValueError("must not be empty")
    raise ValueError(f"expected a string, got {show(v)}")


def number(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"expected a number, got {show(v)}")
    if not math.isfinite(v) or abs(v) > 1e300:
        raise ValueError(f"expected a finite number, got {v!r}")
    return float(v)


def non_negative(v: Any) -> float:
    x = number(v)
    if x < 0:
        raise ValueError(f"must not be negative, got {v!r}")
    return x


def positive_int(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError(f"expected a whole number, got {show(v)}")
    if v < 1 or v > 1_000_000:
        raise ValueError(f"must be between 1 and 1000000, got {v}")
    return v


def boolean(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    raise ValueError(f"expected true or false, got {show(v)}")


def duration(v: Any) -> float:
    return parse_duration(v)


def positive_duration(v: Any) -> float:
    seconds = parse_duration(v)
    if seconds <= 0:
        raise ValueError("must be longer than 0s")
    return seconds


def share(v: Any) -> float:
    """A share written 0.8 or "80%"."""
    text = v.strip() if isinstance(v, str) else v
    if isinstance(text, str) and text.endswith("%"):
        try:
            x = float(text[:-1].strip()) / 100
        except ValueError:
            raise ValueError(f"expected a share such as 80%, got {show(v)}") from None
    else:
        x = number(text)
    if not 0 <= x <= 1:
        raise ValueError(f"expected a share between 0 and 1 (or 0% to 100%), got {show(v)}")
    return x


def trailing(v: Any) -> float:
    """`trailing: off` (or 0s) turns the trailing window off; else a duration."""
    if v is False or (isinstance(v, str) and v.strip().lower() == "off"):
        return 0.0
    seconds = parse_duration(v)
    if seconds < 0:
        raise ValueError("must not be negative")
    return seconds


def url(v: Any) -> str:
    s = string(v)
    if not re.match(r"^https?://[^\s/]+", s):
        raise ValueError(f"expected an http:// or https:// URL, got {redact_url(s, use_apprise=False)!r}")
    return s


def argv(v: Any) -> tuple[str, ...]:
    if isinstance(v, str):
        raise ValueError("must be a list of arguments (argv), never a shell string: "
                         f"write [{', '.join(repr(p) for p in v.split())}]")
    if not isinstance(v, list) or not v:
        raise ValueError(f"expected a non-empty list of arguments, got {show(v)}")
    if not all(isinstance(a, (str, int, float)) and not isinstance(a, bool) for a in v):
        raise ValueError("every argument must be a string")
    return tuple(str(a) for a in v)


def strings(v: Any) -> tuple[str, ...]:
    if isinstance(v, str):
        return (v,)
    if not isinstance(v, list) or not all(isinstance(a, str) and a for a in v):
        raise ValueError(f"expected a list of strings, got {show(v)}")
    return tuple(v)


def choice(*choices: str) -> Callable[[Any], str]:
    def check(v: Any) -> str:
        if v in choices:
            return str(v)
        close = difflib.get_close_matches(str(v), choices, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"{v!r} is not one of {', '.join(choices)}{hint}")

    return check


def str_map(v: Any) -> dict[str, str]:
    if not isinstance(v, dict) or not all(isinstance(k, str) and isinstance(x, (str, int)) for k, x in v.items()):
        raise ValueError(f"expected a mapping of names to strings, got {show(v)}")
    return {k: str(x) for k, x in v.items()}


def listen(v: Any) -> str:
    s = string(v)
    host, _, port = s.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT such as 127.0.0.1:9464, got {s!r}")
    return s


def status(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 100 <= v <= 599:
        raise ValueError(f"expected an HTTP status code such as 200, got {show(v)}")
    return v



@overload
def resolve_path(value: str, base: Path) -> Path: ...
@overload
def resolve_path(value: str | None, base: Path) -> Path | None: ...
def resolve_path(value: str | None, base: Path) -> Path | None:
    if value is None:
        return None
    p = Path(value).expanduser()
    return p if p.is_absolute() else (base / p)



def section(doc: Mapping[str, Any], key: str, f: FileReader, allowed: list[str]) -> dict[str, Any]:
    if key not in doc or doc[key] is None:
        return {}
    m = f.mapping(doc[key], f.line_of(doc, key), key)
    if m is None:
        return {}
    f.unknown_keys(m, allowed, f"{key}.")
    return m



def read_yaml(path: Path, f: FileReader) -> Any:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        f.problem(None, "", f"cannot read: {exc.strerror or exc}")
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        f.problem(line, "", "not UTF-8 text")
        return None
    try:
        doc = yamlfile.load(text)
    except yamlfile.YamlProblem as exc:
        f.problem(exc.line, "", exc.message)
        return None
    if doc is None:
        f.problem(1, "", "the file is empty")
    return doc


