"""The command line (docs/design.md section 9): parses, wires, prints. No decisions live here.

Heavy modules (apprise, httpx, the Prometheus client) are imported inside the commands that
use them, so that `--help` and `check` start fast.

Length: over 400 lines because it holds about twenty commands, each only parsing, wiring and
printing; what they decide lives in rollback.py (plan, execute, dry run), evaluate.py (eval,
check --online), requests.py (mark, pause, resolve) and explain.py.
"""

from __future__ import annotations

import json
import os
import logging
import sys
import time
from pathlib import Path
from typing import Optional

import typer

from watcher.errors import ConfigError, WatcherError
from watcher.logs import SyslogPrefixFormatter, journald_stream

DEFAULT_CONFIG = "/etc/rollback-watcher/watcher.yaml"

app = typer.Typer(
    help="Watch a fresh deploy through Prometheus and health probes; roll the host back to the last "
    "known-good release when a rule fires, verify it, and tell people.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
mark_app = typer.Typer(help="Mark a release: deployed, good, bad, barrier.", no_args_is_help=True)
app.add_typer(mark_app, name="mark")

ConfigOpt = typer.Option(
    DEFAULT_CONFIG, "--config", "-c", envvar="ROLLBACK_WATCHER_CONFIG", help="watcher.yaml to read.", show_default=True
)
JsonOpt = typer.Option(False, "--json", help="Print JSON for scripts.")


def main() -> None:
    """Entry point: every WatcherError ends as one readable line (or one per config problem)."""
    try:
        # Outside standalone mode click returns the code of typer.Exit instead of exiting.
        code = app(standalone_mode=False)
    except ConfigError as exc:
        for problem in exc.problems:
            print(str(problem), file=sys.stderr)
        print(f"{len(exc.problems)} problem(s); nothing was changed.", file=sys.stderr)
        sys.exit(1)
    except WatcherError as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(1)
    except typer.Abort:
        print("Aborted; nothing was changed.", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:  # click's usage errors arrive here in non-standalone mode
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Exit):
            sys.exit(exc.exit_code)
        raise
    sys.exit(code if isinstance(code, int) else 0)


def _load(config: str):
    """Load the config; from here on, nothing this process prints or logs shows its secrets."""
    from watcher.config import load_config
    from watcher.scrub import RedactingStream, redact_logs, redactor_for

    cfg = load_config(config)
    redact = redactor_for(cfg)
    if redact:
        for name in ("stdout", "stderr"):
            stream = getattr(sys, name)
            setattr(sys, name, RedactingStream(stream.inner if isinstance(stream, RedactingStream) else stream, redact))
        redact_logs(redact)
    return cfg


def _setup_logging(verbose: bool = False) -> None:
    # One line per event, key=value, to stdout: journald keeps the time itself, but people
    # reading a terminal or a file want it too.
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        stream=sys.stdout,
        format="%(asctime)s level=%(levelname)s logger=%(name)s %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S",
        force=True,
    )
    logging.Formatter.converter = time.gmtime
    if journald_stream(sys.stdout, os.environ):
        # Under systemd, stdout goes to journald, which would file every line at PRIORITY 6
        # and `journalctl -u rollback-watcher -p warning` would show nothing, not even a
        # refused reload. A `<N>` prefix gives each line its own priority.
        for handler in logging.getLogger().handlers:
            handler.setFormatter(SyslogPrefixFormatter(handler.formatter))
    # httpx logs every request at INFO: one line per probe per tick drowns the events.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)


def _out(data, as_json: bool, text: str) -> None:
    if as_json:
        print(json.dumps(data, indent=2, sort_keys=True, default=str))
    else:
        print(text)


def _when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(t)) if t else "-"


# ---------------------------------------------------------------------------------------------


