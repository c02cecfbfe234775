"""`check`, `eval` and `notify-test`: is the config right, what do the rules read now, do the
messages arrive."""

from __future__ import annotations

import sys
import time

import typer

from watcher.base.errors import ConfigError, ConfigProblem, WatcherError
from watcher.cli.common import SETTINGS, ConfigOpt, JsonOpt, load, out

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
    out(data, as_json, "\n".join(lines))
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
    from watcher.actions.online import silent_rollback_rules
    from watcher.base.format import format_labels, format_value
    from watcher.core.evaluate import evaluate, watch_window
    from watcher.signals.reader import build_reader
    from watcher.store.state import State, StateStore

    cfg = load(config)
    try:
        state = StateStore(cfg.state_dir).load()
    except WatcherError:
        state = State()
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
    silent = silent_rollback_rules(cfg.rules, {r["rule"]: r["outcome"] for r in rows}, None, cfg.prometheus.labels)
    # Every query failed (Prometheus down, every probe refused): the table says nothing about
    # the rules, so the command did not do its job.
    blind = bool(rows) and all(r["outcome"] == "error" for r in rows)
    if as_json:
        out({"time": now, "window_s": window_s, "release": state.current, "rules": rows,
              "every_signal_failed": blind, "known_good": silent}, True, "")
    else:
        print(f"{'RULE':<26} {'VALUE':>10}  {'CONDITION':<36} {'OUTCOME':<8} {'STATE':<8} DETAIL")
        for r in rows:
            detail = r["detail"] or (format_labels(r["labels"]) if r["labels"] else "")
            print(f"{r['rule']:<26} {format_value(r['value'], r['unit']):>10}  {r['condition'][:36]:<36} "
                  f"{r['outcome']:<8} {r['state']:<8} {detail}")
        print(f"[$window] = {window_s}s; release {state.current or 'unknown'}")
        for line in silent:
            print(line)
    if blind:
        print(f"FAILED: no rule's signal could be read ({len(rows)} of {len(rows)} failed)", file=sys.stderr)
        raise typer.Exit(1)




@app.command("notify-test")
def notify_test(
    config: str = ConfigOpt,
    severity: str = typer.Option("info", "--severity", help="info, success, warning, failure or critical."),
) -> None:
    """Send a test message to every notify target.

    Reports, per target, whether it arrived."""
    from watcher.core.messages import MessageContext, Severity
    from watcher.notify import notifier as notify

    try:
        Severity.parse(severity)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--severity") from None
    cfg = load(config)
    code = notify.notify_test_command(list(cfg.notify), severity, sys.stdout, ctx=MessageContext(cfg.service, cfg.host))
    raise typer.Exit(code)
