"""What humans ask through the CLI (`mark`, `deployed`, `pause`, `resume`, `resolve`,
`rollback`). While the service runs they arrive as files in state_dir/requests/ and are applied
at its next tick, so that state.json has one writer; with no service running the CLI applies
them itself under the instance lock. Both go through `apply`.
"""

from __future__ import annotations

from typing import Any, Protocol

from watcher.backends.base import check_release_id
from watcher.base.errors import RollbackError, StateError, WatcherError
from watcher.base.format import format_duration, format_time
from watcher.core import messages
from watcher.core.model import Mark
from watcher.service import human, rollback
from watcher.store.state import StateStore


class Requests(rollback.Rollbacks, Protocol):
    """What applying a human's request needs of the service (tick.Watcher): what a rollback
    needs (a `rollback` request is one; its deploy step also serves `mark deployed`, which
    opens a watch window as a deploy the tick saw would), and the request inbox."""

    store: StateStore

_MARK_EFFECT = {
    "good": "It is a rollback target from now on.",
    "bad": "It is never a rollback target.",
    "barrier": "Automatic rollbacks never cross it: a human is called instead.",
    "not-barrier": "It is no longer a barrier for automatic rollbacks.",
}


def apply_pending(w: Requests, now: float) -> None:
    """Apply every queued request, oldest first; save the state; then journal each result,
    which is what the waiting CLI reports to its human. Saved first: a service that died
    between the acknowledgement and the tick's save lost a `pause` or a `mark` it had said
    was done."""
    done = []
    for req in w.store.take_requests():
        try:
            if "unreadable" in req:
                raise WatcherError(f"the running watcher cannot read the request: {req['unreadable']}")
            result = apply(w, req.get("command", ""), req.get("args", {}), now)
            ok = True
        except WatcherError as exc:
            result, ok = f"refused: {exc}", False
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            # A request file written by hand or by another version: refused, never a crash.
            result, ok = f"refused: malformed request ({type(exc).__name__}: {exc})", False
        done.append((req, result, ok))
    if any(ok for _, _, ok in done):
        try:
            w.save()
        except StateError as exc:
            done = [(req, f"refused: applied, but the state could not be saved ({exc}); it lasts only until the "
                          "service stops" if ok else result, False) for req, result, ok in done]
    for req, result, ok in done:
        # `ok` lets the CLI that queued the request exit non-zero on a refusal.
        w.journal("request_done", request=req.get("id"), command=req.get("command"), result=result, ok=ok)


def apply(w: Requests, command: str, args: dict[str, Any], now: float) -> str:
    """Apply one human request to the watcher's state; returns what happened, in words."""
    s = w.state
    if command == "mark":
        rid = check_release_id(args["release"])
        what = args["mark"]
        human.check_mark(rid, what, human.view_of(w.backend), bool(args.get("force")))
        rec = s.release(rid, now)
        if what == Mark.BARRIER:
            rec.barrier = True
        elif what == "not-barrier":
            rec.barrier = False
        else:
            rec.mark, rec.marked_at, rec.reason = what, now, args.get("reason") or "marked by a human"
            if rid == s.current and what == Mark.GOOD:
                s.window_ends = None
        w.journal("mark", release=rid, mark=what, by=args.get("by") or "human")
        w.notify(messages.human_action(w.ctx, f"{rid} marked {what}", args.get("by", ""), _MARK_EFFECT[what], rid))
        return f"{rid} marked {what}"
    if command == "deployed":
        rid = check_release_id(args["release"])
        if args.get("at") is None and rid == s.current and s.deployed_at is not None:
            # A deploy hook that runs after the switch (Capistrano's deploy:published) comes
            # after the poll saw it: a second deploy would restart the window and every rule.
            return f"{rid} is already current, deployed at {s.deployed_at:.0f}: nothing changed"
        at = human.deploy_time(args.get("at"), now)
        human.check_deployed(rid, human.view_of(w.backend), bool(args.get("force")))
        w.on_deploy(rid, at)
        return f"deploy of {rid} at {format_time(at)} recorded"
    if command == "pause":
        s.paused_until = now + float(args["seconds"])
        w.journal("pause", until=s.paused_until, by=args.get("by"))
        until = f"{format_time(s.paused_until)} ({format_duration(float(args['seconds']))})"
        w.notify(messages.human_action(w.ctx, f"paused until {until}", args.get("by", ""),
                                       "Until then the watcher decides and notifies, but does not roll back."))
        return f"paused until {until}"
    if command == "resume":
        was = s.paused_until
        s.paused_until = None
        w.journal("resume", by=args.get("by"))
        if was is not None and was > now:
            w.notify(messages.human_action(w.ctx, "resumed", args.get("by", ""),
                                           "The pause is over: the watcher acts again on a firing rollback rule."))
        return "resumed"
    if command == "resolve":
        halted = s.halted
        s.halted = None
        w.close_incident("resolved by a human", resolution="resolved")
        w.journal("resolve", was=halted, by=args.get("by"))
        if halted:
            w.notify(messages.human_action(w.ctx, "resolved the halt", args.get("by", ""),
                                           f"It was halted: {halted}. The watcher acts again."))
        return "resolved" if halted else "nothing was halted"
    if command == "rollback":
        return manual_rollback(w, args.get("to"), args.get("reason") or "manual rollback")
    raise WatcherError(f"unknown request {command!r}")


def manual_rollback(w: Requests, to: str | None, reason: str, dry_run: bool = False) -> str:
    """A human's rollback: the same planner and the same execution as the automatic one."""
    if w.backend is None:
        raise RollbackError("no backend is configured")
    current = w.backend.current().id
    plan = rollback.plan_rollback(current, w.backend.releases(), w.state.releases, to, reason)
    if current != w.state.current and not dry_run:
        # A deploy the tick has not seen yet (it may still hold the deploy lock, and the
        # rollback then waits for it): it is a deploy all the same, with its window.
        w.on_deploy(current, w.clock(), first_start=w.state.current is None)
    outcome = rollback.execute(w, plan, dry_run=dry_run)
    if dry_run:
        return f"{outcome.result.value}: {outcome.detail}"
    return outcome.result.value
