"""`run` (the service) and `status`."""

from __future__ import annotations

import dataclasses
import sys
import time
from typing import TYPE_CHECKING, Any

import typer

from watcher.base.errors import ConfigError, StateError
from watcher.cli.common import (
    SETTINGS,
    ConfigOpt,
    JsonOpt,
    current_release,
    load,
    out,
    setup_logging,
    show_config_error,
    when,
)

if TYPE_CHECKING:
    from watcher.config.schema import WatcherConfig
    from watcher.store.state import State

if TYPE_CHECKING:
    from watcher.store.state import StateStore

app = typer.Typer(**SETTINGS)


@app.command()
def run(
    config: str = ConfigOpt,
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging."),
) -> None:
    """Run the service: one tick every `interval`.

    SIGHUP reloads, SIGTERM finishes the tick in hand and exits 0. Meant for systemd
    (Type=notify). Exit 78 when it cannot start on this host (the config does not load,
    state.json is damaged, another watcher holds the state dir or the host, the telemetry port
    is taken): restarting would not help."""
    # The whole service (daemon, tick, reader, notifier, telemetry): ~130 ms CPU of import
    # that --help must not pay.
    from watcher.config.hostcheck import EXIT_CANNOT_START
    from watcher.service.build import build_watcher
    from watcher.service.daemon import serve

    setup_logging(verbose)
    try:
        cfg = load(config)
    except ConfigError as exc:
        # Exit 1 would be a crash to systemd, and Restart=on-failure would re-read the same
        # file every RestartSec forever: the unit's RestartPreventExitStatus= names 78.
        show_config_error(exc)
        raise typer.Exit(EXIT_CANNOT_START) from None
    try:
        code = serve(build_watcher(cfg, telemetry=cfg.telemetry.listen is not None, fleet=True))
    except StateError as exc:
        if not exc.permanent:
            raise
        # As for the config: only a person can fix a damaged state.json, or choose which of two
        # watchers on one state dir (or one host) goes (the message says how, and who holds it);
        # a restart every RestartSec would only find the same again.
        print(f"Error: {exc}", file=sys.stderr)
        raise typer.Exit(EXIT_CANNOT_START) from None
    raise typer.Exit(code)


@app.command()
def status(config: str = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """The release, its watch window, rule states, the incident."""
    from watcher.store.state import StateStore  # ~18 ms CPU at --help

    cfg = load(config)
    store = StateStore(cfg.state_dir)
    state = store.load()
    now = time.time()
    undelivered = _undelivered(store)
    running = store.service_running()
    release, source = current_release(cfg, state.current, running)
    data: dict[str, Any] = {
        "service": cfg.service,
        "running": running,
        "release": release,
        "release_note": source or None,
        "deployed_at": state.deployed_at,
        "in_watch_window": state.in_watch_window(now),
        "window_ends": state.window_ends,
        "paused_until": state.paused_until if state.paused_until and state.paused_until > now else None,
        "halted": state.halted,
        "current_problem": state.current_problem,
        "confirming": state.confirming,
        "lock_wait": state.lock_wait,
        "mode": cfg.mode,
        "rules": {name: {"state": rs.phase.value, "since": rs.active_since, "value": rs.last_value,
                         "breach_value": rs.breach_value, "reading": _reading(cfg, state, name),
                         "errors": rs.errors, "blind": rs.blind} for name, rs in state.rules.items()},
        "incident": state.incident.to_dict() if state.incident else None,
        "undelivered_notifications": undelivered,
    }
    lines = [f"{cfg.service}: release {release or 'unknown'}"
             + (f", in its watch window until {when(state.window_ends)}" if data["in_watch_window"] else "")
             + f"; watcher {'running' if data['running'] else 'not running'}; mode {cfg.mode}"]
    if source:
        lines.append(f"  ({source})")
    if state.current_problem:
        lines.append(f"CURRENT UNREADABLE: {state.current_problem}\n  the watcher acts not until it can read it")
    if state.confirming:
        c = state.confirming
        lines.append(f"rolled back {c['from']} -> {c['to']}; waiting until {when(c['until'])} for "
                     f"{', '.join(c['rules'])} to clear")
    if state.lock_wait:
        what = "the backend" if state.lock_wait.get("for") == "backend" else "the deploy lock"
        lines.append(f"waiting for {what} since {when(state.lock_wait['since'])} (the window waits too)")
    if state.halted:
        lines.append(f"HALTED: {state.halted}\n  fix the host, then run: rollback-watcher resolve")
    if data["paused_until"]:
        lines.append(f"paused until {when(state.paused_until)}")
    for name, rs in state.rules.items():
        extra = f" since {when(rs.active_since)}" if rs.active_since else ""
        blind = " BLIND" if rs.blind else ""
        reading = data["rules"][name]["reading"]
        lines.append(f"  {name:<28} {rs.phase.value}{extra}{blind}" + (f"  {reading}" if reading else ""))
    if state.incident:
        lines.append(f"open incident {state.incident.id} on {state.incident.release}:")
        lines += [f"  {when(e['time'])} {e['what']}" for e in state.incident.timeline]
    if undelivered:
        lines.append(f"{len(undelivered)} notification(s) not delivered (see `rollback-watcher history`)")
    if cfg.fleet is not None:
        from watcher.actions.fleet import status_block  # the etcd client: ~80 ms CPU, only with fleet:

        data["fleet"], fleet_text = status_block(cfg.fleet, now)
        lines.append(fleet_text)
    out(data, as_json, "\n".join(lines))


def _reading(cfg: WatcherConfig, state: State, name: str) -> str | None:
    """A pending or firing rule's value against its condition, as its messages write it
    ("40.29% against > 10% for 2m; 27% at the breach"); None for the others."""
    from watcher.core.messages import fmt_finding
    from watcher.core.rules import Phase, finding

    rs, rule = state.rules[name], cfg.rule(name)
    if rule is None or rs.phase is Phase.INACTIVE:
        return None
    line = fmt_finding(dataclasses.replace(finding(rule, rs, state.baselines.get(name)), since=None, labels={}))
    return line.removeprefix(f"{name}: ")


def _undelivered(store: StateStore) -> list[dict[str, Any]]:
    from watcher.notify.notifier import undelivered_from_journal  # ~20 ms CPU at --help

    return undelivered_from_journal(store.events())