@app.command()
def check(
    config: str = ConfigOpt,
    online: bool = typer.Option(False, "--online", help="Also run each query once and probe each URL."),
    as_json: bool = JsonOpt,
) -> None:
    """Validate the config and rule files. Exit 0 when valid, 1 with every problem listed."""
    cfg = _load(config)
    rows = []
    for rule in cfg.rules:
        kind = type(rule.signal).__name__
        rows.append({"rule": rule.name, "signal": kind, "condition": rule.condition_text(), "action": rule.action,
                     "file": str(rule.location)})
    failed = 0
    if online:
        from watcher.evaluate import evaluate, watch_window
        from watcher.rules import HttpCheck, PromQuery
        from watcher.signals import build_reader

        reader = build_reader(cfg)
        now = time.time()
        try:
            evaluation = evaluate(cfg.rules, reader, now, watch_window(now, None, False, cfg), {}, {}, cfg.error_limit)
        finally:
            reader.close()
        results = {e.rule.name: (e.result, e.seconds) for e in evaluation.rules}
        for row, rule in zip(rows, cfg.rules):
            result, seconds = results[rule.name]
            if isinstance(result, Exception):
                row["online"] = f"FAIL: {result}"
                failed += 1
            elif isinstance(rule.signal, HttpCheck):
                row["online"] = ("ok: " if result.ok else "FAIL: ") + result.detail
                failed += 0 if result.ok else 1
            elif isinstance(rule.signal, PromQuery):
                row["online"] = f"ok: {len(result)} series in {seconds * 1000:.0f} ms"
            else:
                row["online"] = f"ok: {result[0].value if result else '-'}"
    target_problems: list[str] = []
    if online:
        # Apprise takes ~270 ms to import: only the online check asks it about the targets.
        from watcher.notify import check_targets

        target_problems = check_targets(list(cfg.notify))
        failed += len(target_problems)
    fleet_problems: list[str] = []
    if online:
        from watcher.fleet_cli import check_online

        fleet_problems = check_online(cfg)
        failed += len(fleet_problems)
    lines = [f"{cfg.path}: valid; service {cfg.service}, {len(cfg.rules)} rules, mode {cfg.mode}, "
             f"backend {cfg.backend.type if cfg.backend else 'none'}, {len(cfg.notify)} notify target(s)"]
    for row in rows:
        line = f"  {row['rule']:<28} {row['action']:<9} {row['condition']}"
        if "online" in row:
            line += f"   [{row['online']}]"
        lines.append(line)
    if online:
        lines.append(f"online: {len(rows) - failed} of {len(rows)} signals answered")
    lines += [f"notify: {p}" for p in target_problems]
    lines += [f"fleet: {p}" for p in fleet_problems]
    warnings = _check_warnings(cfg)
    lines += [f"warning: {w}" for w in warnings]
    _out({"config": str(cfg.path), "valid": True, "rules": rows, "online_failures": failed,
          "notify_problems": target_problems, "fleet_problems": fleet_problems, "warnings": warnings},
         as_json, "\n".join(lines))
    if failed:
        raise typer.Exit(1)


def _check_warnings(cfg) -> list[str]:
    """Valid but weak: what `check` says without failing."""
    from watcher.rules import HttpCheck

    warnings = []
    probes = [r for r in cfg.rules if isinstance(r.signal, HttpCheck) and r.action == "rollback"]
    if cfg.backend is not None and cfg.verify.url is None and not probes:
        warnings.append("no verify.url and no http rollback rule: after a switch nothing can probe the restored "
                        "release; a rollback is verified only by the fired rules clearing on it within "
                        f"{cfg.clear_within:.0f}s. Add verify: {{url: ...}} (the app's health endpoint)")
    return warnings


