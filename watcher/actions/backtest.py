"""Replay the rule table over Prometheus history (`rollback-watcher backtest`, docs/design.md section 9).

    fetch      one range query per rule, chunked under Prometheus' 11,000 points per series,
               rendered with max_window; plus one instant query per step in the first
               max_window after each deploy, where the live `[$window]` is shorter (see below);
               plus, for a rule with a trailing window, one range query over that window
    deploys    journal "deploy" events, a file of "TIME [RELEASE]" lines, or changes of an info
               metric's release label (`auto`)
    replay     per step: reset rule states at a deploy, capture baselines, then the same
               `classify` + `both_windows` + `step` the service runs (rules.py, evaluate.py);
               nothing is re-implemented here
    report     per rule, every pending/firing episode with its peak and margin to the threshold;
               per deploy, "would have rolled back release X at T"

Why the window needs two kinds of query: live, `[$window]` is the time since the deploy,
clamped to [min_window, max_window], and max_window outside a watch window. One range query
cannot vary its range per step, but the window differs from max_window only in the first
max_window seconds after a deploy (a few steps per deploy). Those steps are queried one by one
with the exact live window; every other step comes from the max_window range query, which is
what the live service would have asked. So the rendered query matches live at every step.

What still differs from live, said in the output:
  - steps are on the backtest grid (since + k x step), not the service's tick times;
  - Prometheus answers with the data it holds now (late samples, re-written recording rules);
  - baselines are the median of the rule's value on the backtest grid over baseline_window
    before the deploy (live: a range query at max(scrape_interval, baseline_window/240));
  - the decider's safety checks (pause, cooldown, known-good target, deploy lock) are not
    replayed: "would have rolled back" means a rollback rule fired inside a watch window;
    after that the replay goes on with the history as it happened (no rollback took place);
  - `http:` probes and `host:` signals have no history in Prometheus: they are not replayed;
  - the trailing window's length uses the configured `prometheus.scrape_interval` (live may
    learn another one from Prometheus' targets);
  - a judge rule (`judge: sequential`) reads its counters' raw samples once per deploy and is
    judged at each step on the counts since that deploy (signals/counts.counts_at, the live
    code), for the first 6 hours after it (live slides its start past that).

Length: over 400 lines because it is one tool with the four stages above and its report; the
rule semantics it replays are not here but in rules.py.
"""

from __future__ import annotations

import bisect
import datetime as dt
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from watcher.base.durations import parse_duration
from watcher.base.errors import SourceError, WatcherError
from watcher.base.format import format_duration, format_labels, format_value
from watcher.config.schema import WatcherConfig
from watcher.core.counts import Counts
from watcher.core.evaluate import both_windows, held_before_change
from watcher.core.rules import (
    WINDOW_TOKEN,
    CounterShare,
    Observation,
    Outcome,
    Phase,
    PromQuery,
    Rule,
    RuleState,
    Sample,
    SignalResult,
    Transition,
    classify,
    render_query,
    step,
    trailing_seconds,
    window_seconds,
)
from watcher.signals.counts import MAX_SPAN, CountReader, counting_start, counts_at
from watcher.signals.prometheus import PrometheusSource, Series, baseline_from_series

# Prometheus refuses range queries of more than 11,000 points per series; stay well under.
MAX_POINTS = 10_000


@dataclass(frozen=True)
class Deploy:
    at: float
    release: str


@dataclass(frozen=True)
class WatchWindow:
    deploy: Deploy
    ends: float  # the watch window's end, or the next deploy if that comes first


@dataclass(frozen=True)
class StepRecord:
    """What one rule saw and became at one step: the state history tests and diffs print."""

    t: float
    outcome: str
    value: float | None
    phase: str
    baseline: float | None = None


@dataclass
class Episode:
    """One run of pending (and maybe firing) until the rule went inactive again."""

    start: float
    end: float | None = None  # None: still active at the end of the range
    fired_at: float | None = None
    peak: float | None = None
    peak_at: float | None = None
    threshold: float | None = None
    labels: dict[str, str] = field(default_factory=dict)
    reason: str = ""

    @property
    def margin(self) -> float | None:
        if self.peak is None or self.threshold is None:
            return None
        return self.peak - self.threshold


@dataclass(frozen=True)
class Rollback:
    release: str
    at: float
    rule: str
    reason: str


