"""`check`, `eval` and `notify-test`: is the config right, what do the rules read now, do the
messages arrive."""

from __future__ import annotations

import math
import sys
import time
from typing import TYPE_CHECKING

import typer

from watcher.base.errors import ConfigError, ConfigProblem, WatcherError
from watcher.cli.common import SETTINGS, ConfigOpt, JsonOpt, current_release, load, out

if TYPE_CHECKING:
    from watcher.config.schema import WatcherConfig

app = typer.Typer(**SETTINGS)


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
    # ~45 ms CPU of import at --help (the config loader, the backends, the notify URL cache).
    from watcher.config import hostcheck
    from watcher.notify import urlcheck as targetcheck

    cfg = load(config)
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
        from watcher.actions.online import check_online  # requests and the reader: ~100 ms CPU

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
    warnings = _check_warnings(cfg, lines_of)
    data = {"config": str(cfg.path), "valid": True, "rules": rows, "notify_problems": [], "warnings": warnings}
    if report is not None:
        lines += report.lines(len(rows), len(cfg.notify))
        online_json = report.as_json()
        data.update(online_json, warnings=warnings + online_json["warnings"])
    lines += [f"warning: {w}" for w in warnings]
    out(data, as_json, "\n".join(lines))
    if report is not None and report.failed:
        raise typer.Exit(1)


def _check_warnings(cfg: WatcherConfig, lines_of: dict[str, int]) -> list[str]:
    """Valid but weak: what `check` says without failing."""
    from watcher.config.hostcheck import notify_as_written
    from watcher.core.rules import HttpCheck, PromQuery  # ~13 ms CPU of import at --help (check has it loaded)
    from watcher.notify.urlcheck import typed_credentials

    warnings = []
    if not cfg.notify:
        warnings.append(f"{cfg.path}: notify: no notify targets: nobody will hear of a rollback, a rollback that "
                        "failed or a watcher that needs a human. Add one (`notify:`, docs/config.md), then "
                        "`rollback-watcher notify-test`")
    for index, what in typed_credentials(notify_as_written(cfg.path)):
        key = f"notify[{index}]"
        where = f"{cfg.path}:{lines_of[key]}" if key in lines_of else str(cfg.path)
        warnings.append(f"{where}: {key}: {what}: anyone who can read the file has it. Put it in the environment "
                        "(the unit's EnvironmentFile=/etc/rollback-watcher/env, mode 0600) and write ${VAR} in "
                        "its place (docs/config.md)")
    probes = [r for r in cfg.rules if isinstance(r.signal, HttpCheck) and r.action == "rollback"]
    if cfg.backend is not None and cfg.verify.url is None and not probes:
        warnings.append("no verify.url and no http rollback rule: after a switch nothing can probe the restored "
                        "release; a rollback is verified only by the fired rules clearing on it within "
                        f"{cfg.clear_within:.0f}s. Add verify: {{url: ...}} (the app's health endpoint)")
    scrape = cfg.prometheus.scrape_interval
    for rule in cfg.rules:
        # A restart the watcher cannot see (a deploy without the deploy lock, or one holding it
        # only between two ticks: a lock leaves no trace) reads as `up` 0 for a scrape or two;
        # an instant query with a shorter `for` rolls the healthy release back on it (sim seed
        # 22000561: a redeploy of the current release under a 0.5 s lock).
        if (rule.action == "rollback" and isinstance(rule.signal, PromQuery) and rule.signal.is_instant
                and rule.for_ < 2 * scrape):
            warnings.append(f"{rule.location}: {rule.name}: an instant query with `for` shorter than two scrape "
                            f"intervals ({2 * scrape:g}s): a restart the watcher cannot see (a deploy without the "
                            "deploy lock, or holding it only between two ticks) reads as a breach for a scrape "
                            "and rolls the healthy release back. Give it `for: 1m` (the shipped table's) or at "
                            "least two scrape intervals")
    return warnings


@app.command("eval")
def eval_(config: str = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """Evaluate every rule once, now, against the live signals.

    Prints rule, value, condition and state. Reads the saved state (deploy time, baselines,
    pending timers) but changes nothing. Exit 1 when no rule's signal could be read."""
    # The evaluation, the reader (requests, the Prometheus client) and the state: ~100 ms CPU of
    # import that --help and check must not pay.
    from watcher.actions.online import silent_rollback_rules
    from watcher.base.format import format_labels, format_value, shorten
    from watcher.core.evaluate import evaluate, watch_window
    from watcher.signals.reader import build_reader
    from watcher.store.state import State, StateStore

    cfg = load(config)
    store = StateStore(cfg.state_dir)
    try:
        state = store.load()
    except WatcherError:
        state = State()
    release, source = current_release(cfg, state.current, store.service_running())
    now = time.time()
    window_s = watch_window(now, state, cfg)
    reader = build_reader(cfg)
    try:
        evaluation = evaluate(cfg.rules, reader, now, window_s, state.rules, state.baselines, cfg.error_limit,
                              scrape_interval=cfg.prometheus.scrape_interval, at=now, since=state.changed_at,
                              interval=cfg.interval)
    finally:
        reader.close()
    rows = [dict(row, state=row.pop("phase")) for row in evaluation.rows]
    # No metric lookup here (eval reads each signal once, nothing more): the hints say what the
    # outcome alone tells; `check --online` also names the metrics nobody exports.
    serving = [r["rule"] for r in rows
               if r["outcome"] == "ok" and (r["value"] is None or math.isfinite(r["value"]))]
    silent = silent_rollback_rules(cfg.rules, {r["rule"]: r["outcome"] for r in rows}, None, cfg.prometheus.labels,
                                   serving)
    # Every query failed (Prometheus down, every probe refused): the table says nothing about
    # the rules, so the command did not do its job.
    blind = bool(rows) and all(r["outcome"] == "error" for r in rows)
    if as_json:
        out({"time": now, "window_s": window_s, "release": release, "release_note": source or None, "rules": rows,
             "every_signal_failed": blind, "known_good": silent}, True, "")
    else:
        print(f"{'RULE':<26} {'VALUE':>10}  {'CONDITION':<36} {'OUTCOME':<8} {'STATE':<8} DETAIL")
        for r in rows:
            detail = r["detail"] or (format_labels(r["labels"]) if r["labels"] else "")
            print(f"{r['rule']:<26} {format_value(r['value'], r['unit']):>10}  {shorten(r['condition'], 36):<36} "
                  f"{r['outcome']:<8} {r['state']:<8} {detail}")
        print(f"[$window] = {window_s}s; release {release or 'unknown'}" + (f" ({source})" if source else ""))
        for line in silent:
            print(line)
    if blind:
        print(f"FAILED: no rule's signal could be read ({len(rows)} of {len(rows)} failed)", file=sys.stderr)
        raise typer.Exit(1)




@app.command("notify-test")
def notify_test(
    config: str = ConfigOpt,
    severity: str = typer.Option("info", "--severity", metavar="LEVEL",
                                 help="info, success, warning, failure or critical."),
) -> None:
    """Send a test message to every notify target.

    Reports, per target, whether it arrived."""
    # The messages and the notifier (Apprise itself only when sending): ~18 ms CPU at --help.
    from watcher.actions.notifytest import notify_test_command
    from watcher.core.envelope import MessageContext, Severity

    try:
        Severity.parse(severity)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--severity") from None
    cfg = load(config)
    code = notify_test_command(list(cfg.notify), severity, sys.stdout, ctx=MessageContext(cfg.service, cfg.host))
    raise typer.Exit(code)
