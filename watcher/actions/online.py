"""`check --online`: each signal read once, the rules' metrics looked up, the telemetry port
tried; what it found, counted apart: signals that did not answer, host problems (the telemetry
port), and warnings that do not fail the check (a rule's metric has no series yet).

A rule over a metric nobody exports (node_exporter not installed, a typo in a name) answers
"0 series" on every tick: it can never fire, and nothing says so. The metric names come from
the PromQL itself (promql-parser's syntax tree), and one query asks Prometheus which of them
have a series now (missing_metrics). A name inside absent()/absent_over_time() is meant to be
missing: skipped."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import promql_parser

from watcher.base.errors import WatcherError
from watcher.config import hostcheck
from watcher.config.schema import WatcherConfig
from watcher.config.scoping import quote
from watcher.core.evaluate import evaluate, watch_window
from watcher.core.rules import WINDOW_TOKEN, ProbeResult, PromQuery, Rule
from watcher.signals.prometheus import PrometheusSource
from watcher.signals.promtime import effective_scrape_interval
from watcher.signals.reader import build_reader
from watcher.store.state import State, StateStore


@dataclass
class OnlineReport:
    signal_failures: int = 0
    host_problems: list[str] = field(default_factory=list)
    fleet: list[tuple[str, bool, str]] = field(default_factory=list)  # each etcd endpoint's /health, one read
    fleet_name: str = ""
    warnings: list[str] = field(default_factory=list)
    scrape_line: str = ""  # the scrape interval in use and where it comes from
    known_good: list[str] = field(default_factory=list)  # why no release can become known-good now

    @property
    def fleet_problems(self) -> list[str]:
        return [detail for _, ok, detail in self.fleet if not ok]

    @property
    def failed(self) -> bool:
        return bool(self.signal_failures or self.host_problems or self.fleet_problems)

    def lines(self, signals: int, notify_targets: int) -> list[str]:
        # Notify targets are validated offline (Apprise parses each URL); delivering one is
        # `notify-test`'s job, so they are never subtracted from the signal count.
        notify = (f"{notify_targets} target(s) valid (send a test with `rollback-watcher notify-test`)"
                  if notify_targets else "no targets")
        out = [f"online: {signals - self.signal_failures} of {signals} signals answered; notify: {notify}"]
        if self.scrape_line:
            out.append(self.scrape_line)
        out += [f"FAIL: {p}" for p in self.host_problems]
        out += [f"fleet {self.fleet_name}: {'ok' if ok else 'FAIL'}: {detail}" for _, ok, detail in self.fleet]
        out += [f"warning: {w}" for w in self.warnings]
        out += self.known_good
        return out

    def as_json(self) -> dict[str, Any]:
        return {"online_failures": self.signal_failures, "host_problems": self.host_problems,
                "fleet_problems": self.fleet_problems, "warnings": self.warnings, "scrape_interval": self.scrape_line,
                "fleet": [{"check": what, "ok": ok, "detail": detail} for what, ok, detail in self.fleet],
                "known_good": self.known_good}


def check_online(cfg: WatcherConfig, rows: list[dict[str, Any]], now: float) -> OnlineReport:
    """Fill each row's "online" column; count signals and host problems apart (a notify
    problem is not a signal: targets are validated offline)."""
    report = OnlineReport()
    reader = build_reader(cfg)
    missing: dict[str, list[str]] = {}
    try:
        # The same evaluation as a tick's (evaluate.py), with the scrape interval the service
        # would use: learned from Prometheus unless the config sets it.
        cfg, scrape_line = effective_scrape_interval(cfg, reader.prometheus)
        reader.scrape_interval = cfg.prometheus.scrape_interval
        if any(isinstance(r.signal, PromQuery) for r in cfg.rules):
            report.scrape_line = scrape_line
        evaluation = evaluate(cfg.rules, reader, now, watch_window(now, State(), cfg), {}, {}, cfg.error_limit,
                              scrape_interval=cfg.prometheus.scrape_interval, at=now, interval=cfg.interval)
        results = {e.rule.name: (e.result, e.seconds) for e in evaluation.rules}
        outcomes = {e.rule.name: e.observation.outcome.value for e in evaluation.rules}
        serving = {e.rule.name for e in evaluation.rules if e.observation.healthy}
        if reader.prometheus is not None and any(not isinstance(results[r.name][0], Exception)
                                                 for r in cfg.rules if r.reads_prometheus):
            try:
                missing = missing_metrics(cfg.rules, reader.prometheus, cfg.prometheus.labels)
            except WatcherError as exc:
                report.warnings.append(f"could not look the rules' metrics up: {exc}")
    finally:
        reader.close()
    for row, rule in zip(rows, cfg.rules, strict=True):
        result, seconds = results[rule.name]
        if isinstance(result, BaseException):
            row["online"] = f"FAIL: {result}"
            report.signal_failures += 1
        elif isinstance(result, ProbeResult):  # an http: rule
            row["online"] = ("ok: " if result.ok else "FAIL: ") + result.detail
            report.signal_failures += 0 if result.ok else 1
        elif rule.reads_prometheus:
            if not isinstance(result, list):  # a judge rule's Counts
                row["online"] = (f"ok: {result.total:,.0f} requests counted in {seconds * 1000:.0f} ms" if result.total
                                 else f"ok: {result.note or 'no request counted'}")
            else:
                row["online"] = (f"ok: {len(result)} series in {seconds * 1000:.0f} ms" if result
                                 else f"answered in {seconds * 1000:.0f} ms, but no data (0 series)")
            if rule.name in missing:
                names = ", ".join(missing[rule.name])
                row["online"] += f"; no series named {names}"
                row["missing_metrics"] = missing[rule.name]
                report.warnings.append(f"rule {rule.name}: Prometheus has no series named {names}: the rule can "
                                       f"never fire (is its exporter installed and scraped?)")
        elif isinstance(result, list):  # a host: rule's counter
            row["online"] = f"ok: {result[0].value if result else '-'}"
    report.known_good = silent_rollback_rules(cfg.rules, outcomes, missing, cfg.prometheus.labels, serving)
    port = hostcheck.port_problem(cfg.telemetry.listen, StateStore(cfg.state_dir).service_running())
    if port:
        report.host_problems.append(port)
    # etcd3gw and httpx, ~80 ms CPU and 9 MB of import: only a config with `fleet:` reads etcd.
    from watcher.actions.fleet import check_online as fleet_check_online

    report.fleet = fleet_check_online(cfg)  # etcd, when the config has a fleet
    report.fleet_name = cfg.fleet.name if cfg.fleet is not None else ""
    return report


_ABSENT = {"absent", "absent_over_time"}


def metric_names(query: str) -> set[str]:
    """Every metric name a query selects (by name or by __name__="..."), but those in absent()."""
    names: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            if node.name:
                names.add(node.name)
            for m in node.matchers.matchers:
                if m.name == "__name__" and m.op == promql_parser.MatchOp.Equal:
                    names.add(m.value)
            return
        if isinstance(node, promql_parser.Call):
            if node.func.name in _ABSENT:
                return
            for arg in node.args:
                walk(arg)
            return
        for attr in ("expr", "lhs", "rhs", "vector_selector", "param"):
            child = getattr(node, attr, None)
            if child is not None:
                walk(child)

    walk(promql_parser.parse(query.replace(WINDOW_TOKEN, "1m")))
    return names


def missing_metrics(rules: Iterable[Rule], source: PrometheusSource,
                    labels: dict[str, str] | None = None) -> dict[str, list[str]]:
    """{rule name: [metric names without a single series in Prometheus]}; rules all of whose
    metrics exist are left out. With `labels` (prometheus.labels), a rule scoped by them looks
    for series of this host only: a metric other hosts export is still missing here. Raises
    SourceError when Prometheus does not answer."""
    missing: dict[str, list[str]] = {}
    for scoped in (True, False):
        wanted = {r.name: _metrics_read(r) for r in rules if r.reads_prometheus
                  and (r.scope != "fleet" and bool(labels)) == scoped}
        every = sorted(set().union(*wanted.values())) if wanted else []
        if not every:
            continue
        matchers = "".join(f",{k}={quote(v)}" for k, v in (labels or {}).items()) if scoped else ""
        found = source.query(f'group by (__name__) ({{__name__=~"{"|".join(every)}"{matchers}}})')
        present = {s.labels.get("__name__") for s in found}
        missing.update({rule: sorted(names - present) for rule, names in wanted.items() if names - present})
    return missing


def _metrics_read(rule: Rule) -> set[str]:
    """The metric names a rule reads on this host: its query's, or a judge rule's counters'
    (not its `baseline_*` selectors, which read other hosts on purpose)."""
    if isinstance(rule.signal, PromQuery):
        return metric_names(rule.signal.query)
    own = [getattr(rule.signal, k) for k in ("errors", "total", "buckets") if getattr(rule.signal, k)]
    return set().union(*(metric_names(s) for s in own))


# Who exports what, for the hint of a rule over a metric nobody exports (by name prefix).
_EXPORTERS = [("node_systemd_", "start node_exporter with --collector.systemd "
                               "--collector.systemd.enable-restarts-metrics, or read systemd without it "
                               "(`host: unit_restarts`)"),
              ("node_", "install and scrape node_exporter (Debian: prometheus-node-exporter), or read the "
                        "kernel's counter without it (`host: oom_kills`)"),
              ("container_", "scrape cAdvisor"),
              ("haproxy_", "enable HAProxy's Prometheus exporter and scrape it"),
              ("nginx_vts_", "build nginx with the VTS module and scrape it"),
              ("envoy_", "scrape Envoy's /stats/prometheus")]


def silent_rollback_rules(rules: Iterable[Rule], outcomes: dict[str, str], missing: dict[str, list[str]] | None,
                          labels: dict[str, str] | None = None, serving: Iterable[str] = ()) -> list[str]:
    """What `check --online` and `eval` say when rollback rules read "no data" now. A release
    becomes known-good only once it was seen serving on most ticks of its window (a probe
    answered, a query that needs requests read a real number: core/evidence.py); `serving`
    names the rules that see it so now. One line for the names and what follows, then one hint
    per rule (an exporter to add, the scope to check, or traffic to wait for); `missing` is None
    when the metrics were not looked up (`eval`)."""
    rules = list(rules)
    silent = [r for r in rules if r.action == "rollback" and outcomes.get(r.name) == "no_data"]
    if not silent:
        return []
    scope = ", ".join(f"{k}={quote_value(v)}" for k, v in (labels or {}).items())
    names = ", ".join(r.name for r in silent)
    seen = [r.name for r in rules if r.action == "rollback" and r.shows_serving and r.name in set(serving)]
    if seen:
        head = f"no data now from {names}; releases can still become known-good: {', '.join(seen)} sees this one serving"
    else:
        head = (f"releases cannot become known-good while no rollback rule sees them serving (a request, a passing "
                f"probe): no data from {names}")
    lines = [head]
    for r in silent:
        absent = (missing or {}).get(r.name)
        if missing is None:
            lines.append(f"  {r.name}: no series answers now: a process that has served no request yet exposes no "
                         f"request series, or its exporter is missing (`check --online` looks the metrics up)")
        elif absent:
            hint = next((h for prefix, h in _EXPORTERS if all(n.startswith(prefix) for n in absent)),
                        "is its exporter scraped, and is the name right?")
            where = f" with {scope}" if scope and r.scope != "fleet" else ""
            lines.append(f"  {r.name}: Prometheus has no series named {', '.join(absent)}{where}: {hint}"
                         + (", or scope the rule by a label that target carries" if where else "")
                         + "; or remove the rule")
        else:
            lines.append(f"  {r.name}: its series exist but none answers now: a process that has served no "
                         f"request yet exposes no request series (send one, or wait for traffic)"
                         + (f"; check that this host's targets carry {scope}" if scope and r.scope != "fleet" else ""))
    return lines


def quote_value(v: str) -> str:
    return quote(v)