@dataclass
class RuleReplay:
    rule: Rule
    steps: list[StepRecord] = field(default_factory=list)
    transitions: list[Transition] = field(default_factory=list)
    episodes: list[Episode] = field(default_factory=list)
    rollbacks: list[Rollback] = field(default_factory=list)
    outside_window: list[float] = field(default_factory=list)  # fired outside any watch window
    closest: float | None = None  # the value nearest to breaching over the whole range
    errors: int = 0
    skipped: str = ""  # why the rule was not replayed


@dataclass
class Backtest:
    since: float
    until: float
    step: float
    deploys: list[Deploy]
    rules: list[RuleReplay]
    queries: int = 0
    notes: tuple[str, ...] = ()

    def every_step_failed(self) -> bool:
        """No replayed rule got a single answer (e.g. Prometheus unreachable): the backtest
        says nothing about the rules, least of all "no rollback would have happened"."""
        replayed = [r for r in self.rules if not r.skipped]
        return bool(replayed) and all(r.steps and r.errors == len(r.steps) for r in replayed)

    def rollbacks(self) -> list[Rollback]:
        """One "would have rolled back" per deploy: the earliest rollback rule that fired."""
        first: dict[tuple[str, float | None], Rollback] = {}
        for replay in self.rules:
            for rb in replay.rollbacks:
                key = (rb.release, _deploy_of(self.deploys, rb.at))
                if key not in first or rb.at < first[key].at:
                    first[key] = rb
        return sorted(first.values(), key=lambda r: r.at)


# ---------------------------------------------------------------------------------------------
# Deploys and watch windows


def watch_windows(deploys: list[Deploy], watch_window: float) -> list[WatchWindow]:
    ordered = sorted(deploys, key=lambda d: d.at)
    out = []
    for i, d in enumerate(ordered):
        ends = d.at + watch_window
        if i + 1 < len(ordered):
            ends = min(ends, ordered[i + 1].at)
        out.append(WatchWindow(d, ends))
    return out


def _deploy_of(deploys: list[Deploy], t: float) -> float | None:
    times = sorted(d.at for d in deploys)
    i = bisect.bisect_right(times, t)
    return times[i - 1] if i else None


def live_window(t: float, windows: list[WatchWindow], min_window: float, max_window: float) -> int:
    """The `[$window]` the live service would have used at `t` (rules.window_seconds)."""
    w = _window_at(windows, t)
    if w is None:
        return window_seconds(t, None, False, min_window, max_window)
    return window_seconds(t, w.deploy.at, t < w.ends, min_window, max_window)


def _window_at(windows: list[WatchWindow], t: float) -> WatchWindow | None:
    """The last deploy at or before t (its window may have ended)."""
    starts = [w.deploy.at for w in windows]
    i = bisect.bisect_right(starts, t)
    return windows[i - 1] if i else None


