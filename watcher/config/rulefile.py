"""The rule files: which files `rules:` names, and each rule mapping read into a Rule
(core/rules.py), with FILE:LINE: KEY problems for every way a key can be wrong."""

from __future__ import annotations

import glob
import os
import re
from pathlib import Path
from typing import Any

import promql_parser

from watcher.base import yamlfile
from watcher.base.errors import ConfigError, ConfigProblem
from watcher.config import judgerule
from watcher.config import values as kinds
from watcher.config.bind import PLACEHOLDER
from watcher.config.values import FileReader, read_yaml
from watcher.core.rules import (
    ACTIONS,
    EVIDENCE_KINDS,
    HOST_SIGNALS,
    NO_DATA_POLICIES,
    SCOPES,
    WINDOW_TOKEN,
    CounterShare,
    HostCheck,
    HttpCheck,
    Location,
    PromQuery,
    Rule,
    Signal,
)

RULE_KEYS = ["name", "description", "query", "http", "host", "above", "below", "above_baseline", "floor", "for",
             "failures", "action", "no_data", "expect_status", "expect_body", "timeout", "unit", "window", "path",
             "baseline_window", "value_unit", "notify", "trailing", "scope", "evidence", *judgerule.KEYS]
_RULE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")


def load_rule_file(path: str | os.PathLike[str], max_window: float = 60.0) -> list[Rule]:
    """Read one rule file on its own (for `rollback-watcher test`). Raises ConfigError."""
    problems: list[ConfigProblem] = []
    rules = load_rules([Path(path)], problems, max_window)
    if problems:
        raise ConfigError(problems)
    return rules


def rule_files(doc: dict[str, Any], f: FileReader, base: Path) -> list[Path]:
    raw = doc.get("rules")
    line = f.line_of(doc, "rules")
    if raw is None:
        f.problem(f.line_of(doc), "rules", "is required: a list of rule file globs, e.g. [rules/*.yaml]")
        return []
    try:
        patterns = kinds.strings(raw)
    except ValueError as exc:
        f.problem(line, "rules", str(exc))
        return []
    files: list[Path] = []
    for i, pattern in enumerate(patterns):
        item_line = raw.item_lines[i] if isinstance(raw, yamlfile.YList) else line
        full = pattern if os.path.isabs(pattern) else str(base / pattern)
        matched = sorted(Path(p) for p in glob.glob(full) if os.path.isfile(p))
        if not matched:
            f.problem(item_line, f"rules[{i}]", f"{pattern!r} matches no rule file")
        files.extend(p for p in matched if p not in files)
    return files


def load_rules(files: list[Path], problems: list[ConfigProblem], max_window: float) -> list[Rule]:
    rules: list[Rule] = []
    seen: dict[str, Location] = {}
    for path in files:
        f = FileReader(str(path), problems)
        doc = read_yaml(path, f)
        if doc is None:
            continue
        if not isinstance(doc, dict) or "rules" not in doc:
            f.problem(1, "rules", "a rule file holds a mapping with a `rules:` list")
            continue
        f.unknown_keys(doc, ["rules"], "")
        raw = doc["rules"]
        if not isinstance(raw, yamlfile.YList):
            f.problem(f.line_of(doc, "rules"), "rules", f"expected a list of rules, got {kinds.show(raw)}")
            continue
        for i, item in enumerate(raw):
            name = item.get("name") if isinstance(item, dict) else None
            if isinstance(name, str) and name in seen:
                f.problem(f.line_of(item, "name"), f"rule {name}: name",
                          f"duplicate rule name (first defined at {seen[name]})")
                continue
            rule = read_rule(item, raw.item_lines[i], i, f, max_window)
            if isinstance(name, str):
                seen[name] = Location(f.path, raw.item_lines[i])
            if rule is not None:
                rules.append(rule)
    return rules


