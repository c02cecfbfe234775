"""`rollback-watcher init`: a first watcher.yaml for a real host, from what Prometheus already
scrapes there (issue 21).

    targets     Prometheus' active targets (/api/v1/targets); this host's are those named by
                --instance / --job, else those whose address is one of this machine's names
    recognise   each target's metric names against the rule packs (rules/packs/): the names
                their queries read, and a marker each instrumentation exports from the start
                (python_info, go_info, jvm_*, nodejs_*, ...), since a fresh app with lazy
                labels has no request series yet
    plan        watcher.yaml (prometheus.labels = the app target's instance) and the chosen
                packs as rule files; node_exporter / cAdvisor targets of this host get their
                pack with `scope: fleet` and their own instance through a `vars:` placeholder
    write       only files that do not exist (an existing one is kept and said so)

Everything but reading Prometheus and writing the files is pure and tested with tables.
"""

from __future__ import annotations

import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from watcher.actions.online import metric_names
from watcher.base.errors import WatcherError
from watcher.config.rulefile import load_rule_file
from watcher.config.scoping import quote, scope_query
from watcher.core.rules import PromQuery
from watcher.signals.prometheus import PrometheusSource

APP = "app"
HOST = "host"  # packs about the host (node_exporter, cAdvisor): targets of their own


@dataclass(frozen=True)
class Pack:
    name: str
    kind: str  # APP or HOST
    what: str  # what it is for, in a message
    markers: tuple[str, ...] = ()  # metrics the instrumentation exports from the process' start


# Most specific first: on equal evidence the earlier pack wins (flask beats plain Python).
PACKS = (
    Pack("python-flask-exporter", APP, "a Flask app with prometheus_flask_exporter", ("flask_exporter_info",)),
    Pack("python-django-prometheus", APP, "a Django app with django-prometheus",
         ("django_http_requests_before_middlewares_total",)),
    Pack("micrometer-spring-boot", APP, "a Spring Boot app with Micrometer", ("jvm_threads_live_threads",)),
    Pack("node-prom-client", APP, "a Node.js app with prom-client", ("nodejs_version_info",)),
    Pack("python-prometheus-client", APP, "a Python app with prometheus_client", ("python_info",)),
    Pack("go-client-golang", APP, "a Go service with client_golang", ("go_info",)),
    Pack("haproxy", APP, "HAProxy's exporter in front of the app", ("haproxy_process_build_info",)),
    Pack("nginx-vts", APP, "nginx with the VTS module", ("nginx_vts_info",)),
    Pack("envoy", APP, "Envoy in front of the app", ("envoy_server_live",)),
    Pack("node-exporter", HOST, "node_exporter", ("node_exporter_build_info",)),
    Pack("cadvisor", HOST, "cAdvisor", ("cadvisor_version_info",)),
)
# Exporters whose go_info is not "a Go app": Prometheus itself, and the host packs' exporters.
NOT_AN_APP = ("prometheus_build_info", "node_exporter_build_info", "cadvisor_version_info", "alertmanager_build_info")


class InitError(WatcherError):
    """init cannot choose: no target of this host, or several (exit 2: say which)."""


@dataclass(frozen=True)
class Target:
    job: str
    instance: str
    health: str
    names: frozenset[str] = frozenset()  # its metric names

    @property
    def address(self) -> str:
        return self.instance.rpartition(":")[0].strip("[]") if ":" in self.instance else self.instance


@dataclass(frozen=True)
class Recognition:
    target: Target
    pack: Pack
    found: tuple[str, ...]  # the pack's query metrics the target has
    wanted: tuple[str, ...]  # every metric the pack's queries read
    marker: str | None

    @property
    def score(self) -> tuple[int, int]:
        return (len(self.found), 1 if self.marker else 0)

    def why(self) -> str:
        parts = []
        if self.found:
            parts.append(f"it exports {', '.join(self.found)}")
        if self.marker:
            parts.append(f"{self.marker} says it is {self.pack.what}")
        missing = [n for n in self.wanted if n not in self.found]
        if missing and self.pack.kind == APP:
            parts.append(f"no {', '.join(missing)} yet (a labelled series appears on its first use: "
                         f"no request served yet, or no error so far)")
        return "; ".join(parts)


@dataclass
class Plan:
    app: Recognition
    hosts: list[Recognition] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)  # relative path -> text
    lines: list[str] = field(default_factory=list)  # what it chose and why


# ---------------------------------------------------------------------------------------------
# Recognising (pure)


def pack_metrics(pack_dir: Path) -> dict[str, tuple[str, ...]]:
    """{pack name: the metric names its queries read, but `up`}."""

    out = {}
    for pack in PACKS:
        names: set[str] = set()
        for rule in load_rule_file(pack_dir / f"{pack.name}.yaml"):
            if isinstance(rule.signal, PromQuery):
                names |= metric_names(rule.signal.query)
        out[pack.name] = tuple(sorted(names - {"up"}))
    return out


