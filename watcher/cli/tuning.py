"""Tuning rules: `backtest` (replay over Prometheus history), `test` (rule unit tests),
`explain` (why a rule is in its state)."""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import typer

from watcher.cli.common import SETTINGS, Command, ConfigOpt, JsonOpt, PlotOpt, duration_option, load, out, when

app = typer.Typer(**SETTINGS)


@app.command()
def backtest(
    config: str = ConfigOpt,
    since: str = typer.Option("24h", "--since", metavar="TIME", help="Start: a duration ago (7d), ISO 8601 or epoch seconds."),
    until: str | None = typer.Option(None, "--until", metavar="TIME", help="End (default now), same forms as --since."),
    step: str | None = typer.Option(None, "--step", metavar="DURATION",
                                    help="Step between evaluations (default: the config's interval)."),
    rule: list[str] | None = typer.Option(None, "--rule", metavar="RULE", help="Only this rule (repeatable)."),
    deploys: str = typer.Option("journal", "--deploys", metavar="SOURCE",
                                help="Deploy times: journal, auto, or a FILE of 'TIME [RELEASE]' lines."),
    deploy_metric: str = typer.Option("app_build_info", "--deploy-metric", metavar="METRIC",
                                      help="Info metric for --deploys auto."),
    release_label: str = typer.Option("release", "--release-label", metavar="LABEL",
                                      help="Label of the release in --deploy-metric."),
    as_json: bool = JsonOpt,
) -> None:
    """Replay the rules over Prometheus history.

    Shows when each rule would have been pending and firing, and which deploys would have been
    rolled back. Exit 1 when every evaluation failed (e.g. Prometheus unreachable)."""
    # The replay, the Prometheus client (requests) and the state: ~95 ms CPU at --help.
    from watcher.actions import backtest as bt
    from watcher.signals.prometheus import PrometheusSource
    from watcher.store.state import StateStore

    step_s = duration_option(step, "--step") if step else None
    now = time.time()
    try:
        start, end = bt.parse_time(since, now), bt.parse_time(until, now) if until else now
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--since/--until") from None
    cfg = load(config)
    step_s = step_s or cfg.interval
    source = PrometheusSource(cfg.prometheus.url, max(cfg.prometheus.timeout, 30.0), cfg.prometheus.headers)
    if deploys == "journal":
        found = bt.deploys_from_journal(StateStore(cfg.state_dir).events())
    elif deploys == "auto":
        found = bt.auto_deploys(source, deploy_metric, release_label, start - cfg.watch_window, end, step_s)
    else:
        found = bt.deploys_from_file(Path(deploys), now)
    result = bt.run_backtest(cfg, source, start, end, step_s, found, rule or None)
    out(bt.to_json(result), as_json, bt.render_text(result, when))
    if result.every_step_failed():
        raise typer.Exit(1)


@app.command("test", cls=Command)
def test_rules(file: Path = typer.Argument(..., metavar="FILE",
                                           help="A rule test file (see rules/tests/default_test.yaml).")) -> None:
    """Unit-test rules without Prometheus.

    Query results per step in, states and rollbacks out. Exit 1 on any failed expectation.
    (Test the PromQL itself with `promtool test rules`.)"""
    from watcher.actions import ruletest  # the rule reader and the replay: ~105 ms CPU at --help

    results = ruletest.run_file(file)
    print(ruletest.report(file, results))
    raise typer.Exit(0 if all(r.ok for r in results) else 1)


@app.command(cls=Command)
def explain(rule: str = typer.Argument(..., metavar="RULE", help="A rule's name, as `check` lists it."),
            config: str = ConfigOpt, as_json: bool = JsonOpt, plot: Path | None = PlotOpt) -> None:
    """Why RULE is in its state.

    The query, each series now, the threshold or baseline and where it came from, the `for`
    progress, and the last transitions. With --plot FILE, also a PNG of the rule's values over
    the current release's watch window, from a Prometheus range query."""
    # The evaluation, the reader (requests) and the state: ~95 ms CPU at --help.
    from watcher.actions import explain as ex
    from watcher.store.state import StateStore

    cfg = load(config)
    e = ex.explain(cfg, StateStore(cfg.state_dir), rule)
    found = cfg.rule(rule)  # explain() refused an unknown name
    out(dataclasses.asdict(e), as_json, ex.render_text(e, found.value_unit if found is not None else ""))
    if plot is not None:
        from watcher.actions.plots import plot_rule  # the reader and the drawing: ~110 ms CPU

        said = plot_rule(cfg, StateStore(cfg.state_dir), rule, plot)
        print(said, file=sys.stderr if as_json else sys.stdout)