def read_rule(item: Any, line: int, index: int, f: FileReader, max_window: float) -> Rule | None:
    """One rule mapping of a rule file (or of a rule test file's inline `rules:`), validated;
    None with its problems recorded in `f` when it is not a valid rule."""
    m = f.mapping(item, line, f"rules[{index}]")
    if m is None:
        return None
    name = f.read(m, "name", kinds.string, f"rules[{index}].", required=True)
    if name and not _RULE_NAME.match(name):
        f.problem(f.line_of(m, "name"), f"rules[{index}].name",
                  f"{name!r}: use letters, digits and - _ . : (it names metrics and files)")
    p = f"rules[{index}]." if not name else f"rule {name}: "
    count = len(f.problems)
    f.unknown_keys(m, RULE_KEYS, p)

    signals = [k for k in ("query", "http", "host", "judge") if k in m]
    signal: Signal | None = None
    if not signals:
        f.problem(f.line_of(m), f"{p}query", "missing: a rule reads `query:` (PromQL), `http:` (a probe), `host:` or "
                                             "counters (`judge: sequential`)")
    elif len(signals) > 1:
        f.problem(f.line_of(m, signals[1]), f"{p}{signals[1]}", f"a rule reads one signal, not both {' and '.join(signals)}")
    elif signals[0] == "query":
        query = f.read(m, "query", kinds.string, p, required=True)
        if query:
            _check_promql(query, f, f.line_of(m, "query"), f"{p}query", max_window)
            signal = PromQuery(query.strip())
    elif signals[0] == "judge":
        signal = judgerule.read_signal(m, f, p)
    elif signals[0] == "http":
        url = f.read(m, "http", kinds.url, p, required=True)
        if url:
            signal = HttpCheck(
                url=url,
                expect_status=f.read(m, "expect_status", kinds.status, p, 200),
                expect_body=f.read(m, "expect_body", kinds.string, p),
                timeout=f.read(m, "timeout", kinds.positive_duration, p, 2.0),
            )
    else:
        kind = f.read(m, "host", kinds.choice(*HOST_SIGNALS), p, required=True)
        if kind:
            unit = f.read(m, "unit", kinds.string, p)
            if kind == "unit_restarts" and not unit:
                f.problem(f.line_of(m, "host"), f"{p}unit", "is required for host: unit_restarts (e.g. shop-api.service)")
            signal = HostCheck(kind=kind, window=f.read(m, "window", kinds.positive_duration, p, 300.0), unit=unit,
                               path=f.read(m, "path", kinds.string, p, "/proc/vmstat"))

    probe_keys = ("expect_status", "expect_body", "timeout")
    host_keys = ("unit", "window", "path")
    for key in probe_keys if not isinstance(signal, HttpCheck) else ():
        if key in m:
            f.problem(f.line_of(m, key), f"{p}{key}", "only applies to `http:` rules")
    for key in host_keys if not isinstance(signal, HostCheck) else ():
        if key in m:
            f.problem(f.line_of(m, key), f"{p}{key}", "only applies to `host:` rules")
    judged = "judge" in m
    for key in judgerule.KEYS[1:] if not judged else ():
        if key in m:
            f.problem(f.line_of(m, key), f"{p}{key}", "only applies to `judge: sequential` rules")

    # A judge's `above` (and its error form's `floor`) is a share: 0.10 or 10%.
    above = f.read(m, "above", kinds.share if judged else kinds.number, p)
    below = f.read(m, "below", kinds.number, p)
    above_baseline = f.read(m, "above_baseline", kinds.non_negative, p)
    floor = f.read(m, "floor", kinds.share if judged and "buckets" not in m else kinds.number, p)
    judge_params = judgerule.read_params(m, f, p, above, above_baseline) if judged else {}
    if judged:
        pass  # judgerule.read_params checked what the judge's form needs
    elif isinstance(signal, HttpCheck):
        for key in ("above", "below", "above_baseline", "floor", "no_data"):
            if key in m:
                f.problem(f.line_of(m, key), f"{p}{key}", "does not apply to `http:` rules (they fail or pass)")
    elif isinstance(signal, HostCheck):
        if above is None and below is None:
            above = 0.0  # a host counter breaches when it grew at all within `window`
    elif signal is not None and above is None and below is None and above_baseline is None:
        f.problem(f.line_of(m), f"{p}above", "missing: a query rule needs `above`, `below` or `above_baseline`")
    if floor is not None and above_baseline is None and "slower_than_baseline" not in m:
        f.problem(f.line_of(m, "floor"), f"{p}floor", "only applies together with `above_baseline`")

    scope = f.read(m, "scope", kinds.choice(*SCOPES), p, "host")
    if "scope" in m and signal is not None and not isinstance(signal, (PromQuery, CounterShare)):
        f.problem(f.line_of(m, "scope"), f"{p}scope",
                  "only applies to `query:` and `judge:` rules (prometheus.labels scope their selectors)")
    action = f.read(m, "action", kinds.choice(*ACTIONS), p, required=True)
    # Every key is read (and its problems recorded) even when the signal is missing.
    fields: dict[str, Any] = dict(
        name=name or f"rule-{index}",
        action=action or "notify",
        above=above,
        below=below,
        above_baseline=above_baseline,
        floor=floor,
        for_=f.read(m, "for", kinds.duration, p, 0.0),
        failures=f.read(m, "failures", kinds.positive_int, p, 1),
        no_data=f.read(m, "no_data", kinds.choice(*NO_DATA_POLICIES), p, "ok"),
        baseline_window=f.read(m, "baseline_window", kinds.positive_duration, p, 1800.0),
        value_unit=f.read(m, "value_unit", kinds.string, p, "%" if judged else ""),
        description=f.read(m, "description", kinds.string, p, ""),
        notify=f.read(m, "notify", kinds.strings, p, ()),
        trailing=f.read(m, "trailing", kinds.trailing, p),
        scope=scope or "host",
        evidence=f.read(m, "evidence", kinds.choice(*EVIDENCE_KINDS), p),
        location=Location(f.path, line),
        **judge_params,
    )
    if signal is None or len(f.problems) != count:
        return None
    return Rule(signal=signal, **fields)


# A PromQL string literal: "..." or '...' with backslash escapes, or `...` raw.
_PROMQL_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')


def _check_promql(query: str, f: FileReader, line: int | None, key: str, max_window: float) -> None:
    """Offline syntax check. promql-parser gives no position, so the rule's own line is used."""


    # `${NAME}` placeholders are filled in from watcher.yaml later (config/bind.py); they stand
    # in label values, so any text checks the syntax here.
    rendered = PLACEHOLDER.sub("placeholder", query).replace(WINDOW_TOKEN, f"{int(max_window)}s")
    # A `$` inside a PromQL string is the query's own (label_replace's "$1"), not ours.
    if "$" in _PROMQL_STRING.sub('""', rendered):
        f.problem(line, key, f"unknown placeholder in {query!r}: [{WINDOW_TOKEN}] and ${{NAME}} (docs/config.md) "
                             f"are substituted")
        return
    try:
        promql_parser.parse(rendered)
    except (ValueError, TypeError) as exc:
        f.problem(line, key, f"invalid PromQL: {exc}")