def recognise(target: Target, wanted: dict[str, tuple[str, ...]]) -> Recognition | None:
    """The pack that fits `target` best, or None when none does."""
    best = None
    is_exporter = any(n in target.names for n in NOT_AN_APP)
    for pack in PACKS:
        found = tuple(n for n in wanted[pack.name] if n in target.names)
        marker = next((m for m in pack.markers if m in target.names), None)
        if pack.name == "go-client-golang" and is_exporter:
            marker = None  # every Go exporter has go_info
        if pack.name == "go-client-golang" and "python_info" in target.names:
            marker = None
        if not found and not marker:
            continue
        r = Recognition(target, pack, found, wanted[pack.name], marker)
        if best is None or r.score > best.score:
            best = r
    return best


def this_hosts_names() -> set[str]:
    """The names and addresses a target of this machine may carry in its instance label."""
    names = {"localhost", "127.0.0.1", "::1", socket.gethostname(), socket.getfqdn()}
    for name in list(names):
        try:
            names |= {str(info[4][0]) for info in socket.getaddrinfo(name, None)}
        except OSError:
            pass
    return {n for n in names if n}


def choose(targets: list[Target], wanted: dict[str, tuple[str, ...]], instance: str | None, job: str | None,
           local: set[str]) -> tuple[Recognition, list[Recognition]]:
    """The app target and this host's host-pack targets. Raises InitError when there is no
    app target or more than one."""
    if instance:
        mine = [t for t in targets if t.instance == instance]
        if not mine:
            raise InitError(f"Prometheus scrapes no target with instance {instance!r}; it has: "
                            f"{_listing(targets)}")
    elif job:
        mine = [t for t in targets if t.job == job]
        if not mine:
            raise InitError(f"Prometheus has no job {job!r}; it has: {_listing(targets)}")
    else:
        mine = [t for t in targets if t.address in local]
        if not mine:
            raise InitError(f"none of Prometheus' targets is on this host ({', '.join(sorted(local))}): "
                            f"give --instance HOST:PORT; it has: {_listing(targets)}")
    recognised = [r for r in (recognise(t, wanted) for t in mine) if r is not None]
    apps = [r for r in recognised if r.pack.kind == APP]
    if not apps:
        raise InitError(f"no target of this host exports metrics a rule pack knows: {_listing(mine)}; "
                        f"give --instance, or write rules yourself (docs/config.md)")
    if len(apps) > 1:
        raise InitError("several targets of this host look like the app: "
                        + "; ".join(f"{r.target.instance} (job {r.target.job}: {r.pack.what})" for r in apps)
                        + ": give --instance HOST:PORT")
    hosts = [r for r in recognised if r.pack.kind == HOST]
    if instance or job:  # the host's exporters on the same address as the chosen app
        hosts = [r for r in (recognise(t, wanted) for t in targets if t.address == apps[0].target.address)
                 if r is not None and r.pack.kind == HOST]
    return apps[0], hosts


def _listing(targets: list[Target]) -> str:
    return ", ".join(f"{t.instance} (job {t.job}, {t.health})" for t in targets) or "no targets"


# ---------------------------------------------------------------------------------------------
# Planning the files (pure)


def plan(app: Recognition, hosts: list[Recognition], pack_dir: Path, prometheus_url: str, service: str,
         state_dir: str, releases: str | None, current: str | None, health_url: str | None,
         telemetry: str = "127.0.0.1:9464") -> Plan:
    p = Plan(app, hosts)
    variables: dict[str, str] = {}
    rule_files = [f"rules/{app.pack.name}.yaml"]
    p.files[rule_files[0]] = _header(app) + (pack_dir / f"{app.pack.name}.yaml").read_text()
    p.lines.append(f"app: {app.target.instance} (job {app.target.job}): {app.pack.what}, "
                   f"pack {app.pack.name}: {app.why()}")
    for h in hosts:
        var = h.pack.name.replace("-", "_")
        variables[var] = h.target.instance
        path = f"rules/{h.pack.name}.yaml"
        text, left_out = _pinned(pack_dir / f"{h.pack.name}.yaml", var, h.target.names)
        p.files[path] = _header(h) + text
        rule_files.append(path)
        p.lines.append(f"host: {h.target.instance} (job {h.target.job}): {h.pack.what}, pack {h.pack.name} with "
                       f"scope: fleet and instance ${{{var}}} (its own target, not the app's)")
        for name, metrics in left_out:
            # A rollback rule that can never see data keeps every release from becoming known-good.
            p.lines.append(f"  left out {name}: {h.target.instance} exports no {', '.join(metrics)}")
    if not hosts:
        p.lines.append("host: no node_exporter or cAdvisor target on this host: no OOM-kill rule from Prometheus "
                       "(a `host: oom_kills` rule reads the kernel's counter without one)")
    if health_url:
        p.files["rules/health.yaml"] = _health_rules(health_url)
        rule_files.append("rules/health.yaml")
    p.files["watcher.yaml"] = _watcher_yaml(app, variables, prometheus_url, service, state_dir, releases, current,
                                            health_url, telemetry)
    if not (releases and current):
        p.lines.append("backend: none given (--releases, --current): the watcher will watch and notify, "
                       "not roll back, until watcher.yaml has a backend (docs/config.md)")
    return p


