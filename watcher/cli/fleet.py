"""Fleet commands: `gate RELEASE` for deploy scripts and `fleet status` (actions/fleet.py does
the work)."""

from __future__ import annotations

import json
import sys
import time

import typer

from watcher.base.durations import parse_duration
from watcher.base.errors import ConfigError, WatcherError
from watcher.cli.common import SETTINGS, Command, ConfigOpt, JsonOpt

app = typer.Typer(**SETTINGS)
fleet_app = typer.Typer(help="The fleet on etcd: members, releases, verdicts.", no_args_is_help=True, **SETTINGS)
app.add_typer(fleet_app, name="fleet")


@app.command(cls=Command)
def gate(
    release: str = typer.Argument(..., metavar="RELEASE", help="The release the deploy script is about to ship further."),
    config: str = ConfigOpt,
    wait: bool = typer.Option(False, "--wait", help="Block until go or bad (or --timeout)."),
    canary: int | None = typer.Option(None, "--canary", min=1, metavar="N",
                                         help="Go once the release survived its window on N hosts."),
    timeout: str = typer.Option("30m", "--timeout", metavar="DURATION", help="Longest wait with --wait, e.g. 20m."),
    every: str = typer.Option("2s", "--every", metavar="DURATION", help="How often to read etcd while waiting."),
    as_json: bool = JsonOpt,
) -> None:
    """Exit 0 (go), 1 (bad fleet-wide: do not deploy) or 2 (unknown) for RELEASE."""
    # The config loader and the etcd client: ~140 ms CPU of import at --help (see fleet_status);
    # the fleet model's GateCode alone ~4 ms.
    from watcher.actions.fleet import fleet_config, run_gate
    from watcher.core.fleetmodel import GateCode

    # Exit 1 means "bad release" to a deploy script: a broken config or option is unknown (2).
    try:
        cfg = fleet_config(config)
        limit, step = parse_duration(timeout), parse_duration(every)
    except ConfigError as exc:
        for problem in exc.problems:
            print(str(problem), file=sys.stderr)
        raise typer.Exit(int(GateCode.UNKNOWN)) from None
    except (ValueError, WatcherError) as exc:
        print(f"gate: {exc}", file=sys.stderr)
        raise typer.Exit(int(GateCode.UNKNOWN)) from None
    answer = run_gate(cfg, release, canary, wait, limit, step)
    if as_json:
        print(json.dumps({"release": release, "code": int(answer.code), "answer": answer.code.name.lower(),
                          "reason": answer.reason}))
    else:
        print(f"{answer.code.name.lower()}: {answer.reason}")
    raise typer.Exit(int(answer.code))


@fleet_app.command("status")
def fleet_status(config: str = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """Hosts, the release each runs, window and firing rules; verdicts per release."""
    # The config loader and the etcd client (etcd3gw, httpx, requests): ~140 ms CPU of import
    # that --help and the other commands must not pay.
    from watcher.actions.fleet import fleet_config, format_view, read_view, view_json
    from watcher.fleet.etcd import EtcdGateway, FleetUnavailable

    cfg = fleet_config(config)
    try:
        view = read_view(EtcdGateway(cfg), cfg)
    except FleetUnavailable as exc:
        print(f"fleet {cfg.name}: etcd unreachable: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None
    now = time.time()
    if as_json:
        print(json.dumps(view_json(view, cfg.name), indent=2, sort_keys=True))
    else:
        print(format_view(view, cfg.name, now))
