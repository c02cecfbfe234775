"""What humans ask: `mark deployed|good|bad|barrier`, `pause`, `resume`, `resolve`, `rollback`.
Through the running service when there is one (state.json has one writer), else applied here
under the instance lock; both go through service/requests.py."""

from __future__ import annotations

import getpass
import os
import time
from typing import TYPE_CHECKING, Any

import typer

from watcher.base.errors import RollbackError, UnsafeReleaseId, WatcherError
from watcher.cli.common import SETTINGS, Command, ConfigOpt, duration_option, load

if TYPE_CHECKING:
    from watcher.config.schema import WatcherConfig

app = typer.Typer(**SETTINGS)
mark_app = typer.Typer(help="Mark a release: deployed, good, bad, barrier.", no_args_is_help=True, **SETTINGS)
app.add_typer(mark_app, name="mark")


def _human_request(cfg: WatcherConfig, command: str, args: dict[str, Any], wait: float = 60.0) -> str:
    """Apply a human's request: through the running service when there is one (state.json has
    one writer), else directly under the instance lock; so too when the service stops before
    it took the request (withdrawn: its file was still there)."""
    # The service's wiring (backends, reader, notifier, telemetry): ~105 ms CPU of import that
    # --help must not pay.
    from watcher.backends import identity_of
    from watcher.service.build import build_watcher
    from watcher.service.human import RequestRefused
    from watcher.store.locks import acquire_host

    w = build_watcher(cfg, fleet=True)
    store = w.store
    args = {**args, "by": _who()}  # said in the journal and in the message to people
    withdrawn = False
    if store.service_running():
        request_id = store.submit_request(command, **args)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            for e in store.events():
                if e.get("kind") == "request_done" and e.get("request") == request_id:
                    if e.get("ok") is False:
                        raise RequestRefused(f"{e.get('result')} (the running watcher refused it)")
                    return f"{e.get('result')} (applied by the running watcher)"
            if not store.service_running() and store.withdraw_request(request_id):
                # The service stopped (a restart, a crash) before it took the request: it is
                # applied here instead, under the instance lock, not left for a start that may
                # not come.
                withdrawn = True
                break
            time.sleep(0.2)
        else:
            return f"queued as {request_id}; the running watcher applies it at its next tick"
    store.acquire()
    host_lock = None
    try:
        host_lock = acquire_host(identity_of(cfg.backend))
        result = w.apply_alone(command, args)
        return f"{result} (the running watcher stopped before taking it: applied here)" if withdrawn else result
    finally:
        if w.notifier is not None:
            w.notifier.flush(timeout=15)
            w.notifier.close(timeout=1)
        if host_lock is not None:
            host_lock.release()
        store.release_lock()


def _who() -> str:
    """The human behind a request: the sudo caller if any, else the login name."""
    try:
        return os.environ.get("SUDO_USER") or getpass.getuser()
    except (KeyError, OSError):  # no passwd entry for the uid (a container)
        return f"uid {os.getuid()}"


def _print_result(result: str) -> None:
    """Print what the watcher answered; a refused request is a failed command (exit 1)."""
    print(result)
    if result.startswith("refused"):
        raise typer.Exit(1)


def _mark(config: str, release: str, what: str, reason: str | None, force: bool) -> None:
    from watcher.backends.base import check_release_id  # ~8 ms CPU at --help

    # Refused here, before the request is queued: a running watcher would only journal it.
    release = check_release_id(release)
    cfg = load(config)
    _print_result(_human_request(cfg, "mark", {"release": release, "mark": what, "reason": reason, "force": force}))


ForceMarkOpt = typer.Option(False, "--force", help="Mark a release the backend does not list (yet).")
ReleaseArg = typer.Argument(..., metavar="RELEASE", help="The release id, as `releases` lists it.")
ReasonOpt = typer.Option(None, "--reason", metavar="TEXT", help="Why (in the journal and the message).")


@mark_app.command("good", cls=Command)
def mark_good(release: str = ReleaseArg, config: str = ConfigOpt, reason: str | None = ReasonOpt,
              force: bool = ForceMarkOpt) -> None:
    """Mark RELEASE known-good: auto-rollback may target it."""
    _mark(config, release, "good", reason, force)


