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
import os
import sys
import time
from pathlib import Path
from typing import Optional

import typer

from watcher.base.errors import ConfigError, ConfigProblem, StateError, WatcherError
from watcher.base.logs import SyslogPrefixFormatter, journald_stream

DEFAULT_CONFIG = "/etc/rollback-watcher/watcher.yaml"

# rich_markup_mode=None: click's plain help, where a boolean option shows as a flag (rich mode
# printed `--json <bool>`) and each command's first sentence is its one-line summary.
app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode=None,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
mark_app = typer.Typer(help="Mark a release: deployed, good, bad, barrier.", no_args_is_help=True,
                       rich_markup_mode=None, context_settings={"help_option_names": ["-h", "--help"]})
app.add_typer(mark_app, name="mark")

ConfigOpt = typer.Option(
    DEFAULT_CONFIG, "--config", "-c", envvar="ROLLBACK_WATCHER_CONFIG", help="watcher.yaml to read.", show_default=True
)
JsonOpt = typer.Option(False, "--json", help="Print JSON for scripts.")


def main() -> None:
    """Entry point: a usage error prints click's usage and exits 2; every WatcherError ends as one
    readable line (or one per config problem) and exit 1; a command that cannot do its job exits
    non-zero. Never a traceback for something the user typed. With --json, stdout holds JSON
    even then (`_json_error`); the human text goes to stderr as always."""
    try:
        # Outside standalone mode click returns the code of typer.Exit instead of exiting.
        code = app(standalone_mode=False)
    except ConfigError as exc:
        _show_config_error(exc)
        sys.exit(1)
    except WatcherError as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        _json_error(exc, str(exc))
        sys.exit(1)
    except typer.Abort:
        print("Aborted; nothing was changed.", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        sys.exit(130)
    except typer.TyperException as exc:
        # typer 0.28 (pyproject.toml pins the tested range) raises the exceptions of its own
        # vendored click (typer._click), whose base is the public typer.TyperException:
        # UsageError (exit 2), BadParameter, NoSuchOption...
        _show_usage_error(exc)
        _json_error(exc, exc.format_message())
        sys.exit(exc.exit_code)
    sys.exit(code if isinstance(code, int) else 0)


def _show_config_error(exc: ConfigError) -> None:
    """Every problem as FILE:LINE: KEY: message, then a summary (and the JSON error)."""
    for problem in exc.problems:
        print(str(problem), file=sys.stderr)
    summary = f"{len(exc.problems)} problem(s); nothing was changed."
    print(summary, file=sys.stderr)
    _json_error(exc, summary, [{"file": p.file, "line": p.line, "key": p.key, "message": p.message, "text": str(p)}
                               for p in exc.problems])


def _json_error(exc: Exception, message: str, problems: list[dict] | None = None) -> None:
    """`--json` promises JSON on stdout: an error is a JSON object too, never an empty stdout."""
    argv = sys.argv[1:]
    options = argv[: argv.index("--")] if "--" in argv else argv
    if "--json" not in options:
        return
    error = {"error": type(exc).__name__, "message": message}
    if problems is not None:
        error["valid"] = False
        error["problems"] = problems
    print(json.dumps(error, indent=2, sort_keys=True))


def _show_usage_error(exc: typer.TyperException) -> None:
    show = getattr(exc, "show", None)
    if show is None:
        print(f"Error: {exc.format_message()}", file=sys.stderr)
    else:
        show()
    option = getattr(exc, "option_name", None)
    if option and option.startswith("-") and not getattr(exc, "possibilities", None):
        # A release id such as "-rc1" looks like an option: the POSIX `--` ends the options.
        # click names "-r" for "-rc1" (a cluster of short options): show what was typed.
        typed = next((a for a in sys.argv[1:] if a.startswith(option)), option)
        ctx = getattr(exc, "ctx", None)
        command = ctx.command_path if ctx is not None else "rollback-watcher COMMAND"
        print(f"If {typed} is a value (a release id), not an option, put it after `--`: "
              f"{command} -- {typed}", file=sys.stderr)


def _print_version(value: bool) -> None:
    if value:
        from watcher import __version__

        print(f"rollback-watcher {__version__}")
        raise typer.Exit(0)


@app.callback()
def _top(
    version: bool = typer.Option(False, "--version", "-V", is_eager=True, callback=_print_version,
                                 help="Print the version and exit."),
) -> None:
    """Watch a fresh deploy through Prometheus and health probes; roll the host back to the last
    known-good release when a rule fires, verify it, and tell people."""


def _load(config: str):
    """Load the config; from here on, nothing this process prints or logs shows its secrets."""
    from watcher.config.load import load_config
    from watcher.config.scrub import RedactingStream, redact_logs, redactor_for

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


def _duration_option(text: str, option: str) -> float:
    """A CLI duration, through the parser watcher.yaml uses; a bad one is a usage error (exit 2)."""
    from watcher.base.durations import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=option) from None


