"""`rollback-watcher explain RULE`: why a rule is in the state it is in, with the numbers.

    query        rendered with the window the service uses now
    series       each series' value now, and whether it breaches
    condition    the threshold, or the baseline in use and where it came from (the journal's
                 "baseline" event of this deploy)
    progress     the `for` / `failures` progress from the saved state ("pending 1m10s of 2m")
    evidence     a judge rule's evidence over time since the deploy: requests, share, its
                 confidence interval and the e-value against the one that fires, at 12 moments
    transitions  the rule's last transitions from the journal

Reads only: the saved state is not stepped or written.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from watcher.base.errors import SourceError, WatcherError
from watcher.base.format import format_duration, format_labels, format_time, format_value
from watcher.config.schema import WatcherConfig
from watcher.core.evaluate import SignalReader, evaluate, watch_window
from watcher.core.rules import (
    CounterShare,
    HttpCheck,
    Phase,
    PromQuery,
    Rule,
    RuleState,
    Sample,
    breaches,
    classify,
    render_query,
    trailing_seconds,
)
from watcher.signals.counts import CountReader
from watcher.signals.promtime import effective_scrape_interval
from watcher.signals.reader import build_reader
from watcher.store.state import StateStore


@dataclass
class Explanation:
    rule: str
    action: str
    signal: str  # the rendered query, the probed URL, or the host signal
    window_s: int | None
    condition: str
    outcome: str
    detail: str
    series: list[dict[str, Any]] = field(default_factory=list)  # labels, value, breaches
    baseline: float | None = None
    baseline_source: str = ""
    phase: str = "inactive"
    progress: str = ""
    transitions: list[dict[str, Any]] = field(default_factory=list)
    scrape: str = ""  # the scrape interval in use and where it came from
    trailing_s: int | None = None  # the trailing window the condition must also hold on
    evidence: list[dict[str, Any]] = field(default_factory=list)  # a judge rule's evidence over time
    written: str = ""  # the query as the rule file has it, when the one sent differs (config/bind.py)


def progress(rule: Rule, rs: RuleState, now: float) -> str:
    """The `for` / `failures` progress in words, from the saved rule state."""
    if rs.phase is Phase.FIRING:
        return f"firing since {format_duration(now - rs.fired_at)} ago" if rs.fired_at else "firing"
    if rs.phase is Phase.PENDING and rs.active_since is not None and rule.is_judge:
        e = rs.last_evidence or {}
        told = f" (e-value {e['log_e']:.1f} of {e['log_needed']:.1f})" if "log_e" in e else ""
        return (f"pending {format_duration(now - rs.active_since)}: the share looks too high, the evidence is not "
                f"conclusive yet{told}")
    if rs.phase is Phase.PENDING and rs.active_since is not None:
        return f"pending {format_duration(now - rs.active_since)} of {format_duration(rule.for_)}"
    if rule.failures > 1 and rs.failures:
        return f"{rs.failures} of {rule.failures} failures in a row"
    if rs.errors:
        return f"inactive; {rs.errors} query error(s) in a row (state held)"
    return "inactive"


def baseline_source(events: list[dict[str, Any]], rule: str, release: str | None) -> str:
    """Where the baseline came from: the journal's last "baseline" event for this deploy."""
    found = [e for e in events if e.get("kind") == "baseline" and e.get("rule") == rule
             and (release is None or e.get("release") == release)]
    if not found:
        return "no baseline event in the journal for this release"
    e = found[-1]
    window = format_duration(float(e.get("window") or 0))
    return (f"median over {window} before the deploy of {e.get('release')} "
            f"(ending {_when(e.get('end'))}), captured {_when(e.get('time'))}")


def last_transitions(events: list[dict[str, Any]], rule: str, limit: int = 5) -> list[dict[str, Any]]:
    mine = [e for e in events if e.get("kind") == "rule" and e.get("rule") == rule]
    return mine[-limit:]