@app.command("eval")
def eval_(config: str = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """Evaluate every rule once now against the live signals; print rule, value, condition,
    state. Reads the saved state (deploy time, baselines, pending timers) but changes nothing."""
    from watcher.evaluate import evaluate, watch_window
    from watcher.format import format_labels, format_value
    from watcher.signals import build_reader
    from watcher.state import State, StateStore

    cfg = _load(config)
    try:
        state = StateStore(cfg.state_dir).load()
    except WatcherError:
        state = State()
    now = time.time()
    window_s = watch_window(now, state.deployed_at, state.in_watch_window(now), cfg)
    reader = build_reader(cfg)
    try:
        evaluation = evaluate(cfg.rules, reader, now, window_s, state.rules, state.baselines, cfg.error_limit)
    finally:
        reader.close()
    rows = [dict(row, state=row.pop("phase")) for row in evaluation.rows]
    if as_json:
        _out({"time": now, "window_s": window_s, "release": state.current, "rules": rows}, True, "")
        return
    print(f"{'RULE':<26} {'VALUE':>10}  {'CONDITION':<36} {'OUTCOME':<8} {'STATE':<8} DETAIL")
    for r in rows:
        detail = r["detail"] or (format_labels(r["labels"]) if r["labels"] else "")
        print(f"{r['rule']:<26} {format_value(r['value'], r['unit']):>10}  {r['condition'][:36]:<36} "
              f"{r['outcome']:<8} {r['state']:<8} {detail}")
    print(f"[$window] = {window_s}s; release {state.current or 'unknown'}")


@app.command()
def run(
    config: str = ConfigOpt,
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging."),
) -> None:
    """Run the service: one tick every `interval`. SIGHUP reloads, SIGTERM finishes the tick
    in hand and exits 0. Meant for systemd (Type=notify)."""
    from watcher.daemon import serve
    from watcher.service import build_watcher

    _setup_logging(verbose)
    cfg = _load(config)
    code = serve(build_watcher(cfg, telemetry=cfg.telemetry.listen is not None, fleet=True))
    raise typer.Exit(code)


@app.command()
def status(config: str = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """The current release, its window, every rule's state and the open incident."""
    from watcher.state import StateStore

    cfg = _load(config)
    store = StateStore(cfg.state_dir)
    state = store.load()
    now = time.time()
    undelivered = _undelivered(store)
    data = {
        "service": cfg.service,
        "running": store.service_running(),
        "release": state.current,
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
                         "errors": rs.errors, "blind": rs.blind} for name, rs in state.rules.items()},
        "incident": state.incident.to_dict() if state.incident else None,
        "undelivered_notifications": undelivered,
    }
    lines = [f"{cfg.service}: release {state.current or 'unknown'}"
             + (f", in its watch window until {_when(state.window_ends)}" if data["in_watch_window"] else "")
             + f"; watcher {'running' if data['running'] else 'not running'}; mode {cfg.mode}"]
    if state.current_problem:
        lines.append(f"CURRENT UNREADABLE: {state.current_problem}\n  the watcher acts not until it can read it")
    if state.confirming:
        c = state.confirming
        lines.append(f"rolled back {c['from']} -> {c['to']}; waiting until {_when(c['until'])} for "
                     f"{', '.join(c['rules'])} to clear")
    if state.lock_wait:
        lines.append(f"waiting for the deploy lock since {_when(state.lock_wait['since'])} (the window waits too)")
    if state.halted:
        lines.append(f"HALTED: {state.halted}\n  fix the host, then run: rollback-watcher resolve")
    if data["paused_until"]:
        lines.append(f"paused until {_when(state.paused_until)}")
    for name, rs in state.rules.items():
        extra = f" since {_when(rs.active_since)}" if rs.active_since else ""
        blind = " BLIND" if rs.blind else ""
        lines.append(f"  {name:<28} {rs.phase.value}{extra}{blind}")
    if state.incident:
        lines.append(f"open incident {state.incident.id} on {state.incident.release}:")
        lines += [f"  {_when(e['time'])} {e['what']}" for e in state.incident.timeline]
    if undelivered:
        lines.append(f"{len(undelivered)} notification(s) not delivered (see `rollback-watcher history`)")
    if cfg.fleet is not None:
        from watcher.fleet_cli import status_block

        data["fleet"], fleet_text = status_block(cfg.fleet, now)
        lines.append(fleet_text)
    _out(data, as_json, "\n".join(lines))


def _undelivered(store) -> list[dict]:
    from watcher.notify import undelivered_from_journal

    return undelivered_from_journal(store.events())


HISTORY_KINDS = {"deploy", "rollback_intent", "rollback_verified", "rollback_failed", "verify_failed", "incident",
                 "window_passed", "mark", "reconcile", "resolve", "pause", "resume", "reload_refused", "verdict"}


