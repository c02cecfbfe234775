"""Rule unit tests without Prometheus (`rollback-watcher test FILE.yaml`).

In the spirit of `promtool test rules`, but one level up: promtool tests the PromQL (series in,
query result out); this tests what the watcher does with a query's result (values in, states
and rollbacks out). Test PromQL itself with `promtool test rules`.

    rule_files: [../default.yaml]     # relative to this file; or `rules:` with inline rules
    interval: 15s                     # one step; eval_time must fall on a step
    watch_window: 30m                 # optional (default 30m)
    max_window: 1m                    # optional, for the PromQL syntax check of the rules
    tests:
      - name: 5xx after a deploy rolls back after 2m
        deploys: [{at: 5m, release: r2}]
        input_series:                 # the value of the RULE's query at each step
          - rule: http-5xx-ratio
            labels: {code: "500"}     # optional; several entries for one rule = several series
            values: 0.01x20 0.3x20
        expect:
          - {eval_time: 6m, rule: http-5xx-ratio, state: pending}
          - {eval_time: 7m30s, rule: http-5xx-ratio, state: firing}
          - {eval_time: 7m30s, rollback: r2}     # or `rollback: none`

Values use promtool's expanding notation: `a` one value; `axN` N+1 copies; `a+bxN` / `a-bxN`
N+1 values stepping by b; `_` a step with no sample, `_xN` N such steps; `stale` is read as
`_` (an instant query sees no sample). Extensions: `error` / `errorxN`, a failed query (the
rule's state is held). For `http:` rules a value is a probe result: non-zero is up, 0 is down.

Deploys reset rule states and open watch windows exactly as in the backtest; a baseline rule's
baseline is the median of its own input over baseline_window before the deploy. Everything runs
through backtest.replay_rule, which drives rules.classify and rules.step.

A judge rule (`judge: sequential`) reads counters, not a query: its input series name which
selector they stand for with `series:` (errors, total, buckets with an `le` label,
baseline_errors, baseline_total) and give the COUNTER's value at each step (one step is one
scrape). It counts them since the last deploy exactly as live (signals/counts.counts_at):

          - {rule: http-5xx-judge, series: total, values: 0+50x40}
          - {rule: http-5xx-judge, series: errors, values: 0x20 0+15x20}

Length: a little over 400 lines, because it reads its own file format (every key checked with
FILE:LINE, as config/ does) and runs it; both halves speak the same Case and Series types.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from watcher.actions.backtest import Deploy, RuleReplay, StepRecord, replay_rule, watch_windows
from watcher.base import yamlfile
from watcher.base.durations import parse_duration
from watcher.base.errors import ConfigError, ConfigProblem, SourceError
from watcher.base.format import format_duration, format_number
from watcher.config import values as kinds
from watcher.config.rulefile import load_rule_file, read_rule
from watcher.config.values import FileReader
from watcher.core.counts import Counts, bucket_increases, error_counts
from watcher.core.rules import CounterShare, ProbeResult, Rule, Sample, SignalResult
from watcher.signals.counts import counting_start, counts_at, needs_before
from watcher.signals.prometheus import baseline_from_series

TOP_KEYS = ["rule_files", "rules", "interval", "watch_window", "max_window", "error_limit", "tests"]
TEST_KEYS = ["name", "interval", "deploys", "input_series", "expect"]
PHASES = ("inactive", "pending", "firing")

_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|[-+]?Inf|NaN"
_EXPAND = re.compile(rf"^(?P<a>{_NUMBER})(?:(?P<op>[+-])(?P<b>\d+(?:\.\d*)?(?:[eE][-+]?\d+)?))?x(?P<n>\d+)$")
_SINGLE = re.compile(rf"^(?:{_NUMBER})$")
_BLANKS = re.compile(r"^(?P<what>_|stale|error)(?:x(?P<n>\d+))?$")

MISSING = None
ERROR = "error"


def expand(text: str) -> list[float | str | None]:
    """promtool's expanding notation -> one entry a step: a float, MISSING or ERROR.
    Raises ValueError naming the bad token."""
    out: list[float | str | None] = []
    for token in str(text).split():
        m = _BLANKS.match(token)
        if m:
            what = ERROR if m["what"] == "error" else MISSING
            out.extend([what] * (int(m["n"]) if m["n"] else 1))
            continue
        m = _EXPAND.match(token)
        if m:
            a, n = float(m["a"]), int(m["n"])
            b = float(m["b"] or 0) * (-1 if m["op"] == "-" else 1)
            out.extend(a + i * b for i in range(n + 1))  # promtool: N+1 values
            continue
        if _SINGLE.match(token):
            out.append(float(token))
            continue
        raise ValueError(f"cannot read {token!r}: use a, axN, a+bxN, a-bxN, _, _xN, stale, error")
    return out


@dataclass(frozen=True)
class Series:
    rule: str
    labels: dict[str, str]
    values: list[float | str | None]  # a float, MISSING or ERROR per step (expand)
    key: str | None = None  # a judge rule's selector this series stands for ("errors", "total", ...)


@dataclass(frozen=True)
class Expectation:
    at: float
    line: int | None
    rule: str | None = None
    state: str | None = None
    rollback: str | None = None  # a release, or "none"


@dataclass
class Case:
    name: str
    interval: float
    deploys: list[Deploy]
    series: list[Series]
    expect: list[Expectation]


@dataclass
class CaseResult:
    name: str
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


@dataclass
class TestFile:
    path: Path
    rules: list[Rule]
    watch_window: float
    error_limit: int
    cases: list[Case]


# ---------------------------------------------------------------------------------------------
# Reading the test file: every problem collected, then one ConfigError (as config/load.py does)


def load_test_file(path: str | Path) -> TestFile:
    path = Path(path)
    problems: list[ConfigProblem] = []
    f = FileReader(str(path), problems)
    try:
        doc = yamlfile.load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError([ConfigProblem(str(path), None, "", f"cannot read: {exc.strerror}")]) from None
    except yamlfile.YamlProblem as exc:
        raise ConfigError([ConfigProblem(str(path), exc.line, "", exc.message)]) from None
    if not isinstance(doc, dict):
        raise ConfigError([ConfigProblem(str(path), 1, "", "a test file holds a mapping with `tests:`")])
    f.unknown_keys(doc, TOP_KEYS, "")
    interval = f.read(doc, "interval", _duration, default=15.0)
    watch_window = f.read(doc, "watch_window", _duration, default=1800.0)
    max_window = f.read(doc, "max_window", _duration, default=60.0)
    error_limit = int(doc.get("error_limit") or 4)
    rules = _rules(doc, f, path, max_window, problems)
    names = {r.name for r in rules}
    cases = []
    tests = doc.get("tests")
    if not isinstance(tests, list) or not tests:
        f.problem(f.line_of(doc, "tests"), "tests", "expected a list of test cases")
        tests = []
    judges = {r.name: r.signal for r in rules if isinstance(r.signal, CounterShare)}
    for i, item in enumerate(tests):
        case = _case(item, i, f, interval, names, judges)
        if case is not None:
            cases.append(case)
    if problems:
        raise ConfigError(problems)
    return TestFile(path, rules, watch_window, error_limit, cases)


def _duration(v: Any) -> float:
    return parse_duration(v)


def _rules(doc: dict[str, Any], f: FileReader, path: Path, max_window: float,
           problems: list[ConfigProblem]) -> list[Rule]:
    rules: list[Rule] = []
    for name in doc.get("rule_files") or []:
        try:
            rules.extend(load_rule_file(path.parent / str(name), max_window))
        except ConfigError as exc:
            problems.extend(exc.problems)
    inline = doc.get("rules") or yamlfile.YList()
    if not isinstance(inline, yamlfile.YList):
        f.problem(f.line_of(doc, "rules"), "rules", f"expected a list of rules, got {kinds.show(inline)}")
        inline = yamlfile.YList()
    for i, item in enumerate(inline):
        # config's own rule reader: inline rules are validated exactly like rule files.
        rule = read_rule(item, inline.item_lines[i], i, f, max_window)
        if rule is not None:
            rules.append(rule)
    if not rules and not problems:
        f.problem(f.line_of(doc), "rule_files", "name a rule file (`rule_files:`) or give `rules:`")
    return rules


def _case(item: Any, index: int, f: FileReader, interval: float, names: set[str],
          judges: dict[str, CounterShare]) -> Case | None:
    m = f.mapping(item, None, f"tests[{index}]")
    if m is None:
        return None
    name = str(m.get("name") or f"test {index + 1}")
    p = f"tests[{index}] ({name}): "
    f.unknown_keys(m, TEST_KEYS, p)
    step_s = f.read(m, "interval", _duration, p, interval)
    deploys: list[Deploy] = []
    for j, d in enumerate(m.get("deploys") or []):
        try:
            deploys.append(Deploy(parse_duration(d["at"]), str(d.get("release") or f"deploy-{j + 1}")))
        except (KeyError, TypeError, ValueError):
            f.problem(f.line_of(m, "deploys"), f"{p}deploys[{j}]", "expected {at: DURATION, release: ID}")
    series: list[Series] = []
    for j, s in enumerate(m.get("input_series") or []):
        where = f"{p}input_series[{j}]"
        if not isinstance(s, dict) or s.get("rule") not in names:
            f.problem(f.line_of(s) or f.line_of(m, "input_series"), f"{where}.rule",
                      f"must name a rule of the table ({', '.join(sorted(names))})")
            continue
        raw = s.get("values", "")
        if not isinstance(raw, str):
            # YAML reads `0x40` (promtool: 0 forty-one times) as the number 64, `1_0` as 10:
            # a test that passes by luck. promtool's notation is a string.
            f.problem(f.line_of(s, "values"), f"{where}.values",
                      f"YAML read it as the number {raw!r}, not as a series: quote it (values: '...')")
            continue
        try:
            values = expand(raw)
        except ValueError as exc:
            f.problem(f.line_of(s, "values"), f"{where}.values", str(exc))
            continue
        key = s.get("series")
        judge = judges.get(s["rule"])
        if judge is not None and key not in judge.selector_keys:
            f.problem(f.line_of(s, "series") or f.line_of(s), f"{where}.series",
                      f"a judge rule's input names the counter it stands for: one of "
                      f"{', '.join(judge.selector_keys)}")
            continue
        if judge is None and key is not None:
            f.problem(f.line_of(s, "series"), f"{where}.series", "only applies to the input of `judge:` rules")
            continue
        series.append(Series(s["rule"], {str(k): str(v) for k, v in (s.get("labels") or {}).items()}, values, key))
    expect: list[Expectation] = []
    for j, e in enumerate(m.get("expect") or []):
        where = f"{p}expect[{j}]"
        exp = _expectation(e, f, where, step_s, names)
        if exp is not None:
            expect.append(exp)
    if not expect:
        f.problem(f.line_of(m), f"{p}expect", "a test needs at least one expectation")
    return Case(name, step_s, deploys, series, expect)


def _expectation(e: Any, f: FileReader, where: str, step_s: float, names: set[str]) -> Expectation | None:
    if not isinstance(e, dict) or "eval_time" not in e:
        f.problem(f.line_of(e), where, "expected {eval_time: D, rule: NAME, state: S} or {eval_time: D, rollback: ID|none}")
        return None
    f.unknown_keys(e, ["eval_time", "rule", "state", "rollback"], f"{where}.")
    try:
        at = parse_duration(e["eval_time"])
    except ValueError as exc:
        f.problem(f.line_of(e, "eval_time"), f"{where}.eval_time", str(exc))
        return None
    if abs(at / step_s - round(at / step_s)) > 1e-9:
        f.problem(f.line_of(e, "eval_time"), f"{where}.eval_time", f"is not on a step of {format_duration(step_s)}")
        return None
    if "state" in e:
        if e.get("rule") not in names or e["state"] not in PHASES:
            f.problem(f.line_of(e), where, f"`state` needs a rule of the table and one of {', '.join(PHASES)}")
            return None
        return Expectation(at, f.line_of(e), rule=e["rule"], state=e["state"])
    if "rollback" in e:
        return Expectation(at, f.line_of(e), rollback=str(e["rollback"]))
    f.problem(f.line_of(e), where, "says nothing to check: give `state` (with `rule`) or `rollback`")
    return None


# ---------------------------------------------------------------------------------------------
# Running


def counts_at_step(rule: Rule, series: list[Series], i: int, step_s: float, deploys: list[Deploy]) -> SignalResult:
    """A judge rule's counts at step i: its counters' values counted since the last deploy,
    starting one step (one scrape) after it and its warm-up, as live (signals/counts.py)."""
    signal = rule.signal
    assert isinstance(signal, CounterShare)  # run_case calls this for judge rules only
    t = i * step_s
    if any(i < len(s.values) and s.values[i] == ERROR for s in series):
        return SourceError("error (test input)")
    deployed = max((d.at for d in deploys if d.at <= t), default=None)
    if deployed is None:
        return Counts(0.0, 0.0, note="no deploy to count from")
    start = counting_start(rule, deployed, step_s)
    if t < start:
        return Counts(0.0, 0.0, note="warming up: counting starts after the warm-up and one scrape")
    by_key: dict[str, list[Any]] = {key: [] for key in signal.selector_keys}
    for s in series:
        if s.key is None:  # the reader gives every input of a judge rule its counter
            continue
        points = [(k * step_s, v) for k, v in enumerate(s.values) if isinstance(v, float)]
        by_key[s.key].append((s.labels, points) if s.key == "buckets" else points)
    before: Any = None
    if needs_before(rule):
        begin = deployed - rule.baseline_window
        if signal.buckets:
            before = bucket_increases(by_key["buckets"], begin, deployed)
        else:
            before = error_counts(by_key["errors"], by_key["total"], begin, deployed)
    return counts_at(rule, by_key, start, t, before)


def result_at(rule: Rule, series: list[Series], i: int) -> SignalResult:
    """What the rule's signal returned at step i, built from the test's input."""
    values = [(s, s.values[i]) for s in series if i < len(s.values)]
    if any(v == ERROR for _, v in values):
        return SourceError("error (test input)")
    present = [(s, v) for s, v in values if v is not MISSING]
    if rule.is_probe:
        if not present:
            return []
        up = present[0][1] != 0
        return ProbeResult(up, "up (test input)" if up else "down (test input)", 200 if up else 503)
    return [Sample(s.labels, v) for s, v in present if isinstance(v, float)]  # ERROR was returned above


def run_case(tf: TestFile, case: Case) -> tuple[CaseResult, dict[str, RuleReplay]]:
    longest = max([len(s.values) for s in case.series] + [int(round(e.at / case.interval)) + 1 for e in case.expect])
    times = [i * case.interval for i in range(longest)]
    windows = watch_windows(case.deploys, tf.watch_window)
    replays: dict[str, RuleReplay] = {}
    for rule in tf.rules:
        mine = [s for s in case.series if s.rule == rule.name]

        def at(t: float, rule: Rule = rule, mine: list[Series] = mine) -> SignalResult:
            if rule.is_judge:
                return counts_at_step(rule, mine, int(round(t / case.interval)), case.interval, case.deploys)
            return result_at(rule, mine, int(round(t / case.interval)))

        def baseline_for(d: Deploy, rule: Rule = rule, mine: list[Series] = mine) -> float | None:
            points = [(s.labels, [(i * case.interval, v) for i, v in enumerate(s.values)
                                  if isinstance(v, float) and d.at - rule.baseline_window <= i * case.interval <= d.at])
                      for s in mine]
            return baseline_from_series(points)

        replays[rule.name] = replay_rule(rule, times, at, windows, baseline_for, tf.error_limit)
    result = CaseResult(case.name)
    for exp in case.expect:
        failure = check(exp, replays, case.interval)
        if failure:
            result.failures.append(failure)
    return result, replays


def check(exp: Expectation, replays: dict[str, RuleReplay], step_s: float) -> str:
    """'' when the expectation holds, else a readable diff with the state history around it."""
    i = int(round(exp.at / step_s))
    where = f"line {exp.line}: " if exp.line else ""
    if exp.state is not None and exp.rule is not None:  # the reader gives every `state` its rule
        replay = replays[exp.rule]
        got = replay.steps[i].phase
        if got == exp.state:
            return ""
        return (f"{where}at {format_duration(exp.at)} rule {exp.rule}\n"
                f"  - expected: {exp.state}\n  + got:      {got}\n" + history(replay.steps, i, step_s))
    done = [rb for r in replays.values() for rb in r.rollbacks if rb.at <= exp.at + 1e-9]
    first = min(done, key=lambda rb: rb.at) if done else None
    got = first.release if first else "none"
    if got == exp.rollback:
        return ""
    detail = f" (by {first.rule} at {format_duration(first.at)}: {first.reason})" if first else ""
    rollback_rules = [r for r in replays.values() if r.rule.action == "rollback"]
    text = f"{where}by {format_duration(exp.at)}, rollback\n  - expected: {exp.rollback}\n  + got:      {got}{detail}\n"
    for r in rollback_rules:
        if any(s.phase != "inactive" for s in r.steps[: i + 1]) or r.rollbacks:
            text += f"  {r.rule.name}:\n" + history(r.steps, i, step_s)
    return text


def history(steps: list[StepRecord], i: int, step_s: float, around: int = 4) -> str:
    lo, hi = max(0, i - around), min(len(steps), i + around + 1)
    lines = [f"      {'TIME':>8}  {'VALUE':>10}  {'OUTCOME':<8} STATE"]
    for k in range(lo, hi):
        s = steps[k]
        mark = ">" if k == i else " "
        lines.append(f"    {mark} {format_duration(s.t):>8}  {_value(s.value):>10}  {s.outcome:<8} {s.phase}")
    return "\n".join(lines) + "\n"


def _value(x: float | None) -> str:
    return "-" if x is None else format_number(x) if math.isfinite(x) else str(x)


def run_file(path: str | Path) -> list[CaseResult]:
    tf = load_test_file(path)
    return [run_case(tf, case)[0] for case in tf.cases]


def report(path: str | Path, results: list[CaseResult]) -> str:
    lines = []
    for r in results:
        if r.ok:
            lines.append(f"ok    {r.name}")
            continue
        lines.append(f"FAIL  {r.name}")
        for failure in r.failures:
            lines.extend("      " + line for line in failure.rstrip("\n").splitlines())
    failed = sum(1 for r in results if not r.ok)
    lines.append(f"{path}: {len(results) - failed} passed, {failed} failed")
    return "\n".join(lines)