def explain(cfg: WatcherConfig, store: StateStore, rule_name: str, reader: SignalReader | None = None,
            now: float | None = None) -> Explanation:
    rule = cfg.rule(rule_name)
    if rule is None:
        names = ", ".join(r.name for r in cfg.rules)
        raise WatcherError(f"no rule named {rule_name!r}; the rules are: {names}")
    now = time.time() if now is None else now
    state = store.load()
    events = list(store.events())
    window_s = watch_window(now, state, cfg)
    baseline = state.baselines.get(rule.name)
    if reader is None:
        reader = build_reader(cfg)
    scrape = ""
    if rule.reads_prometheus:
        cfg, scrape = effective_scrape_interval(cfg, getattr(reader, "prometheus", None))
        window_s = watch_window(now, state, cfg)
        if hasattr(reader, "scrape_interval"):
            reader.scrape_interval = cfg.prometheus.scrape_interval
    (evaluated,) = evaluate([rule], reader, now, window_s, state.rules, state.baselines, cfg.error_limit,
                            scrape_interval=cfg.prometheus.scrape_interval, at=now, since=state.changed_at,
                            interval=cfg.interval).rules
    result, obs = evaluated.result, evaluated.observation
    rs = state.rules.get(rule.name, RuleState())  # the saved state: explain changes nothing
    out = Explanation(
        rule=rule.name,
        action=rule.action,
        signal=_signal_text(rule, window_s),
        window_s=window_s if isinstance(rule.signal, PromQuery) else None,
        condition=rule.condition_text(baseline),
        outcome=obs.outcome.value,
        detail=obs.detail,
        baseline=baseline,
        phase=rs.phase.value,
        progress=progress(rule, rs, now),
        transitions=last_transitions(events, rule.name),
        scrape=scrape,
        trailing_s=trailing_seconds(rule, cfg.prometheus.scrape_interval, window_s, cfg.interval),
        written=rule.signal.written if isinstance(rule.signal, PromQuery) else "",
    )
    if isinstance(result, list):
        out.series = [{"labels": s.labels, "value": s.value, "breaches": breaches(rule, s.value, baseline)}
                      for s in result if isinstance(s, Sample)]
    if rule.uses_baseline:
        out.baseline_source = baseline_source(events, rule.name, state.current)
    if rule.is_judge and state.changed_at is not None and getattr(reader, "prometheus", None) is not None:
        out.evidence = evidence_over_time(rule, reader, now, state.changed_at, cfg.prometheus.scrape_interval)
    return out


def evidence_over_time(rule: Rule, reader: Any, now: float, since: float,
                       scrape_interval: float) -> list[dict[str, Any]]:
    """A judge rule's judgement at 12 moments from the start of counting to now, from one read
    of its samples (signals/counts.CountReader.history), each judged by the same classify.
    `reader` is a signals.SignalReader whose Prometheus source is read."""
    try:
        history = CountReader(reader.prometheus).history(rule, now, since, scrape_interval)
    except SourceError as exc:
        return [{"error": str(exc)}]
    rows = []
    for t, counts in history:
        obs = classify(rule, counts)
        j = obs.judgement
        verdict = "fires" if obs.outcome.value == "breach" else ("pending" if obs.suspect else obs.outcome.value)
        rows.append({"time": t, "verdict": verdict, "detail": obs.detail, **(j.facts() if j is not None else {})})
    return rows


def _signal_text(rule: Rule, window_s: int) -> str:
    if isinstance(rule.signal, PromQuery):
        return render_query(rule.signal.query, window_s)
    if isinstance(rule.signal, CounterShare):
        signal = rule.signal
        if signal.buckets:
            return f"counts of {signal.buckets} since the deploy"
        text = f"counts of {signal.errors} among {signal.total} since the deploy"
        if signal.baseline_errors:
            text += f", against {signal.baseline_errors} among {signal.baseline_total}"
        return text
    if isinstance(rule.signal, HttpCheck):
        return f"GET {rule.signal.url}"
    return f"host {rule.signal.kind}"


def _when(t: object) -> str:
    return format_time(float(t)) if isinstance(t, (int, float)) else "-"


def render_text(e: Explanation, unit: str = "") -> str:
    lines = [f"rule       {e.rule} ({e.action})", f"signal     {e.signal}"]
    if e.written:
        lines.append(f"written    {e.written}  (scoped with prometheus.labels / placeholders filled in)")
    if e.window_s is not None:
        lines.append(f"window     [$window] = {e.window_s}s"
                     + (f", and the condition must also hold over the last {e.trailing_s}s" if e.trailing_s else ""))
    if e.scrape:
        lines.append(f"scrape     {e.scrape}")
    lines.append(f"condition  {e.condition}")
    if e.baseline_source:
        lines.append(f"baseline   {format_value(e.baseline, unit)}: {e.baseline_source}")
    lines.append(f"now        {e.outcome}" + (f" ({e.detail})" if e.detail else ""))
    for s in e.series:
        mark = "BREACH" if s["breaches"] else "ok"
        lines.append(f"  {format_value(s['value'], unit):>12}  {mark:<6}  {format_labels(s['labels'])}")
    lines.append(f"state      {e.progress}")
    if e.evidence:
        lines.append("evidence since the deploy (the rule fires when e-value >= needed):")
        for row in e.evidence:
            if "error" in row:
                lines.append(f"  cannot read: {row['error']}")
                continue
            needed = f"  e-value {row['log_e']:.1f}/{row['log_needed']:.1f}" if "log_e" in row else ""
            lines.append(f"  {_when(row['time'])}  {row['verdict']:<8} {row['detail']}{needed}")
    if e.transitions:
        lines.append("last transitions:")
        for t in e.transitions:
            lines.append(f"  {_when(t.get('time'))}  {t.get('before')} -> {t.get('after')}  {t.get('reason', '')}")
    else:
        lines.append("last transitions: none in the journal")
    return "\n".join(lines)