def parse_time(text: str, now: float) -> float:
    """Epoch seconds, an ISO 8601 time (UTC unless it says otherwise), or a duration ago ("7d")."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise WatcherError(f"{text!r} is not a time: use epoch seconds, ISO 8601 or a duration ago like 7d") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


def deploys_from_file(path: Path, now: float) -> list[Deploy]:
    """One deploy a line: `TIME [RELEASE]`; blank lines and # comments are skipped."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise WatcherError(f"cannot read deploys file {path}: {exc.strerror}") from None
    out = []
    for number, line in enumerate(lines, 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        when, _, release = line.partition(" ")
        try:
            at = parse_time(when, now)
        except WatcherError as exc:
            raise WatcherError(f"{path}:{number}: {exc}") from None
        out.append(Deploy(at, release.strip() or f"deploy@{int(at)}"))
    return out


def deploys_from_journal(events: Iterable[dict[str, Any]]) -> list[Deploy]:
    return [Deploy(float(e["time"]), str(e.get("release") or "?")) for e in events
            if e.get("kind") == "deploy" and isinstance(e.get("time"), (int, float))]


def deploys_from_metric(series: list[Series], label: str) -> list[Deploy]:
    """A deploy wherever the info metric's `label` changes value. At each time the newest
    release seen wins (old and new overlap while both are scraped); the first one seen is the
    release already running at the start, not a deploy."""
    first_seen: dict[str, float] = {}
    for labels, points in series:
        release = labels.get(label)
        if release is None or not points:
            continue
        first_seen[release] = min(first_seen.get(release, math.inf), points[0][0])
    ordered = sorted(first_seen.items(), key=lambda kv: kv[1])
    return [Deploy(t, release) for release, t in ordered[1:]]


# ---------------------------------------------------------------------------------------------
# Fetching


def grid(since: float, until: float, step_s: float) -> list[float]:
    n = int(math.floor((until - since) / step_s + 1e-9))
    return [round(since + k * step_s, 3) for k in range(n + 1)]


def chunks(times: list[float], max_points: int = MAX_POINTS) -> list[tuple[float, float]]:
    """(start, end) pairs of at most max_points grid times each."""
    return [(times[i], times[min(i + max_points, len(times)) - 1]) for i in range(0, len(times), max_points)]


def fetch_range(source: PrometheusSource, expr: str, times: list[float],
                step_s: float) -> tuple[dict[float, list[Sample] | SourceError], list[Series], int]:
    """Per grid time, the samples Prometheus returns (as an instant query at that time would),
    plus the raw series for baselines, and the number of queries made. A failed chunk turns
    its steps into errors: the state machine holds state on them, as live."""
    by_time: dict[float, list[Sample] | SourceError] = {t: [] for t in times}
    raw: list[Series] = []
    queries = 0
    for first, (start, end) in zip(range(0, len(times), MAX_POINTS), chunks(times), strict=True):
        queries += 1
        try:
            series = source.query_range(expr, start, end, step_s)
        except SourceError as exc:
            for t in times[first:first + MAX_POINTS]:
                by_time[t] = exc
            continue
        raw.extend(series)
        for labels, points in series:
            for t, value in points:
                # Map by step index, not by timestamp: the client and Prometheus may round
                # the start time differently (sub-millisecond parts of `since`).
                k = first + round((t - start) / step_s)
                samples = by_time[times[k]] if 0 <= k < len(times) and k - first < MAX_POINTS else None
                if isinstance(samples, list):  # a step of this chunk: never one of a failed chunk
                    samples.append(Sample(labels, value))
    return by_time, raw, queries


def baseline_at(raw: list[Series], deploy_at: float, baseline_window: float) -> float | None:
    """The service's baseline (median over baseline_window ending at the deploy) from series
    already fetched, through the same signals.baseline_from_series."""
    cut = [(labels, [(t, v) for t, v in points if deploy_at - baseline_window <= t <= deploy_at])
           for labels, points in raw]
    return baseline_from_series(cut)


# ---------------------------------------------------------------------------------------------
# The replay: the service's per-tick work for one rule, at every grid time


def replay_rule(
    rule: Rule,
    times: list[float],
    result_at: Callable[[float], SignalResult],
    windows: list[WatchWindow],
    baseline_for: Callable[[Deploy], float | None],
    error_limit: int = 4,
    trailing_at: Callable[[float], tuple[SignalResult, int] | None] = lambda t: None,
    window_at: Callable[[float], int] | None = None,
) -> RuleReplay:
    """Drive one rule through rules.classify + rules.step at each time, as Watcher.tick does:
    a deploy resets the rule's state and baseline (Watcher.on_deploy), then the tick steps.
    `trailing_at(t)` is the trailing window's result and length at `t` where live reads one
    (evaluate.both_windows combines them, as the tick does), else None. `window_at(t)` is the
    `[$window]` live used at `t`: a breach is held while it reaches before the deploy
    (evaluate.held_before_change), as live."""
    out = RuleReplay(rule)
    state = RuleState()
    current: WatchWindow | None = None
    baseline: float | None = None
    episode: Episode | None = None
    for t in times:
        w = _window_at(windows, t)
        if w is not current:
            current = w
            state = RuleState()
            baseline = baseline_for(w.deploy) if (w is not None and rule.uses_baseline) else None
            if episode is not None:
                episode.end = w.deploy.at if w is not None else t
                episode = None
        obs = classify(rule, result_at(t), baseline)
        short = trailing_at(t)
        window_s = window_at(t) if window_at is not None and current is not None else 0
        if short is not None:
            # The gate's bound as live: held for longer than `[$window]` spans, it fires.
            obs = both_windows(obs, classify(rule, short[0], baseline), short[1], state.gated_for(t), window_s)
        if window_at is not None and current is not None:
            obs = held_before_change(rule, obs, t, current.deploy.at, window_s)
        state, transitions = step(rule, state, obs, t, error_limit)
        out.transitions.extend(transitions)
        out.steps.append(StepRecord(t, obs.outcome.value, obs.value, state.phase.value, baseline))
        if obs.outcome is Outcome.ERROR:
            out.errors += 1
        _track_closest(out, rule, obs, baseline)
        episode = _track_episode(out, rule, episode, state, obs, transitions, baseline, t)
        for tr in transitions:
            if tr.kind == "phase" and tr.after is Phase.FIRING:
                if current is not None and t < current.ends:
                    if rule.action == "rollback":
                        out.rollbacks.append(Rollback(current.deploy.release, t, rule.name, tr.reason))
                elif rule.action == "rollback":
                    out.outside_window.append(t)
    return out


def threshold(rule: Rule, baseline: float | None) -> float | None:
    """The single number a value must cross to breach (the strictest of the rule's bounds)."""
    if rule.below is not None and rule.above is None and rule.above_baseline is None:
        return rule.below
    bounds = [b for b in (rule.above, rule.floor) if b is not None]
    if rule.above_baseline is not None:
        if baseline is None or not math.isfinite(baseline):
            return None
        bounds.append(rule.above_baseline * baseline)
    return max(bounds) if bounds else None


def _nearer(rule: Rule, a: float, b: float | None) -> bool:
    below_rule = rule.below is not None and rule.above is None and rule.above_baseline is None
    return b is None or (a < b if below_rule else a > b)


def _track_closest(out: RuleReplay, rule: Rule, obs: Observation, baseline: float | None) -> None:
    if obs.value is not None and math.isfinite(obs.value) and _nearer(rule, obs.value, out.closest):
        out.closest = obs.value


def _track_episode(out: RuleReplay, rule: Rule, episode: Episode | None, state: RuleState, obs: Observation,
                   transitions: list[Transition], baseline: float | None, t: float) -> Episode | None:
    if episode is None and state.phase is not Phase.INACTIVE:
        reason = next((tr.reason for tr in transitions if tr.kind == "phase"), "")
        episode = Episode(start=state.active_since or t, reason=reason)
        out.episodes.append(episode)
    if episode is None:
        return None
    if obs.outcome is Outcome.BREACH and obs.value is not None and _nearer(rule, obs.value, episode.peak):
        episode.peak, episode.peak_at, episode.labels = obs.value, t, dict(obs.labels)
        episode.threshold = threshold(rule, baseline)
    if state.phase is Phase.FIRING and episode.fired_at is None:
        episode.fired_at = state.fired_at
    if state.phase is Phase.INACTIVE:
        episode.end = t
        return None
    return episode


# ---------------------------------------------------------------------------------------------
# The whole backtest


def replayable(rule: Rule) -> str:
    """'' when the rule can be replayed from Prometheus, else why not."""
    if rule.reads_prometheus:
        return ""
    if rule.is_probe:
        return "http probe: no history in Prometheus, not replayed"
    return "host signal: read from this host, no history in Prometheus, not replayed"


def run_backtest(cfg: WatcherConfig, source: PrometheusSource, since: float, until: float, step_s: float, deploys: list[Deploy],
                 rule_names: list[str] | None = None) -> Backtest:
    times = grid(since, until, step_s)
    windows = watch_windows([d for d in deploys if d.at <= until], cfg.watch_window)
    rules = [r for r in cfg.rules if not rule_names or r.name in rule_names]
    if rule_names:
        unknown = sorted(set(rule_names) - {r.name for r in rules})
        if unknown:
            raise WatcherError(f"no rule named {', '.join(unknown)} (see `rollback-watcher check`)")
    result = Backtest(since, until, step_s, sorted(deploys, key=lambda d: d.at), [])
    for rule in rules:
        why = replayable(rule)
        if why:
            result.rules.append(RuleReplay(rule, skipped=why))
            continue
        backtest = _backtest_judge if rule.is_judge else _backtest_rule
        replay, queries = backtest(cfg, source, rule, times, step_s, windows)
        result.queries += queries
        result.rules.append(replay)
    return result


def _backtest_judge(cfg: WatcherConfig, source: PrometheusSource, rule: Rule, times: list[float], step_s: float,
                    windows: list[WatchWindow]) -> tuple[RuleReplay, int]:
    """A judge rule over history: for each deploy, its counters' raw samples read once (from
    the start of counting to the next deploy, at most MAX_SPAN), judged at every step."""
    assert isinstance(rule.signal, CounterShare)  # run_backtest sends judge rules only here
    reader = CountReader(source)
    deploys = sorted(w.deploy.at for w in windows)
    results: dict[float, SignalResult] = {}
    queries = 0
    for i, deployed in enumerate(deploys):
        end = min(deploys[i + 1] if i + 1 < len(deploys) else math.inf, times[-1] + step_s / 2, deployed + MAX_SPAN)
        mine = [t for t in times if deployed <= t < end]
        if not mine:
            continue
        start = counting_start(rule, deployed, cfg.prometheus.scrape_interval)
        try:
            series = reader.fetch(rule, start, max(mine)) if max(mine) >= start else {}
            before = reader.before(rule, deployed)
        except SourceError as exc:
            results.update({t: exc for t in mine})
            continue
        finally:
            queries += len(rule.signal.selectors)
        for t in mine:
            results[t] = (counts_at(rule, series, start, t, before) if t >= start
                          else Counts(0.0, 0.0, note="warming up: counting starts after the warm-up and one scrape"))

    def result_at(t: float) -> SignalResult:
        return results.get(t, Counts(0.0, 0.0, note="no deploy to count from (or more than 6h after it)"))

    return replay_rule(rule, times, result_at, windows, lambda d: None, cfg.error_limit), queries


def _backtest_rule(cfg: WatcherConfig, source: PrometheusSource, rule: Rule, times: list[float], step_s: float,
                   windows: list[WatchWindow]) -> tuple[RuleReplay, int]:
    assert isinstance(rule.signal, PromQuery)  # run_backtest replays PromQL rules only (replayable)
    query = rule.signal.query
    fetch_times = times
    if rule.uses_baseline and windows:
        # Baselines need data from before the first deploy in range: fetch that much earlier.
        earliest = min(w.deploy.at for w in windows) - rule.baseline_window
        if earliest < times[0]:
            extra = math.ceil((times[0] - earliest) / step_s)
            fetch_times = grid(times[0] - extra * step_s, times[-1], step_s)
    by_time, raw, queries = fetch_range(source, render_query(query, int(cfg.max_window)), fetch_times, step_s)

    # Steps where the live window was shorter than max_window: ask with the exact window.
    exact: dict[float, SignalResult] = {}
    if WINDOW_TOKEN in query:
        for t in times:
            w = live_window(t, windows, cfg.min_window, cfg.max_window)
            if w < int(math.ceil(cfg.max_window)):
                queries += 1
                try:
                    exact[t] = source.query(render_query(query, w), at=t)
                except SourceError as exc:
                    exact[t] = exc

    def result_at(t: float) -> SignalResult:
        return exact[t] if t in exact else by_time.get(t, [])

    # The trailing window has one length wherever live reads it: one range query holds it.
    trailing_s = trailing_seconds(rule, cfg.prometheus.scrape_interval, int(math.ceil(cfg.max_window)), cfg.interval)
    short_by_time: dict[float, list[Sample] | SourceError] = {}
    if trailing_s is not None:
        short_by_time, _, more = fetch_range(source, render_query(query, trailing_s), times, step_s)
        queries += more
    trailing_at = trailing_reads(rule, cfg, windows, lambda t: short_by_time.get(t, []))

    def baseline_for(d: Deploy) -> float | None:
        return baseline_at(raw, d.at, rule.baseline_window)

    return replay_rule(rule, times, result_at, windows, baseline_for, cfg.error_limit, trailing_at,
                       lambda t: live_window(t, windows, cfg.min_window, cfg.max_window)), queries


def trailing_reads(rule: Rule, cfg: WatcherConfig, windows: list[WatchWindow],
                   read: Callable[[float], SignalResult]) -> Callable[[float], tuple[SignalResult, int] | None]:
    """`trailing_at` for replay_rule: at each step where the live tick reads the rule's trailing
    window (rules.trailing_seconds: a `[$window]` rule, the window shorter than that step's
    `[$window]`), what `read(t)` returned for it, with its length; elsewhere None."""
    scrape = cfg.prometheus.scrape_interval

    def at(t: float) -> tuple[SignalResult, int] | None:
        seconds = trailing_seconds(rule, scrape, live_window(t, windows, cfg.min_window, cfg.max_window), cfg.interval)
        return None if seconds is None else (read(t), seconds)

    return at


def auto_deploys(source: PrometheusSource, metric: str, label: str, since: float, until: float, step_s: float) -> list[Deploy]:
    """Deploys from an info metric such as app_build_info{release="r42"}."""
    expr = f"count by ({label}) ({metric})"
    times = grid(since, until, step_s)
    series: list[Series] = []
    for start, end in chunks(times):
        series.extend(source.query_range(expr, start, end, step_s))
    merged: dict[str, list[tuple[float, float]]] = {}
    for labels, points in series:
        merged.setdefault(labels.get(label, ""), []).extend(points)
    return deploys_from_metric([({label: k}, sorted(v)) for k, v in merged.items() if k], label)


# ---------------------------------------------------------------------------------------------
# Output


NOTES = (
    "steps are on the backtest grid, not the service's tick times",
    "[$window] is rendered as live: max_window, and the exact shorter window in the first max_window after a deploy",
    "the decider's safety checks (pause, cooldown, known-good target) are not replayed",
)


def to_json(bt: Backtest) -> dict[str, Any]:
    def ep(e: Episode) -> dict[str, Any]:
        return {"start": e.start, "end": e.end, "fired_at": e.fired_at, "peak": _num(e.peak), "peak_at": e.peak_at,
                "threshold": _num(e.threshold), "margin": _num(e.margin), "labels": e.labels, "reason": e.reason}

    return {
        "since": bt.since, "until": bt.until, "step": bt.step, "queries": bt.queries,
        "deploys": [{"at": d.at, "release": d.release} for d in bt.deploys],
        "rollbacks": [{"release": r.release, "at": r.at, "rule": r.rule, "reason": r.reason} for r in bt.rollbacks()],
        "rules": [
            {"rule": r.rule.name, "action": r.rule.action, "replayed": not r.skipped, "skipped": r.skipped,
             "episodes": [ep(e) for e in r.episodes], "fired_outside_window": r.outside_window,
             "closest": _num(r.closest), "errors": r.errors}
            for r in bt.rules
        ],
        "notes": list(NOTES),
        "every_step_failed": bt.every_step_failed(),
    }


def _num(x: float | None) -> float | str | None:
    return x if x is None or math.isfinite(x) else str(x)


def render_text(bt: Backtest, when: Callable[[float | None], str]) -> str:
    lines = [f"backtest {when(bt.since)} .. {when(bt.until)}, step {format_duration(bt.step)}, "
             f"{len(bt.deploys)} deploy(s), {bt.queries} queries"]
    for r in bt.rules:
        unit = r.rule.value_unit
        lines.append("")
        if r.skipped:
            lines.append(f"{r.rule.name} ({r.rule.action}): {r.skipped}")
            continue
        head = f"{r.rule.name} ({r.rule.action}, {r.rule.condition_text()})"
        if not r.episodes:
            closest = format_value(r.closest, unit) if r.closest is not None else "no data"
            lines.append(f"{head}: never pending; closest value {closest}")
        else:
            lines.append(f"{head}: {len(r.episodes)} episode(s)")
            lines.append(f"  {'PENDING FROM':<21} {'FIRED AT':<21} {'UNTIL':<21} {'PEAK':>10} {'MARGIN':>10}  SERIES")
            for e in r.episodes:
                margin = "-" if e.margin is None else ("+" if e.margin >= 0 else "") + format_value(e.margin, unit)
                lines.append(f"  {when(e.start):<21} {when(e.fired_at):<21} {when(e.end) if e.end else 'end of range':<21} "
                             f"{format_value(e.peak, unit):>10} {margin:>10}  {format_labels(e.labels) if e.labels else ''}")
        if r.errors:
            lines.append(f"  {r.errors} step(s) could not be queried (state held, as live)")
        for t in r.outside_window:
            lines.append(f"  fired outside any watch window at {when(t)}: would notify, not roll back")
    lines.append("")
    rollbacks = bt.rollbacks()
    for rb in rollbacks:
        lines.append(f"would have rolled back release {rb.release} at {when(rb.at)} ({rb.rule}: {rb.reason})")
    if bt.every_step_failed():
        lines.append("FAILED: every query of every step failed; this backtest shows nothing about the rules")
    elif not rollbacks:
        lines.append("no rollback would have happened" + ("" if bt.deploys else " (no deploys known: no watch windows)"))
    lines.append("note: " + "; ".join(NOTES))
    return "\n".join(lines)