@mark_app.command("bad", cls=Command)
def mark_bad(release: str = ReleaseArg, config: str = ConfigOpt, reason: str | None = ReasonOpt,
             force: bool = ForceMarkOpt) -> None:
    """Mark RELEASE bad: auto-rollback never targets it."""
    _mark(config, release, "bad", reason, force)


@mark_app.command("barrier", cls=Command)
def mark_barrier(
    release: str = ReleaseArg,
    config: str = ConfigOpt,
    remove: bool = typer.Option(False, "--remove", help="Take the barrier away."),
    force: bool = ForceMarkOpt,
) -> None:
    """Mark RELEASE as not reversible: no rollback across it.

    Use it after a destructive migration, for example. Auto-rollback never crosses it; a human is called instead."""
    _mark(config, release, "not-barrier" if remove else "barrier", None, force)


@mark_app.command("deployed", cls=Command)
def mark_deployed(
    release: str = ReleaseArg,
    config: str = ConfigOpt,
    at: float | None = typer.Option(None, "--at", metavar="EPOCH",
                                    help="Deploy time, epoch seconds (default: now); finite, not in the future."),
    force: bool = typer.Option(False, "--force", help="Record the deploy although RELEASE is not current."),
) -> None:
    """Announce a deploy of RELEASE now, from a deploy script.

    The watcher need not wait for its next poll to see it."""
    # ~10 ms CPU at --help (the backends' protocol, the request checks).
    from watcher.backends.base import check_release_id
    from watcher.service.human import deploy_time

    release = check_release_id(release)
    cfg = load(config)
    # Checked here too, so that a bad time fails at once rather than after a trip to the service.
    deploy_time(at, time.time())
    _print_result(_human_request(cfg, "deployed", {"release": release, "at": at, "force": force}))


@app.command()
def pause(
    duration: str = typer.Option(..., "--for", metavar="DURATION", help="How long, e.g. 1h or 30m."),
    config: str = ConfigOpt,
) -> None:
    """Stop acting for a while (decide and notify only)."""
    seconds = duration_option(duration, "--for")
    _print_result(_human_request(load(config), "pause", {"seconds": seconds}))


@app.command()
def resume(config: str = ConfigOpt) -> None:
    """End a pause."""
    _print_result(_human_request(load(config), "resume", {}))


@app.command()
def resolve(config: str = ConfigOpt) -> None:
    """End an incident after a failed rollback.

    The watcher acts again."""
    _print_result(_human_request(load(config), "resolve", {}))


@app.command()
def rollback(
    to: str | None = typer.Option(None, "--to", metavar="RELEASE",
                                  help="Release id (default: the newest known-good older one)."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the plan and check the target; change nothing."),
    reason: str = typer.Option("manual rollback", "--reason", metavar="TEXT", help="Recorded in the journal and messages."),
    config: str = ConfigOpt,
) -> None:
    """Roll back by hand, as the automatic rollback does.

    Plan (the planner the service uses), lock, re-read current, preflight, switch, verify,
    journal. --dry-run goes down the same path and stops before the first change. Without --yes
    it shows the plan and asks."""
    # The service's wiring and the rollback: ~115 ms CPU of import at --help.
    from watcher.core.model import RollbackResult
    from watcher.service.build import build_watcher
    from watcher.service.rollback import execute, plan_rollback

    cfg = load(config)
    w = build_watcher(cfg, notify=not dry_run)
    if w.backend is None:
        raise WatcherError("no backend is configured")
    w.state = w.store.load()
    current = w.backend.current().id
    try:
        plan = plan_rollback(current, w.backend.releases(), w.state.releases, to, reason)
    except UnsafeReleaseId:
        raise
    except RollbackError as exc:
        raise RollbackError(f"{exc}; nothing was changed") from None
    fallback = f" (then {', '.join(plan.targets[1:])} if it cannot be used)" if len(plan.targets) > 1 else ""
    print(f"plan: roll back {current} -> {plan.target}{fallback}; reason: {reason}")
    if dry_run:
        outcome = execute(w, plan, dry_run=True)
        print(f"dry run: {outcome.detail}; nothing was changed")
        if outcome.result is not RollbackResult.DRY_RUN:
            raise typer.Exit(1)
        return
    if not yes:
        typer.confirm("Roll back now?", abort=True)
    result = _human_request(cfg, "rollback", {"to": to, "reason": reason}, wait=cfg.verify.attempts * cfg.verify.every + 120)
    print(result)
    if not result.startswith("rolled_back"):
        raise typer.Exit(1)
