"""What the journal and the backend say: `history`, `incidents`, `releases`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer

from watcher.base.errors import WatcherError
from watcher.cli.common import SETTINGS, ConfigOpt, JsonOpt, PlotOpt, journal_field, load, out, when

app = typer.Typer(**SETTINGS)


HISTORY_KINDS = {"deploy", "rollback_intent", "rollback_verified", "rollback_failed", "verify_failed", "incident",
                 "window_passed", "mark", "reconcile", "resolve", "pause", "resume", "reload_refused", "verdict"}


@app.command()
def history(
    config: str = ConfigOpt,
    limit: int = typer.Option(50, "--limit", "-n", min=1, metavar="N", help="How many events, newest last."),
    all_events: bool = typer.Option(False, "--all", help="Every journal event, not only deploys, rollbacks and incidents."),
    as_json: bool = JsonOpt,
) -> None:
    """Deploys, rollbacks and incidents from the journal."""
    from watcher.store.state import StateStore  # ~18 ms CPU at --help

    cfg = load(config)
    events = [e for e in StateStore(cfg.state_dir).events() if all_events or e.get("kind") in HISTORY_KINDS]
    events = events[-limit:]
    lines = []
    for e in events:
        fields = " ".join(journal_field(k, v) for k, v in e.items()
                          if k not in ("time", "kind", "timeline") and v not in (None, "", [], {}))
        lines.append(f"{when(e.get('time'))} {e.get('kind'):<18} {fields}")
    out(events, as_json, "\n".join(lines) or "the journal is empty")


@app.command()
def incidents(
    incident: str | None = typer.Argument(None, metavar="[ID]", help="Only this incident."),
    config: str = ConfigOpt,
    as_json: bool = JsonOpt,
    plot: Path | None = PlotOpt,
) -> None:
    """Closed incidents with their timelines.

    With ID, only that one; with ID and --plot FILE, also a PNG of its rule's values around
    it (deploy, breach, switch), from a Prometheus range query."""
    from watcher.store.state import StateStore  # ~18 ms CPU at --help

    cfg = load(config)
    if plot is not None and incident is None:
        raise typer.BadParameter("--plot needs an incident ID (`incidents` lists them)", param_hint="--plot")
    found = [e for e in StateStore(cfg.state_dir).events() if e.get("kind") == "incident"
             and (incident is None or e.get("id") == incident)]
    lines = []
    for inc in found:
        lines.append(f"{inc.get('id')} {when(inc.get('opened_at'))} release {inc.get('release')}: {inc.get('summary')} ({inc.get('resolution')})")
        lines += [f"    {when(t.get('time'))} {t.get('what')}" for t in inc.get("timeline", [])]
    out(found, as_json, "\n".join(lines) or (f"no closed incident {incident}" if incident else "no incidents"))
    if plot is not None and incident is not None:  # --plot without ID was refused above
        from watcher.actions.plots import plot_incident  # the reader and the drawing: ~110 ms CPU

        said = plot_incident(cfg, StateStore(cfg.state_dir), incident, plot)
        print(said, file=sys.stderr if as_json else sys.stdout)


@app.command()
def releases(config: str = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """Every release the backend has, newest first, with its marks.

    Which is current, and where its place in the order comes from: `timeline` (the watcher saw
    it deployed), `created` (the backend's creation time) or `unknown` (after the others, in the
    backend's listing order)."""
    # The service's wiring (backends, reader, notifier, telemetry): ~130 ms CPU at --help.
    from watcher.core.decide import order_releases
    from watcher.service.build import build_watcher

    cfg = load(config)
    w = build_watcher(cfg, notify=False)
    if w.backend is None:
        raise WatcherError("no backend is configured")
    state = w.store.load()
    current = w.backend.current().id
    rows: list[dict[str, Any]] = []
    for r, source in order_releases(w.backend.releases(), state.releases):
        rec = state.releases.get(r.id)
        rows.append({"id": r.id, "current": r.id == current, "mark": rec.mark if rec else None,
                     "barrier": bool(rec and rec.barrier), "auto_rollbacks": rec.auto_rollbacks if rec else 0,
                     "location": r.location, "order": source.value,
                     "deployed_at": rec.deployed_at if rec else None, "created": r.created})
    lines = [f"{'*' if r['current'] else ' '} {r['id']:<24} {r['mark'] or '-':<6} {r['order']:<9} "
             f"{when(r['deployed_at'] if r['order'] == 'timeline' else r['created']) if r['order'] != 'unknown' else '-':<20}"
             f" {'barrier' if r['barrier'] else ''}".rstrip()
             for r in rows]
    out(rows, as_json, "\n".join(lines) + "\n(* current; newest first, ordered by: timeline = deployed while watched, "
         "created = creation time, unknown = the backend's order)")
