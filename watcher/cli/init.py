"""`init`: a first watcher.yaml for this host from what Prometheus scrapes (actions/init.py),
then `check --online` on it."""

from __future__ import annotations

import socket
from pathlib import Path

import typer

from watcher.base.errors import SourceError
from watcher.cli.check import check
from watcher.cli.common import DEFAULT_CONFIG, SETTINGS

app = typer.Typer(**SETTINGS)


@app.command()
def init(
    prometheus: str = typer.Option("http://127.0.0.1:9090", "--prometheus", metavar="URL", help="Prometheus' URL."),
    instance: str | None = typer.Option(None, "--instance", metavar="HOST:PORT", help="The app's target (its `instance` label, "
                                           "HOST:PORT); default: the target of this host that a rule pack knows."),
    job: str | None = typer.Option(None, "--job", metavar="JOB", help="The app's scrape job, when --instance is not given."),
    config: str = typer.Option(DEFAULT_CONFIG, "--config", "-c", metavar="FILE", help="The watcher.yaml to write (rules/ beside it)."),
    service: str | None = typer.Option(None, "--service", metavar="NAME", help="The service's name (default: the target's job)."),
    state_dir: str = typer.Option("/var/lib/rollback-watcher", "--state-dir", metavar="PATH", help="The watcher's state directory."),
    releases: str | None = typer.Option(None, "--releases", metavar="PATH", help="The releases directory (symlink backend)."),
    current: str | None = typer.Option(None, "--current", metavar="PATH", help="The `current` symlink (symlink backend)."),
    health_url: str | None = typer.Option(None, "--health-url", metavar="URL", help="The app's health endpoint: a probe "
                                             "rule and the rollback's verification."),
    telemetry: str = typer.Option("127.0.0.1:9464", "--telemetry", metavar="HOST:PORT", help="Where the watcher serves its own "
                                  "metrics (HOST:PORT), or `off`."),
    timeout: float = typer.Option(5.0, "--timeout", metavar="SECONDS", help="Seconds to wait for Prometheus."),
) -> None:
    """Write watcher.yaml and rules for this host from what Prometheus scrapes.

    Asks Prometheus for its targets and their metric names, picks this host's app target
    (--instance, --job, or the one on this machine's addresses), recognises its instrumentation
    among the rule packs, writes watcher.yaml (prometheus.labels: that target) and the packs as
    rules/*.yaml without replacing any file, says what it chose and why, then runs
    `check --online`. Exit 2 when it cannot choose (it lists the targets), 1 when the check fails."""
    # The rule packs' reader, YAML and the Prometheus client: ~170 ms CPU of import at --help.
    from watcher.actions import init as setup
    from watcher.signals.prometheus import PrometheusSource

    if (releases is None) != (current is None):
        raise typer.BadParameter("give both --releases and --current, or neither", param_hint="--releases")
    source = PrometheusSource(prometheus, timeout=timeout)
    try:
        targets = setup.read_targets(source)
    except SourceError as exc:
        raise SourceError(f"cannot read Prometheus' targets: {exc}") from None
    packs = setup.pack_dir()
    try:
        app_target, hosts = setup.choose(targets, setup.pack_metrics(packs), instance, job, setup.this_hosts_names())
    except setup.InitError as exc:
        print(f"init: {exc}")
        raise typer.Exit(2) from None
    path = Path(config)
    plan = setup.plan(app_target, hosts, packs, prometheus.rstrip("/"), service or app_target.target.job or
                      socket.gethostname(), state_dir, releases, current, health_url, telemetry)
    written, kept = setup.write(plan, path)
    print("init: chose")
    for line in plan.lines:
        print(f"  {line}")
    for p in written:
        print(f"  wrote {p}")
    for p in kept:
        print(f"  kept {p} (it exists: not replaced; compare it with what init would write)")
    print(f"init: checking {path} against Prometheus (`rollback-watcher check --online`):")
    check(config=str(path), online=True, as_json=False)