def _header(r: Recognition) -> str:
    return (f"# Written by `rollback-watcher init` from the rule pack {r.pack.name} (rules/packs/):\n"
            f"# {r.target.instance} (job {r.target.job}) is {r.pack.what}. Tune the thresholds with\n"
            f"# `rollback-watcher eval`, `explain` and `backtest`.\n"
            f"# These thresholds are held for a time (`for:`). A request counter's error share can be\n"
            f"# judged on its counts instead (`judge: sequential`): it fires as soon as the evidence is\n"
            f"# conclusive and never rolls back a release at its limit more often than `alpha`, at\n"
            f"# 2 req/s as at 500 (docs/config.md, \"When to use which\").\n")


def _pinned(path: Path, var: str, exported: frozenset[str]) -> tuple[str, list[tuple[str, list[str]]]]:
    """A host pack whose queries name their own target (instance="${VAR}") with scope: fleet,
    so that prometheus.labels (the app's instance) leaves them alone; the rules over metrics
    the target does not export (node_exporter without its systemd collector) are left out:
    they would read "no data" on every tick. Returns the text and [(rule, missing metrics)]."""

    doc = yaml.safe_load(path.read_text())
    kept, left_out = [], []
    for rule in doc["rules"]:
        if "query" in rule:
            missing = sorted(metric_names(rule["query"]) - set(exported))
            if missing:
                left_out.append((rule["name"], missing))
                continue
            rule["query"] = scope_query(rule["query"], {"instance": "${" + var + "}"})
            rule["scope"] = "fleet"
        kept.append(rule)
    doc["rules"] = kept
    return yaml.safe_dump(doc, sort_keys=False, width=120), left_out


def _health_rules(url: str) -> str:

    text: str = yaml.safe_dump({"rules": [{"name": "health-endpoint", "description": "the service's own health check",
                                           "http": url, "expect_status": 200, "timeout": "2s", "failures": 3,
                                           "action": "rollback"}]}, sort_keys=False)
    return text


def _watcher_yaml(app: Recognition, variables: dict[str, str], prometheus_url: str, service: str, state_dir: str,
                  releases: str | None, current: str | None, health_url: str | None, telemetry: str) -> str:
    doc: dict[str, Any] = {
        "service": service,
        "prometheus": {"url": prometheus_url, "labels": {"instance": app.target.instance}},
        "rules": ["rules/*.yaml"],
        "watch_window": "30m",
    }
    if variables:
        doc["vars"] = variables
    if releases and current:
        doc["backend"] = {"type": "symlink", "releases": releases, "current": current}
    if health_url:
        doc["verify"] = {"url": health_url}
    doc["state_dir"] = state_dir
    doc["telemetry"] = False if telemetry == "off" else {"listen": telemetry}
    head = (f"# Written by `rollback-watcher init` from Prometheus at {prometheus_url}.\n"
            f"# prometheus.labels scope every rule to this host's app target ({app.target.instance}):\n"
            f"# one rule file serves a fleet on a shared Prometheus (docs/config.md).\n")
    body: str = yaml.safe_dump(doc, sort_keys=False, width=120)
    return head + body


# ---------------------------------------------------------------------------------------------
# The edges: Prometheus, the files


def read_targets(source: PrometheusSource) -> list[Target]:
    """The active targets, each with its metric names (one query per target). Raises SourceError."""

    targets = []
    for t in source.active_targets():
        labels = t.get("labels") or {}
        instance, job = labels.get("instance", ""), labels.get("job", "")
        if not instance:
            continue
        found = source.query(f"group by (__name__) ({{instance={quote(instance)},job={quote(job)}}})")
        names = frozenset(s.labels.get("__name__", "") for s in found)
        targets.append(Target(job, instance, str(t.get("health", "unknown")), names))
    return targets


def pack_dir() -> Path:
    """rules/packs/: in the source tree (a checkout, an editable install), or where
    systemd/install.sh copies it (PREFIX/share/rollback-watcher/rules/packs)."""
    candidates = [Path(__file__).resolve().parents[2] / "rules" / "packs",
                  Path(sys.prefix) / "share" / "rollback-watcher" / "rules" / "packs"]
    for path in candidates:
        if (path / "python-prometheus-client.yaml").is_file():
            return path
    raise WatcherError(f"the rule packs are not installed (looked in {', '.join(map(str, candidates))})")


def write(p: Plan, config: Path) -> tuple[list[Path], list[Path]]:
    """Writes the plan's files beside `config` (watcher.yaml is `config` itself); never
    replaces a file. Returns (written, kept)."""
    written, kept = [], []
    for rel, text in p.files.items():
        path = config if rel == "watcher.yaml" else config.parent / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # "x": created here or not at all; a file that exists (even one made meanwhile) stays.
            with open(path, "x", encoding="utf-8") as fh:
                fh.write(text)
        except FileExistsError:
            kept.append(path)
            continue
        written.append(path)
    return written, kept