@app.command()
def history(
    config: str = ConfigOpt,
    limit: int = typer.Option(50, "--limit", "-n", help="How many events, newest last."),
    all_events: bool = typer.Option(False, "--all", help="Every journal event, not only deploys, rollbacks and incidents."),
    as_json: bool = JsonOpt,
) -> None:
    """Deploys, rollbacks and incidents from the journal."""
    from watcher.state import StateStore

    cfg = _load(config)
    events = [e for e in StateStore(cfg.state_dir).events() if all_events or e.get("kind") in HISTORY_KINDS]
    events = events[-limit:]
    lines = []
    for e in events:
        fields = " ".join(f"{k}={v}" for k, v in e.items() if k not in ("time", "kind", "timeline") and v not in (None, "", [], {}))
        lines.append(f"{_when(e.get('time'))} {e.get('kind'):<18} {fields}")
    _out(events, as_json, "\n".join(lines) or "the journal is empty")


@app.command()
def incidents(config: str = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """Closed incidents with their timelines."""
    from watcher.state import StateStore

    cfg = _load(config)
    found = [e for e in StateStore(cfg.state_dir).events() if e.get("kind") == "incident"]
    lines = []
    for inc in found:
        lines.append(f"{inc.get('id')} {_when(inc.get('opened_at'))} release {inc.get('release')}: {inc.get('summary')} ({inc.get('resolution')})")
        lines += [f"    {_when(t.get('time'))} {t.get('what')}" for t in inc.get("timeline", [])]
    _out(found, as_json, "\n".join(lines) or "no incidents")


@app.command()
def releases(config: str = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """Every release the backend has, newest first, with its marks, which is current, and where
    its place in the order comes from: `timeline` (the watcher saw it deployed), `created` (the
    backend's creation time) or `unknown` (after the others, in the backend's listing order)."""
    from watcher.decide import order_releases
    from watcher.service import build_watcher

    cfg = _load(config)
    w = build_watcher(cfg, notify=False)
    if w.backend is None:
        raise WatcherError("no backend is configured")
    state = w.store.load()
    current = w.backend.current().id
    rows = []
    for r, source in order_releases(w.backend.releases(), state.releases):
        rec = state.releases.get(r.id)
        rows.append({"id": r.id, "current": r.id == current, "mark": rec.mark if rec else None,
                     "barrier": bool(rec and rec.barrier), "auto_rollbacks": rec.auto_rollbacks if rec else 0,
                     "location": r.location, "order": source.value,
                     "deployed_at": rec.deployed_at if rec else None, "created": r.created})
    lines = [f"{'*' if r['current'] else ' '} {r['id']:<24} {r['mark'] or '-':<6} {r['order']:<9} "
             f"{_when(r['deployed_at'] if r['order'] == 'timeline' else r['created']) if r['order'] != 'unknown' else '-':<20}"
             f" {'barrier' if r['barrier'] else ''}".rstrip()
             for r in rows]
    _out(rows, as_json, "\n".join(lines) + "\n(* current; newest first, ordered by: timeline = deployed while watched, "
         "created = creation time, unknown = the backend's order)")


def _human_request(cfg, command: str, args: dict, wait: float = 60.0) -> str:
    """Apply a human's request: through the running service when there is one (state.json has
    one writer), else directly under the instance lock."""
    from watcher.human import RequestRefused
    from watcher.locks import acquire_host
    from watcher.service import build_watcher

    w = build_watcher(cfg, fleet=True)
    store = w.store
    if store.service_running():
        request_id = store.submit_request(command, **args)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            for e in store.events():
                if e.get("kind") == "request_done" and e.get("request") == request_id:
                    if e.get("ok") is False:
                        raise RequestRefused(f"{e.get('result')} (the running watcher refused it)")
                    return f"{e.get('result')} (applied by the running watcher)"
            time.sleep(0.2)
        return f"queued as {request_id}; the running watcher applies it at its next tick"
    store.acquire()
    host_lock = None
    try:
        host_lock = acquire_host(cfg.backend)
        w.state = store.load()
        result = w.apply_request(command, args, time.time())
        w.save()
        if w.fleet is not None:
            w.fleet.link.flush_once()  # a rollback by hand tells the fleet now, or at the service's start
        return result
    finally:
        if w.notifier is not None:
            w.notifier.flush(timeout=15)
            w.notifier.close(timeout=1)
        if host_lock is not None:
            host_lock.release()
        store.release_lock()


def _mark(config: str, release: str, what: str, reason: str | None, force: bool) -> None:
    cfg = _load(config)
    print(_human_request(cfg, "mark", {"release": release, "mark": what, "reason": reason, "force": force}))


ForceMarkOpt = typer.Option(False, "--force", help="Mark a release the backend does not list (yet).")


@mark_app.command("good")
def mark_good(release: str, config: str = ConfigOpt, reason: Optional[str] = typer.Option(None, help="Why."),
              force: bool = ForceMarkOpt) -> None:
    """Mark RELEASE known-good: auto-rollback may target it."""
    _mark(config, release, "good", reason, force)


@mark_app.command("bad")
def mark_bad(release: str, config: str = ConfigOpt, reason: Optional[str] = typer.Option(None, help="Why."),
             force: bool = ForceMarkOpt) -> None:
    """Mark RELEASE bad: auto-rollback never targets it."""
    _mark(config, release, "bad", reason, force)


@mark_app.command("barrier")
def mark_barrier(
    release: str,
    config: str = ConfigOpt,
    remove: bool = typer.Option(False, "--remove", help="Take the barrier away."),
    force: bool = ForceMarkOpt,
) -> None:
    """Mark RELEASE as not reversible (e.g. it ran a destructive migration): auto-rollback never
    crosses it; a human is called instead."""
    _mark(config, release, "not-barrier" if remove else "barrier", None, force)


@mark_app.command("deployed")
def mark_deployed(
    release: str,
    config: str = ConfigOpt,
    at: Optional[float] = typer.Option(None, help="Deploy time, epoch seconds (default: now); finite, not in the future."),
    force: bool = typer.Option(False, "--force", help="Record the deploy although RELEASE is not current."),
) -> None:
    """Announce a deploy of RELEASE from a deploy script, instead of waiting for the next poll."""
    from watcher.human import deploy_time

    cfg = _load(config)
    # Checked here too, so that a bad time fails at once rather than after a trip to the service.
    deploy_time(at, time.time())
    print(_human_request(cfg, "deployed", {"release": release, "at": at, "force": force}))


@app.command()
def pause(
    duration: str = typer.Option(..., "--for", help="How long, e.g. 1h or 30m."),
    config: str = ConfigOpt,
) -> None:
    """Stop acting for a while (decide and notify "would roll back" only)."""
    from watcher.config import parse_duration

    try:
        seconds = parse_duration(duration)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--for") from None
    print(_human_request(_load(config), "pause", {"seconds": seconds}))


@app.command()
def resume(config: str = ConfigOpt) -> None:
    """End a pause."""
    print(_human_request(_load(config), "resume", {}))


@app.command()
def resolve(config: str = ConfigOpt) -> None:
    """A human ends an incident after a failed rollback: the watcher acts again."""
    print(_human_request(_load(config), "resolve", {}))


@app.command()
def rollback(
    to: Optional[str] = typer.Option(None, "--to", help="Release id (default: the newest known-good older one)."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the plan and check the target; change nothing."),
    reason: str = typer.Option("manual rollback", help="Recorded in the journal and messages."),
    config: str = ConfigOpt,
) -> None:
    """Roll back by hand, through the same path as the automatic one: plan (the planner the
    service uses), lock, re-read current, preflight, switch, verify, journal. --dry-run goes
    down the same path and stops before the first change. Without --yes it shows the plan and asks."""
    from watcher.errors import RollbackError, UnsafeReleaseId
    from watcher.model import RollbackResult
    from watcher.rollback import execute, plan_rollback
    from watcher.service import build_watcher

    cfg = _load(config)
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


@app.command("notify-test")
def notify_test(
    config: str = ConfigOpt,
    severity: str = typer.Option("info", "--severity", help="info, success, warning, failure or critical."),
) -> None:
    """Send a test message to every notify target and report, per target, whether it arrived."""
    from watcher import notify
    from watcher.messages import MessageContext

    cfg = _load(config)
    code = notify.notify_test_command(list(cfg.notify), severity, sys.stdout, ctx=MessageContext(cfg.service, cfg.host))
    raise typer.Exit(code)


@app.command()
def backtest(
    config: str = ConfigOpt,
    since: str = typer.Option("24h", help="Start: a duration ago (7d), ISO 8601 or epoch seconds."),
    until: Optional[str] = typer.Option(None, help="End (default now), same forms as --since."),
    step: Optional[str] = typer.Option(None, help="Step between evaluations (default: the config's interval)."),
    rule: Optional[list[str]] = typer.Option(None, "--rule", help="Only this rule (repeatable)."),
    deploys: str = typer.Option("journal", help="Deploy times: journal, auto, or a FILE of 'TIME [RELEASE]' lines."),
    deploy_metric: str = typer.Option("app_build_info", help="Info metric for --deploys auto."),
    release_label: str = typer.Option("release", help="Label of the release in --deploy-metric."),
    as_json: bool = JsonOpt,
) -> None:
    """Replay the rules over Prometheus history: when each would have been pending and firing,
    and which deploys would have been rolled back."""
    from watcher import backtest as bt
    from watcher.config import parse_duration
    from watcher.signals import PrometheusSource
    from watcher.state import StateStore

    cfg = _load(config)
    now = time.time()
    start, end = bt.parse_time(since, now), bt.parse_time(until, now) if until else now
    step_s = parse_duration(step) if step else cfg.interval
    source = PrometheusSource(cfg.prometheus.url, max(cfg.prometheus.timeout, 30.0), cfg.prometheus.headers)
    if deploys == "journal":
        found = bt.deploys_from_journal(StateStore(cfg.state_dir).events())
    elif deploys == "auto":
        found = bt.auto_deploys(source, deploy_metric, release_label, start - cfg.watch_window, end, step_s)
    else:
        found = bt.deploys_from_file(Path(deploys), now)
    result = bt.run_backtest(cfg, source, start, end, step_s, found, rule or None)
    _out(bt.to_json(result), as_json, bt.render_text(result, _when))


@app.command("test")
def test_rules(file: Path = typer.Argument(..., help="A rule test file (see rules/tests/default_test.yaml).")) -> None:
    """Unit-test rules without Prometheus: query results per step in, states and rollbacks out.
    Exit 1 on any failed expectation. (Test the PromQL itself with `promtool test rules`.)"""
    from watcher import ruletest

    results = ruletest.run_file(file)
    print(ruletest.report(file, results))
    raise typer.Exit(0 if all(r.ok for r in results) else 1)


@app.command()
def explain(rule: str, config: str = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """Why RULE is in its state: the query, each series now, the threshold or baseline and where
    it came from, the `for` progress, and the last transitions."""
    import dataclasses

    from watcher import explain as ex
    from watcher.state import StateStore

    cfg = _load(config)
    e = ex.explain(cfg, StateStore(cfg.state_dir), rule)
    _out(dataclasses.asdict(e), as_json, ex.render_text(e, cfg.rule(rule).value_unit))


@app.command()
def demo() -> None:
    """A bad deploy detected and rolled back on a sandbox host (about 30 s; what `make demo` runs)."""
    from watcher.demo.run import demo as run_demo

    raise typer.Exit(run_demo())


@app.command()
def version() -> None:
    """Print the version."""
    from watcher import __version__

    print(__version__)


# ---------------------------------------------------------------------------------------------
# Fleet commands (`gate`, `fleet status`) live in their own module.

from watcher.fleet_cli import register as _register_fleet  # noqa: E402 - after the app's own commands

_register_fleet(app, ConfigOpt, JsonOpt)


if __name__ == "__main__":
    main()
