"""Evaluating the rule table once: read every signal at once (signals.py), classify each
result and step each rule's state machine (rules.py). The tick, `eval`, `check --online` and
`explain` all call `evaluate`, so what a human is shown is what the service decides on.

Nothing here journals, notifies or saves: the caller decides what to do with the Evaluation
(the service persists the new rule states and tells about the transitions; the CLI prints).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Iterator, Mapping, Protocol, Sequence

from watcher.errors import SourceError
from watcher.rules import (
    Finding,
    Observation,
    Phase,
    PromQuery,
    Rule,
    RuleState,
    Transition,
    classify,
    finding,
    render_query,
    step,
    window_seconds,
)

log = logging.getLogger(__name__)


class SignalReader(Protocol):
    """What evaluate reads the signals through (signals.SignalReader)."""

    def read_all(self, rules: list[Rule], now: float, window_s: int) -> dict[str, tuple[object, float]]: ...

    def probe_bounded(self, check): ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class RuleEvaluation:
    rule: Rule
    result: object  # list[Sample] | ProbeResult | SourceError, as the reader returned it
    seconds: float  # how long the read took
    observation: Observation
    before: RuleState
    after: RuleState
    transitions: tuple[Transition, ...]
    baseline: float | None

    def row(self) -> dict:
        """One line of `eval` and of the tick's report."""
        obs, rule = self.observation, self.rule
        return {
            "rule": rule.name,
            "action": rule.action,
            "value": obs.value,
            "unit": rule.value_unit,
            "condition": rule.condition_text(self.baseline),
            "outcome": obs.outcome.value,
            "phase": self.after.phase.value,
            "detail": obs.detail,
            "labels": obs.labels,
            "baseline": self.baseline,
            "seconds": round(self.seconds, 4),
            "since": self.after.breach_since,
        }


@dataclass(frozen=True)
class Evaluation:
    now: float
    window_s: int
    rules: tuple[RuleEvaluation, ...] = field(default_factory=tuple)

    @property
    def states(self) -> dict[str, RuleState]:
        return {e.rule.name: e.after for e in self.rules}

    @property
    def firing(self) -> list[Finding]:
        return [finding(e.rule, e.after, e.baseline) for e in self.rules if e.after.phase is Phase.FIRING]

    @property
    def rows(self) -> list[dict]:
        return [e.row() for e in self.rules]


def watch_window(now: float, deployed_at: float | None, in_watch_window: bool, config) -> int:
    """`[$window]` for this moment: the time since the deploy, clamped (rules.window_seconds)."""
    return window_seconds(now, deployed_at, in_watch_window, config.min_window, config.max_window)


def evaluate(
    rules: Sequence[Rule],
    reader: SignalReader,
    now: float,
    window_s: int,
    states: Mapping[str, RuleState],
    baselines: Mapping[str, float | None],
    error_limit: int,
) -> Evaluation:
    """Read every rule's signal at `now` and step each rule from its state in `states`."""
    results = reader.read_all(list(rules), now, window_s)
    out = []
    for rule in rules:
        result, seconds = results[rule.name]
        baseline = baselines.get(rule.name)
        obs = classify(rule, result, baseline)
        before = states.get(rule.name, RuleState())
        after, transitions = step(rule, before, obs, now, error_limit)
        out.append(RuleEvaluation(rule, result, seconds, obs, before, after, tuple(transitions), baseline))
    return Evaluation(now, window_s, tuple(out))


def capture_baselines(config, source, state, reported: set[tuple]) -> Iterator[dict]:
    """The median of each baseline rule's query over `baseline_window` before the deploy, kept in
    `state.baselines` once per deploy; retried on later ticks while Prometheus cannot answer.
    Yields the journal events (`kind` and fields); a failure is yielded once per deploy and
    rule (`reported` remembers), since the rule cannot fire meanwhile."""
    if state.deployed_at is None or source is None:
        return
    for rule in config.rules:
        if not rule.uses_baseline or rule.name in state.baselines or not isinstance(rule.signal, PromQuery):
            continue
        query = render_query(rule.signal.query, int(config.max_window))
        step_s = max(config.prometheus.scrape_interval, rule.baseline_window / 240)
        try:
            value = source.baseline(query, state.deployed_at, rule.baseline_window, step_s)
        except SourceError as exc:
            key = (state.current, state.deployed_at, rule.name)
            if key not in reported:
                reported.add(key)
                log.error("baseline not captured, rule cannot fire until it is rule=%s reason=%s", rule.name, exc)
                yield {"kind": "baseline_error", "rule": rule.name, "release": state.current, "reason": str(exc)}
            continue
        state.baselines[rule.name] = value
        yield {"kind": "baseline", "rule": rule.name, "release": state.current, "value": value,
               "window": rule.baseline_window, "end": state.deployed_at}