def _when(t: float | None) -> str:
    """A time as every output writes it (watcher.base.format), "-" when there is none."""
    from watcher.base.format import format_time

    return format_time(t) if t else "-"


def _journal_field(key: str, value) -> str:
    """`key=value` of a journal event for people: times as times, numbers rounded (the journal
    itself keeps the raw values for machines)."""
    from watcher.base.format import format_number

    if isinstance(value, float) and (key in ("until", "at", "window_ends", "deployed_at") or key.endswith("_at")):
        return f"{key}={_when(value)}"
    if isinstance(value, float):
        return f"{key}={format_number(value)}"
    return f"{key}={value}"


# ---------------------------------------------------------------------------------------------


@app.command()
def check(
    config: str = ConfigOpt,
    online: bool = typer.Option(False, "--online", help="Also run each query once, probe each URL, "
                                "look the rules' metrics up and try the telemetry port."),
    as_json: bool = JsonOpt,
) -> None:
    """Validate the config, its rules and the paths it names.

    Offline: the syntax, the backend's paths and the deploy lock's directory on this host, and
    every notify URL as Apprise parses it. Exit 0 when valid, 1 with every problem listed."""
    from watcher.notify import urlcheck as targetcheck
    from watcher.config import hostcheck

    cfg = _load(config)
    # What cannot work on this host is a config problem like any other: FILE:LINE: KEY: message.
    lines_of = hostcheck.key_lines(cfg.path)
    problems = hostcheck.path_problems(cfg, lines_of)
    for text in targetcheck.target_problems(cfg.notify, targetcheck.cache_dir()):
        key, _, message = text.partition(": ")
        problems.append(ConfigProblem(str(cfg.path), lines_of.get(key), key, message))
    if problems:
        raise ConfigError(problems)
    rows = []
    for rule in cfg.rules:
        kind = type(rule.signal).__name__
        rows.append({"rule": rule.name, "signal": kind, "condition": rule.condition_text(), "action": rule.action,
                     "file": str(rule.location)})
    if online:
        from watcher.actions.online import check_online

        report = check_online(cfg, rows, time.time())
    else:
        report = None
    lines = [f"{cfg.path}: valid; service {cfg.service}, {len(cfg.rules)} rules, mode {cfg.mode}, "
             f"backend {cfg.backend.type if cfg.backend else 'none'}, {len(cfg.notify)} notify target(s)"]
    for row in rows:
        line = f"  {row['rule']:<28} {row['action']:<9} {row['condition']}"
        if "online" in row:
            line += f"   [{row['online']}]"
        lines.append(line)
    warnings = _check_warnings(cfg)
    data = {"config": str(cfg.path), "valid": True, "rules": rows, "notify_problems": [], "warnings": warnings}
    if report is not None:
        lines += report.lines(len(rows), len(cfg.notify))
        online = report.as_json()
        data.update(online, warnings=warnings + online["warnings"])
    lines += [f"warning: {w}" for w in warnings]
    _out(data, as_json, "\n".join(lines))
    if report is not None and report.failed:
        raise typer.Exit(1)


def _check_warnings(cfg) -> list[str]:
    """Valid but weak: what `check` says without failing."""
    from watcher.core.rules import HttpCheck

    warnings = []
    probes = [r for r in cfg.rules if isinstance(r.signal, HttpCheck) and r.action == "rollback"]
    if cfg.backend is not None and cfg.verify.url is None and not probes:
        warnings.append("no verify.url and no http rollback rule: after a switch nothing can probe the restored "
                        "release; a rollback is verified only by the fired rules clearing on it within "
                        f"{cfg.clear_within:.0f}s. Add verify: {{url: ...}} (the app's health endpoint)")
    return warnings


