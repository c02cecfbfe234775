"""`rollback-watcher explain RULE`: why a rule is in the state it is in, with the numbers.

    query        rendered with the window the service uses now
    series       each series' value now, and whether it breaches
    condition    the threshold, or the baseline in use and where it came from (the journal's
                 "baseline" event of this deploy)
    progress     the `for` / `failures` progress from the saved state ("pending 1m10s of 2m")
    transitions  the rule's last transitions from the journal

Reads only: the saved state is not stepped or written.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from watcher.base.errors import WatcherError
from watcher.base.format import format_duration, format_labels, format_time, format_value
from watcher.core.evaluate import evaluate, watch_window
from watcher.core.rules import (
    HttpCheck,
    Phase,
    PromQuery,
    Rule,
    RuleState,
    Sample,
    breaches,
    render_query,
    trailing_seconds,
)


@dataclass
class Explanation:
    rule: str
    action: str
    signal: str  # the rendered query, the probed URL, or the host signal
    window_s: int | None
    condition: str
    outcome: str
    detail: str
    series: list[dict] = field(default_factory=list)  # labels, value, breaches
    baseline: float | None = None
    baseline_source: str = ""
    phase: str = "inactive"
    progress: str = ""
    transitions: list[dict] = field(default_factory=list)
    scrape: str = ""  # the scrape interval in use and where it came from
    trailing_s: int | None = None  # the trailing window the condition must also hold on
    written: str = ""  # the query as the rule file has it, when the one sent differs (config/bind.py)


def progress(rule: Rule, rs: RuleState, now: float) -> str:
    """The `for` / `failures` progress in words, from the saved rule state."""
    if rs.phase is Phase.FIRING:
        return f"firing since {format_duration(now - rs.fired_at)} ago" if rs.fired_at else "firing"
    if rs.phase is Phase.PENDING and rs.active_since is not None:
        return f"pending {format_duration(now - rs.active_since)} of {format_duration(rule.for_)}"
    if rule.failures > 1 and rs.failures:
        return f"{rs.failures} of {rule.failures} failures in a row"
    if rs.errors:
        return f"inactive; {rs.errors} query error(s) in a row (state held)"
    return "inactive"


def baseline_source(events: list[dict], rule: str, release: str | None) -> str:
    """Where the baseline came from: the journal's last "baseline" event for this deploy."""
    found = [e for e in events if e.get("kind") == "baseline" and e.get("rule") == rule
             and (release is None or e.get("release") == release)]
    if not found:
        return "no baseline event in the journal for this release"
    e = found[-1]
    window = format_duration(float(e.get("window") or 0))
    return (f"median over {window} before the deploy of {e.get('release')} "
            f"(ending {_when(e.get('end'))}), captured {_when(e.get('time'))}")


def last_transitions(events: list[dict], rule: str, limit: int = 5) -> list[dict]:
    mine = [e for e in events if e.get("kind") == "rule" and e.get("rule") == rule]
    return mine[-limit:]


def explain(cfg, store, rule_name: str, reader=None, now: float | None = None) -> Explanation:
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
        from watcher.signals.reader import build_reader

        reader = build_reader(cfg)
    scrape = ""
    if isinstance(rule.signal, PromQuery):
        from watcher.signals.promtime import effective_scrape_interval

        cfg, scrape = effective_scrape_interval(cfg, getattr(reader, "prometheus", None))
        window_s = watch_window(now, state, cfg)
    (evaluated,) = evaluate([rule], reader, now, window_s, state.rules, state.baselines, cfg.error_limit,
                            scrape_interval=cfg.prometheus.scrape_interval, at=now).rules
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
        trailing_s=trailing_seconds(rule, cfg.prometheus.scrape_interval, window_s),
        written=rule.signal.written if isinstance(rule.signal, PromQuery) else "",
    )
    if isinstance(result, list):
        out.series = [{"labels": s.labels, "value": s.value, "breaches": breaches(rule, s.value, baseline)}
                      for s in result if isinstance(s, Sample)]
    if rule.uses_baseline:
        out.baseline_source = baseline_source(events, rule.name, state.current)
    return out


def _signal_text(rule: Rule, window_s: int) -> str:
    if isinstance(rule.signal, PromQuery):
        return render_query(rule.signal.query, window_s)
    if isinstance(rule.signal, HttpCheck):
        return f"GET {rule.signal.url}"
    return f"host {rule.signal.kind}"


def _when(t) -> str:
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
    if e.transitions:
        lines.append("last transitions:")
        for t in e.transitions:
            lines.append(f"  {_when(t.get('time'))}  {t.get('before')} -> {t.get('after')}  {t.get('reason', '')}")
    else:
        lines.append("last transitions: none in the journal")
    return "\n".join(lines)
