"""`explain RULE --plot FILE` and `incidents ID --plot FILE`: the picture of a rule
(notify/pictures.py) drawn from a Prometheus range query, written as a PNG.

Where the service's messages draw what the tick read (service/history.py), here a human waits
for the real curve: one range query of the rule over the span, its `[$window]` rendered as
the rule's trailing window when it has one (what the rule read most recently at each moment),
else as `max_window`; at each step the worst series (the lowest for a rule with only a
`below`, else the highest), as the rule judges. Prometheus down, or a rule it has no series
of (an HTTP probe, a host signal), is said as a WatcherError; nothing is written then.

    explain    from a third of the time since the current release's deploy before it, to now
               (the last 15 minutes when no deploy is known)
    incidents  the incident's release, from before its deploy to a couple of minutes after
               the incident closed; the breach and the switch from its timeline and journal
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from watcher.base.errors import SourceError, WatcherError
from watcher.base.files import write_file_atomically
from watcher.base.format import format_time
from watcher.config.schema import WatcherConfig
from watcher.core.rules import PromQuery, Rule, render_query, trailing_seconds
from watcher.notify.pictures import BreachPicture, picture_of, render_png
from watcher.signals.reader import SignalReader, build_reader
from watcher.store.state import StateStore

AFTER_S = 120.0  # drawn after an incident closed
RECENT_S = 900.0  # drawn when no deploy is known
MAX_STEPS = 400  # points of one range query (a picture is 960 pixels wide)


def plot_rule(cfg: WatcherConfig, store: StateStore, rule_name: str, path: Path, reader: SignalReader | None = None,
              now: float | None = None) -> str:
    """Write the picture of RULE over the current release's watch window to `path`; the line
    that says so."""
    now = time.time() if now is None else now
    rule = _rule(cfg, rule_name)
    state = store.load()
    offset = state.clock_offset  # saved times are the service's steady time: wall = + offset
    deployed = _plus(state.deployed_at, offset)
    start = now - RECENT_S if deployed is None else deployed - max(60.0, (now - deployed) / 3)
    breach_at = None
    rs = state.rules.get(rule.name)
    if rs is not None and rs.breach_since is not None:
        breach_at = rs.breach_since + offset
    switch_at = _plus(state.last_rollback_at, offset)
    if switch_at is not None and (switch_at < start or (deployed is not None and switch_at < deployed)):
        switch_at = None
    points = series(cfg, rule, start, now, reader)
    picture = picture_of(rule, points, baseline=state.baselines.get(rule.name), deploy_at=deployed,
                         breach_at=breach_at, switch_at=switch_at, release=state.current or "", host=cfg.host)
    return _write(picture, path, start, now)


def plot_incident(cfg: WatcherConfig, store: StateStore, incident_id: str, path: Path,
                  reader: SignalReader | None = None, now: float | None = None) -> str:
    """Write the picture of incident ID's first rule that Prometheus can draw to `path`."""
    now = time.time() if now is None else now
    events = list(store.events())
    incident = _incident(store, events, incident_id)
    configured = [cfg.rule(n) for n in incident.get("rules") or []]
    drawable = [r for r in configured if r is not None and isinstance(r.signal, PromQuery)]
    if not drawable:
        said = ", ".join(incident.get("rules") or []) or "none"
        raise WatcherError(f"incident {incident_id}'s rules ({said}) have no Prometheus query to plot")
    rule = drawable[0]
    release = incident.get("release") or ""
    opened = float(incident.get("opened_at") or now)
    closed = incident.get("closed_at")
    deploys = [e for e in events if e.get("kind") == "deploy" and e.get("release") == release
               and float(e.get("time") or 0) <= opened]
    deployed = float(deploys[-1]["time"]) if deploys else None
    end = min(now, float(closed) + AFTER_S) if closed is not None else now
    start = (opened - RECENT_S / 3) if deployed is None else deployed - max(60.0, (end - deployed) / 3)
    breach_at = _noted(incident, f"{rule.name} breached") or opened
    switched = [e for e in events if e.get("kind") == "rollback_switched" and e.get("release") == release
                and opened <= float(e.get("time") or 0) <= end]
    switch_at = float(switched[0]["time"]) if switched else None
    points = series(cfg, rule, start, end, reader)
    picture = picture_of(rule, points, deploy_at=deployed, breach_at=breach_at, switch_at=switch_at,
                         release=release, host=cfg.host)
    return _write(picture, path, start, end)


def series(cfg: WatcherConfig, rule: Rule, start: float, end: float,
           reader: SignalReader | None = None) -> list[tuple[float, float]]:
    """The rule's value at each step from `start` to `end` (see the module docstring)."""
    if not isinstance(rule.signal, PromQuery):
        kind = "an HTTP probe" if rule.is_probe else "a host signal"
        raise WatcherError(f"{rule.name} reads {kind}: Prometheus has no series of it to plot")
    if reader is None:
        reader = build_reader(cfg)
    prometheus = getattr(reader, "prometheus", None)
    if prometheus is None:
        raise WatcherError("no Prometheus is configured")
    scrape = cfg.prometheus.scrape_interval
    window = trailing_seconds(rule, scrape, int(cfg.max_window), cfg.interval) or int(cfg.max_window)
    step = max(float(scrape), (end - start) / MAX_STEPS, 1.0)
    try:
        found = prometheus.query_range(render_query(rule.signal.query, int(window)), start, end, step)
    except SourceError as e:
        raise WatcherError(f"cannot plot {rule.name}: {e}") from None
    lowest = rule.below is not None and rule.above is None and rule.above_baseline is None
    by_time: dict[float, list[float]] = {}
    for _labels, points in found:
        for t, value in points:
            by_time.setdefault(round(float(t), 3), []).append(float(value))
    worst = min if lowest else max
    return [(t, worst(values)) for t, values in sorted(by_time.items())]


def _write(picture: BreachPicture, path: Path, start: float, end: float) -> str:
    png = render_png(picture)
    try:
        write_file_atomically(Path(path), png, mode=0o644)
    except OSError as e:
        raise WatcherError(f"cannot write {path}: {e.strerror or e}") from None
    return (f"wrote {path}: {picture.rule} from {format_time(start)} to {format_time(end)}, "
            f"{len(picture.points)} points")


def _rule(cfg: WatcherConfig, name: str) -> Rule:
    rule = cfg.rule(name)
    if rule is None:
        raise WatcherError(f"no rule named {name!r}; the rules are: {', '.join(r.name for r in cfg.rules)}")
    return rule


def _incident(store: StateStore, events: list[dict[str, Any]], incident_id: str) -> dict[str, Any]:
    for e in events:
        if e.get("kind") == "incident" and e.get("id") == incident_id:
            return e
    state = store.load()
    if state.incident is not None and state.incident.id == incident_id:
        return {"id": state.incident.id, "opened_at": state.incident.opened_at + state.clock_offset,
                "release": state.incident.release, "rules": list(state.incident.rules),
                "timeline": [dict(t, time=t["time"] + state.clock_offset) for t in state.incident.timeline]}
    known = [str(e.get("id")) for e in events if e.get("kind") == "incident"]
    hint = f"; the closed ones are: {', '.join(known[-10:])}" if known else "; the journal has none"
    raise WatcherError(f"no incident {incident_id!r}{hint}")


def _noted(incident: dict[str, Any], prefix: str) -> float | None:
    for note in incident.get("timeline") or []:
        if str(note.get("what", "")).startswith(prefix):
            return float(note["time"])
    return None


def _plus(t: float | None, offset: float) -> float | None:
    return None if t is None else t + offset