@app.command("eval")
def eval_(config: str = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """Evaluate every rule once, now, against the live signals.

    Prints rule, value, condition and state. Reads the saved state (deploy time, baselines,
    pending timers) but changes nothing. Exit 1 when no rule's signal could be read."""
    from watcher.core.evaluate import evaluate, watch_window
    from watcher.base.format import format_labels, format_value
    from watcher.signals.reader import build_reader
    from watcher.store.state import State, StateStore

    cfg = _load(config)
    try:
        state = StateStore(cfg.state_dir).load()
    except WatcherError:
        state = State()
    now = time.time()
    window_s = watch_window(now, state, cfg)
    reader = build_reader(cfg)
    try:
        evaluation = evaluate(cfg.rules, reader, now, window_s, state.rules, state.baselines, cfg.error_limit,
                              scrape_interval=cfg.prometheus.scrape_interval, at=now)
    finally:
        reader.close()
    rows = [dict(row, state=row.pop("phase")) for row in evaluation.rows]
    # Every query failed (Prometheus down, every probe refused): the table says nothing about
    # the rules, so the command did not do its job.
    blind = bool(rows) and all(r["outcome"] == "error" for r in rows)
    if as_json:
        _out({"time": now, "window_s": window_s, "release": state.current, "rules": rows,
              "every_signal_failed": blind}, True, "")
    else:
        print(f"{'RULE':<26} {'VALUE':>10}  {'CONDITION':<36} {'OUTCOME':<8} {'STATE':<8} DETAIL")
        for r in rows:
            detail = r["detail"] or (format_labels(r["labels"]) if r["labels"] else "")
            print(f"{r['rule']:<26} {format_value(r['value'], r['unit']):>10}  {r['condition'][:36]:<36} "
                  f"{r['outcome']:<8} {r['state']:<8} {detail}")
        print(f"[$window] = {window_s}s; release {state.current or 'unknown'}")
    if blind:
        print(f"FAILED: no rule's signal could be read ({len(rows)} of {len(rows)} failed)", file=sys.stderr)
        raise typer.Exit(1)


@app.command()
def run(
    config: str = ConfigOpt,
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging."),
) -> None:
    """Run the service: one tick every `interval`.

    SIGHUP reloads, SIGTERM finishes the tick in hand and exits 0. Meant for systemd
    (Type=notify). Exit 78 when it cannot start on this host (the config does not load,
    state.json is damaged, the telemetry port is taken): restarting would not help."""
    from watcher.service.daemon import serve
    from watcher.config.hostcheck import EXIT_CANNOT_START
    from watcher.service.tick import build_watcher

    _setup_logging(verbose)
    try:
        cfg = _load(config)
    except ConfigError as exc:
        # Exit 1 would be a crash to systemd, and Restart=on-failure would re-read the same
        # file every RestartSec forever: the unit's RestartPreventExitStatus= names 78.
        _show_config_error(exc)
        raise typer.Exit(EXIT_CANNOT_START) from None
    try:
        code = serve(build_watcher(cfg, telemetry=cfg.telemetry.listen is not None, fleet=True))
    except StateError as exc:
        if not exc.permanent:
            raise
        # As for the config: only a person can fix a damaged state.json (the message says how);
        # a restart every RestartSec would only read it again.
        print(f"StateError: {exc}", file=sys.stderr)
        raise typer.Exit(EXIT_CANNOT_START) from None
    raise typer.Exit(code)


@app.command()
def status(config: str = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """The release, its watch window, rule states, the incident."""
    from watcher.store.state import StateStore

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
        from watcher.actions.fleet import status_block

        data["fleet"], fleet_text = status_block(cfg.fleet, now)
        lines.append(fleet_text)
    _out(data, as_json, "\n".join(lines))


def _undelivered(store) -> list[dict]:
    from watcher.notify.notifier import undelivered_from_journal

    return undelivered_from_journal(store.events())


HISTORY_KINDS = {"deploy", "rollback_intent", "rollback_verified", "rollback_failed", "verify_failed", "incident",
                 "window_passed", "mark", "reconcile", "resolve", "pause", "resume", "reload_refused", "verdict"}


@app.command()
def history(
    config: str = ConfigOpt,
    limit: int = typer.Option(50, "--limit", "-n", min=1, help="How many events, newest last."),
    all_events: bool = typer.Option(False, "--all", help="Every journal event, not only deploys, rollbacks and incidents."),
    as_json: bool = JsonOpt,
) -> None:
    """Deploys, rollbacks and incidents from the journal."""
    from watcher.store.state import StateStore

    cfg = _load(config)
    events = [e for e in StateStore(cfg.state_dir).events() if all_events or e.get("kind") in HISTORY_KINDS]
    events = events[-limit:]
    lines = []
    for e in events:
        fields = " ".join(_journal_field(k, v) for k, v in e.items()
                          if k not in ("time", "kind", "timeline") and v not in (None, "", [], {}))
        lines.append(f"{_when(e.get('time'))} {e.get('kind'):<18} {fields}")
    _out(events, as_json, "\n".join(lines) or "the journal is empty")


@app.command()
def incidents(config: str = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """Closed incidents with their timelines."""
    from watcher.store.state import StateStore

    cfg = _load(config)
    found = [e for e in StateStore(cfg.state_dir).events() if e.get("kind") == "incident"]
    lines = []
    for inc in found:
        lines.append(f"{inc.get('id')} {_when(inc.get('opened_at'))} release {inc.get('release')}: {inc.get('summary')} ({inc.get('resolution')})")
        lines += [f"    {_when(t.get('time'))} {t.get('what')}" for t in inc.get("timeline", [])]
    _out(found, as_json, "\n".join(lines) or "no incidents")


@app.command()
def releases(config: str = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """Every release the backend has, newest first, with its marks.

    Which is current, and where its place in the order comes from: `timeline` (the watcher saw
    it deployed), `created` (the backend's creation time) or `unknown` (after the others, in the
    backend's listing order)."""
    from watcher.core.decide import order_releases
    from watcher.service.tick import build_watcher

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
    one writer), else directly under the instance lock; so too when the service stops before
    it took the request (withdrawn: its file was still there)."""
    from watcher.service.human import RequestRefused
    from watcher.backends import identity_of
    from watcher.store.locks import acquire_host
    from watcher.service.tick import build_watcher

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
        w.state = store.load()
        result = w.apply_request(command, args, time.time())
        w.save()
        if w.fleet is not None:
            w.fleet.link.flush_once()  # a rollback by hand tells the fleet now, or at the service's start
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
    import getpass

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
    from watcher.backends.base import check_release_id

    # Refused here, before the request is queued: a running watcher would only journal it.
    release = check_release_id(release)
    cfg = _load(config)
    _print_result(_human_request(cfg, "mark", {"release": release, "mark": what, "reason": reason, "force": force}))


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
    """Mark RELEASE as not reversible: no rollback across it.

    Use it after a destructive migration, for example. Auto-rollback never crosses it; a human is called instead."""
    _mark(config, release, "not-barrier" if remove else "barrier", None, force)


@mark_app.command("deployed")
def mark_deployed(
    release: str,
    config: str = ConfigOpt,
    at: Optional[float] = typer.Option(None, help="Deploy time, epoch seconds (default: now); finite, not in the future."),
    force: bool = typer.Option(False, "--force", help="Record the deploy although RELEASE is not current."),
) -> None:
    """Announce a deploy of RELEASE now, from a deploy script.

    The watcher need not wait for its next poll to see it."""
    from watcher.backends.base import check_release_id
    from watcher.service.human import deploy_time

    release = check_release_id(release)
    cfg = _load(config)
    # Checked here too, so that a bad time fails at once rather than after a trip to the service.
    deploy_time(at, time.time())
    _print_result(_human_request(cfg, "deployed", {"release": release, "at": at, "force": force}))


@app.command()
def pause(
    duration: str = typer.Option(..., "--for", help="How long, e.g. 1h or 30m."),
    config: str = ConfigOpt,
) -> None:
    """Stop acting for a while (decide and notify only)."""
    seconds = _duration_option(duration, "--for")
    _print_result(_human_request(_load(config), "pause", {"seconds": seconds}))


@app.command()
def resume(config: str = ConfigOpt) -> None:
    """End a pause."""
    _print_result(_human_request(_load(config), "resume", {}))


@app.command()
def resolve(config: str = ConfigOpt) -> None:
    """End an incident after a failed rollback.

    The watcher acts again."""
    _print_result(_human_request(_load(config), "resolve", {}))


@app.command()
def rollback(
    to: Optional[str] = typer.Option(None, "--to", help="Release id (default: the newest known-good older one)."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the plan and check the target; change nothing."),
    reason: str = typer.Option("manual rollback", help="Recorded in the journal and messages."),
    config: str = ConfigOpt,
) -> None:
    """Roll back by hand, as the automatic rollback does.

    Plan (the planner the service uses), lock, re-read current, preflight, switch, verify,
    journal. --dry-run goes down the same path and stops before the first change. Without --yes
    it shows the plan and asks."""
    from watcher.base.errors import RollbackError, UnsafeReleaseId
    from watcher.core.model import RollbackResult
    from watcher.service.rollback import execute, plan_rollback
    from watcher.service.tick import build_watcher

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
    """Send a test message to every notify target.

    Reports, per target, whether it arrived."""
    from watcher.notify import notifier as notify
    from watcher.core.messages import MessageContext, Severity

    try:
        Severity.parse(severity)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--severity") from None
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
    """Replay the rules over Prometheus history.

    Shows when each rule would have been pending and firing, and which deploys would have been
    rolled back. Exit 1 when every evaluation failed (e.g. Prometheus unreachable)."""
    from watcher.actions import backtest as bt
    from watcher.signals.reader import PrometheusSource
    from watcher.store.state import StateStore

    step_s = _duration_option(step, "--step") if step else None
    now = time.time()
    try:
        start, end = bt.parse_time(since, now), bt.parse_time(until, now) if until else now
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--since/--until") from None
    cfg = _load(config)
    step_s = step_s or cfg.interval
    source = PrometheusSource(cfg.prometheus.url, max(cfg.prometheus.timeout, 30.0), cfg.prometheus.headers)
    if deploys == "journal":
        found = bt.deploys_from_journal(StateStore(cfg.state_dir).events())
    elif deploys == "auto":
        found = bt.auto_deploys(source, deploy_metric, release_label, start - cfg.watch_window, end, step_s)
    else:
        found = bt.deploys_from_file(Path(deploys), now)
    result = bt.run_backtest(cfg, source, start, end, step_s, found, rule or None)
    _out(bt.to_json(result), as_json, bt.render_text(result, _when))
    if result.every_step_failed():
        raise typer.Exit(1)


@app.command("test")
def test_rules(file: Path = typer.Argument(..., help="A rule test file (see rules/tests/default_test.yaml).")) -> None:
    """Unit-test rules without Prometheus.

    Query results per step in, states and rollbacks out. Exit 1 on any failed expectation.
    (Test the PromQL itself with `promtool test rules`.)"""
    from watcher.actions import ruletest

    results = ruletest.run_file(file)
    print(ruletest.report(file, results))
    raise typer.Exit(0 if all(r.ok for r in results) else 1)


@app.command()
def explain(rule: str, config: str = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """Why RULE is in its state.

    The query, each series now, the threshold or baseline and where it came from, the `for`
    progress, and the last transitions."""
    import dataclasses

    from watcher.actions import explain as ex
    from watcher.store.state import StateStore

    cfg = _load(config)
    e = ex.explain(cfg, StateStore(cfg.state_dir), rule)
    _out(dataclasses.asdict(e), as_json, ex.render_text(e, cfg.rule(rule).value_unit))


@app.command()
def demo() -> None:
    """A bad deploy rolled back on a sandbox host, in about 30 s.

    What `make demo` runs."""
    from watcher.demo.run import demo as run_demo

    raise typer.Exit(run_demo())


@app.command()
def version() -> None:
    """Print the version."""
    from watcher import __version__

    print(__version__)


# ---------------------------------------------------------------------------------------------
# Fleet commands (`gate`, `fleet status`) live in their own module.

from watcher.actions.fleet import register as _register_fleet  # noqa: E402 - after the app's own commands

_register_fleet(app, ConfigOpt, JsonOpt)


if __name__ == "__main__":
    main()
