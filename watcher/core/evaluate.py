"""Evaluating the rule table once: read every signal at once (signals.py), classify each
result and step each rule's state machine (rules.py). The tick, `eval`, `check --online` and
`explain` all call `evaluate`, so what a human is shown is what the service decides on.

Nothing here journals, notifies or saves: the caller decides what to do with the Evaluation
(the service persists the new rule states and tells about the transitions; the CLI prints).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from watcher.core.rules import (
    WINDOW_TOKEN,
    Finding,
    HttpCheck,
    Observation,
    Outcome,
    Phase,
    ProbeResult,
    PromQuery,
    Rule,
    RuleState,
    SignalResult,
    Transition,
    classify,
    finding,
    render_query,
    step,
    trailing_seconds,
    window_seconds,
)


class SignalReader(Protocol):
    """What evaluate reads the signals through (signals.SignalReader)."""

    def read_all(self, rules: list[Rule], now: float, window_s: int, at: float | None = None,
                 since: float | None = None) -> dict[str, tuple[SignalResult, float]]: ...

    def probe_bounded(self, check: HttpCheck) -> ProbeResult: ...

    def keep_host_counters(self, history: dict[str, list[Any]]) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class RuleEvaluation:
    rule: Rule
    result: SignalResult  # as the reader returned it
    seconds: float  # how long the read took
    observation: Observation
    before: RuleState
    after: RuleState
    transitions: tuple[Transition, ...]
    baseline: float | None
    held: bool = False  # not read this tick (evaluate's `held`): its state did not move

    def row(self) -> dict[str, Any]:
        """One line of `eval` and of the tick's report."""
        obs, rule = self.observation, self.rule
        return {
            "rule": rule.name,
            "action": rule.action,
            "value": obs.value,
            "unit": rule.value_unit,
            "condition": rule.condition_text(self.baseline),  # in the rule's unit, as messages write it
            "threshold": rule.condition_text(self.baseline, raw=True),  # as the rule file writes it
            "outcome": obs.outcome.value,
            "phase": self.after.phase.value,
            "detail": obs.detail,
            "labels": obs.labels,
            "baseline": self.baseline,
            "seconds": round(self.seconds, 4),
            "since": self.after.breach_since,
            # A judge rule's evidence (core/judge.Judgement.facts), else None.
            "evidence": obs.judgement.facts() if obs.judgement is not None else None,
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
    def rows(self) -> list[dict[str, Any]]:
        return [e.row() for e in self.rules]


@dataclass(frozen=True)
class Blindness:
    """What one evaluation changes about the watcher's sight, as one episode: `started` names the
    rules that went blind when no rule was blind before (one "blind" message), `ended` the rules
    that were blind in the episode once none is blind any more (one "recovered" message), and
    `episode` the rules blind so far in an episode still open. Rules go blind a tick or two apart
    when one cause hits them all (Prometheus stops in the middle of a tick: some reads were
    answered, the rest failed): that is one episode, not a message per tick."""

    started: tuple[str, ...] = ()
    ended: tuple[str, ...] = ()
    episode: frozenset[str] = frozenset()


def blindness(evaluation: Evaluation, episode: frozenset[str] = frozenset()) -> Blindness:
    """The sight news of `evaluation`, given the rules blind earlier in the open episode."""
    order = [e.rule.name for e in evaluation.rules]
    before = {e.rule.name for e in evaluation.rules if e.before.blind} | set(episode & set(order))
    after = {e.rule.name for e in evaluation.rules if e.after.blind}
    seen = set(episode) | before | after
    if after:
        started = tuple(n for n in order if n in after) if not before else ()
        return Blindness(started=started, episode=frozenset(seen))
    if seen:
        return Blindness(ended=tuple(n for n in order if n in seen) + tuple(sorted(seen - set(order))))
    return Blindness()


class WindowState(Protocol):
    """What watch_window reads of the state (store.state.State)."""

    @property
    def changed_at(self) -> float | None: ...

    @property
    def deployed_at(self) -> float | None: ...

    def in_watch_window(self, now: float) -> bool: ...


class WindowLimits(Protocol):
    """What watch_window reads of the configuration (config.schema.WatcherConfig)."""

    @property
    def min_window(self) -> float: ...

    @property
    def max_window(self) -> float: ...


def watch_window(now: float, state: WindowState, config: WindowLimits) -> int:
    """`[$window]` for this moment: the time since `current` last changed (a deploy or a
    rollback's switch), clamped to [min_window, max_window] (rules.window_seconds).

    While a rollback is being confirmed, the restored release is judged on its own samples:
    the time since the switch, NOT clamped up to `min_window` (the clamp would read the bad
    release's errors back into the range, and the rule would go pending on the known-good
    release). Until `min_window` has passed, the `[$window]` rules are not read at all
    (service/confirm.too_early holds them)."""
    confirming = getattr(state, "confirming", None)
    if confirming is not None:
        # Rounded down (after a deploy it is rounded up): a range one second too long reached
        # the scrape before the switch, and with it the bad release's last errors (measured:
        # 50% on the restored release 3 s after the switch, with no request served by it).
        since_switch = max(0.0, now - confirming["switched_at"])
        return max(1, int(math.floor(min(since_switch, config.max_window))))
    since = state.changed_at if state.changed_at is not None else state.deployed_at
    in_window = since is not None and (state.changed_at is not None or state.in_watch_window(now))
    return window_seconds(now, since, in_window, config.min_window, config.max_window)


def evaluate(
    rules: Sequence[Rule],
    reader: SignalReader,
    now: float,
    window_s: int,
    states: Mapping[str, RuleState],
    baselines: Mapping[str, float | None],
    error_limit: int,
    scrape_interval: float = 15.0,
    at: float | None = None,
    since: float | None = None,
    held: Mapping[str, str] | None = None,
    interval: float = 0.0,
    settle: float = 0.0,
) -> Evaluation:
    """Read every rule's signal at `now` and step each rule from its state in `states`.

    `now` is the watcher's steady time (durations); `at` the wall time PromQL is asked at
    (default `now`); `since` when `current` last changed (host counters count from there).
    A `[$window]` rule is also read over its trailing window (rules.trailing_seconds), which
    gates the moment it fires (both_windows), and fires only once its range is the current
    release's alone (held_before_change); an instant query's breach is held until `settle`
    seconds after `since` (a deploy seen late: its newest sample may predate the change). The
    rules named in `held` are not read this tick:
    their state is kept as it is, their observation is "no data" with the reason given."""
    held = held or {}
    rules = list(rules)
    read = [r for r in rules if r.name not in held]
    trailing = {r.name: t for r in read if (t := trailing_seconds(r, scrape_interval, window_s, interval)) is not None}
    extra = [_trailing_rule(r, trailing[r.name]) for r in read if r.name in trailing]
    results = reader.read_all(read + extra, now, window_s, at=at, since=since) if read else {}
    out = []
    for rule in rules:
        baseline = baselines.get(rule.name)
        before = states.get(rule.name, RuleState())
        if rule.name in held:
            obs = Observation(Outcome.NO_DATA, detail=held[rule.name])
            out.append(RuleEvaluation(rule, [], 0.0, obs, before, before, (), baseline, held=True))
            continue
        result, seconds = results[rule.name]
        obs = classify(rule, result, baseline)
        if rule.name in trailing:
            short, short_seconds = results[_trailing_name(rule)]
            obs = both_windows(obs, classify(rule, short, baseline), trailing[rule.name], before.gated_for(now),
                               window_s)
            seconds = max(seconds, short_seconds)
        obs = held_before_change(rule, obs, now, since, window_s, settle)
        after, transitions = step(rule, before, obs, now, error_limit)
        out.append(RuleEvaluation(rule, result, seconds, obs, before, after, tuple(transitions), baseline))
    return Evaluation(now, window_s, tuple(out))


def held_before_change(rule: Rule, obs: Observation, now: float, since: float | None, window_s: int,
                       settle: float = 0.0) -> Observation:
    """A `[$window]` breach while the range still reaches back before `since` (the deploy, or a
    rollback's switch) is held: `for` runs, but it fires only once the range holds the current
    release's samples alone. Clamped to min_window (three scrapes) just after a deploy, the
    range reads the previous release's last seconds: a `for: 0` rule rolled a healthy fix back
    on the errors of the release it replaced.

    The range since the change is rounded up to whole seconds (rules.window_seconds: it never
    misses the deploy's scrape), so it is compared rounded up too: compared exactly, a tick
    that lands a fraction of a second off the change's own tick (the daemon's ticks, whose `now`
    is seldom a whole number of seconds after the change) found the range "still before the
    change" until max_window clamped it, and a bad release was held pending past its window.

    A rule without a trailing window (`trailing: off`: an event counter such as
    `increase(node_vmstat_oom_kill[$window]) > 0`) is never held: its range must reach back
    before the change to see an event right after it (the counter's value before the kill is
    the sample before the deploy), and held, an OOM kill a second after a deploy was read as an
    increase of 0 once the range began after the change: the bad release was never rolled back.

    An instant query (`up < 1`) is held until `settle` seconds (a scrape interval) after a deploy
    the tick saw late (State.deploy_seen_late): the deploy happened at some moment since the
    tick before, and the newest sample may be a scrape of its restart (sim seed 15000520: a
    lock held only between two ticks; `up` read the restart's 0 and `for: 0` rolled the healthy
    release back). Not after a first start (nothing is known of when that release started) or
    a rollback's switch (the watcher made it, and its probes passed); a `judge:` rule counts
    requests from the change on and is no instant query."""
    if obs.outcome is not Outcome.BREACH or obs.held or since is None:
        return obs
    if settle > 0 and now - since < settle and isinstance(rule.signal, PromQuery) and rule.signal.is_instant:
        return replace(obs, held=True, detail=f"its newest sample may predate the deploy {now - since:.0f}s ago "
                                              f"(a scrape every {settle:g}s): fires once it cannot")
    if math.ceil(now - since) >= window_s:
        return obs
    if not isinstance(rule.signal, PromQuery) or WINDOW_TOKEN not in rule.signal.query or rule.trailing == 0:
        return obs
    return replace(obs, held=True, detail=f"the last {window_s}s still hold what ran before the change "
                                          f"{now - since:.0f}s ago: fires once they do not")


def _trailing_name(rule: Rule) -> str:
    return f"{rule.name}[trailing]"  # `[` is not allowed in rule names: no clash


def _trailing_rule(rule: Rule, seconds: int) -> Rule:
    assert isinstance(rule.signal, PromQuery)  # trailing_seconds gives a window to PromQL rules only
    return replace(rule, name=_trailing_name(rule), signal=PromQuery(render_query(rule.signal.query, seconds)))


def both_windows(long: Observation, short: Observation, trailing_s: int, gated_for: float = 0.0,
                 window_s: int = 0) -> Observation:
    """The multiwindow condition (design section 4): `for` runs on the deploy window; the
    trailing window gates the moment of firing. A breach on `[$window]` is a breach (pending,
    `for` counting), HELD while the trailing window is healthy: the rule fires only on a tick
    where both breach. So a warm-up burst that ended (the deploy window still above, the last
    seconds clean) never fires, and a release failing 30% / 0% every 5 s, whose trailing window
    is clean every other period, is not reset by it either (it was never rolled back when the
    trailing window reset `for`). An error on either is an error (never a breach); a trailing
    window with no data (a late scrape, a NaN of no requests) holds nothing back. The value is
    the `[$window]` one, with the trailing value in the detail when it held the firing.

    The gate ends once it has held for longer than `[$window]` spans (`gated_for`, since
    RuleState.gated_since, against `window_s`): `[$window]` then holds only seconds in which
    every trailing read was healthy, and still breaches. A finished warm-up burst cannot do
    that (once the trailing window reads clean, what is left of the burst is less than the
    threshold's share of the trailing window, smaller still of `[$window]`); a flap whose
    period is the tick interval can: every tick reads the same phase, and a trailing window
    of few scrapes never held the "on" half (sim seed 20002129: ticks every 15 s, scrapes every
    5 s, 50% errors 5 s in 15, `[$window]` at 17% and the trailing window at 1% on every tick,
    pending until its watch window ended, never rolled back)."""
    if short.outcome is Outcome.ERROR:
        return short
    if long.outcome is not Outcome.BREACH or not short.healthy:
        return long
    if window_s > 0 and gated_for > window_s:
        return replace(long, gated=True,
                       detail=f"breached over the last {window_s}s while every trailing {trailing_s}s read "
                              f"healthy for {gated_for:.0f}s, longer than {window_s}s: fires")
    return replace(long, held=True, gated=True,
                   detail=f"breaches since the deploy but not over the last {trailing_s}s ({short.value:.4g}): "
                          "fires when both do")
