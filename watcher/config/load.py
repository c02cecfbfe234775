"""Load and validate watcher.yaml and the rule files it names (docs/design.md section 3).

Every problem is collected with its file, line and key, then raised once as a ConfigError
(as borgmatic does); what comes out is a WatcherConfig (config/schema.py). The sections are
read here; the value kinds are config/values.py's, the rules config/rulefile.py's.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Any

from watcher.backends import BACKENDS, build_backend
from watcher.backends.base import OptionKind
from watcher.base import yamlfile
from watcher.base.errors import ConfigError, ConfigProblem
from watcher.config import values as kinds
from watcher.config.bind import BUILT_IN, bind_rules, placeholder_values
from watcher.config.rulefile import load_rules, rule_files
from watcher.config.schema import (
    BackendConfig,
    FleetConfig,
    PrometheusConfig,
    SafetyConfig,
    TelemetryConfig,
    VerifyConfig,
    WatcherConfig,
)
from watcher.config.scoping import ScopeError, check_labels
from watcher.config.values import FileReader, read_yaml, resolve_path, section
from watcher.core.envelope import NotifyTarget, Severity

TOP_KEYS = ["service", "host", "interval", "prometheus", "rules", "watch_window", "mode", "backend", "verify",
            "safety", "deploy_lock", "notify", "state_dir", "error_limit", "min_window", "max_window", "telemetry",
            "notify_pending", "fleet", "evidence", "lock_timeout", "vars"]
_ENV_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


# ---------------------------------------------------------------------------------------------
# Loading


def load_config(path: str | os.PathLike[str], environ: dict[str, str] | None = None) -> WatcherConfig:
    """Read watcher.yaml and its rule files. Raises ConfigError with every problem found."""
    path = Path(path)
    environ = dict(os.environ) if environ is None else environ
    problems: list[ConfigProblem] = []
    f = FileReader(str(path), problems)
    doc = read_yaml(path, f)
    if doc is None:
        raise ConfigError(problems)
    if not isinstance(doc, dict):
        f.problem(1, "", f"expected a mapping of settings at the top, got {kinds.show(doc)}")
        raise ConfigError(problems)
    doc = _expand_env(doc, environ, f, "")
    base = path.parent

    f.unknown_keys(doc, TOP_KEYS, "")
    service = f.read(doc, "service", kinds.string, required=True, default="service")
    host = f.read(doc, "host", kinds.string, default=None) or socket.gethostname()
    interval = f.read(doc, "interval", kinds.positive_duration, default=15.0)
    watch_window = f.read(doc, "watch_window", kinds.positive_duration, default=1800.0)
    mode = f.read(doc, "mode", kinds.choice("act", "shadow"), default="act")
    error_limit = f.read(doc, "error_limit", kinds.positive_int, default=4)
    notify_pending = f.read(doc, "notify_pending", kinds.boolean, default=False)
    prometheus = _read_prometheus(doc, f)
    max_window = f.read(doc, "max_window", kinds.positive_duration, default=60.0)
    min_window = f.read(doc, "min_window", kinds.positive_duration, default=min(3 * prometheus.scrape_interval, max_window))
    if min_window > max_window:
        f.problem(f.line_of(doc, "min_window"), "min_window", f"must not be longer than max_window ({max_window:g}s)")
    evidence = f.read(doc, "evidence", kinds.share, default=0.8)
    backend = _read_backend(doc, f, base)
    verify = _read_verify(doc, f)
    safety = _read_safety(doc, f)
    telemetry = _read_telemetry(doc, f)
    deploy_lock = resolve_path(f.read(doc, "deploy_lock", kinds.string), base)
    lock_timeout = f.read(doc, "lock_timeout", kinds.positive_duration, default=300.0)
    state_dir_text: str = f.read(doc, "state_dir", kinds.string, default="/var/lib/rollback-watcher")
    state_dir = resolve_path(state_dir_text, base)
    notify = _read_notify(doc, f, base)
    fleet = read_fleet(doc, f, base, service, host)

    files = rule_files(doc, f, base)
    variables = _read_vars(doc, f)
    rules = bind_rules(load_rules(files, problems, max_window), prometheus.labels,
                       placeholder_values(host, service, prometheus.labels, variables), problems)
    needs_prometheus = any(r.reads_prometheus for r in rules)
    if needs_prometheus and "prometheus" not in doc:
        f.problem(f.line_of(doc), "prometheus", "is required: some rules are PromQL queries or judge counters")

    if problems:
        order = {p.file: i for i, p in reversed(list(enumerate(problems)))}
        raise ConfigError(sorted(problems, key=lambda p: (order[p.file], p.line or 0)))
    return WatcherConfig(
        path=path, service=service, host=host, interval=interval, prometheus=prometheus, rules=tuple(rules),
        watch_window=watch_window, mode=mode, backend=backend, verify=verify, safety=safety,
        deploy_lock=deploy_lock, notify=tuple(notify), state_dir=state_dir, error_limit=error_limit,
        min_window=min_window, max_window=max_window, telemetry=telemetry, notify_pending=notify_pending,
        rule_files=tuple(files), fleet=fleet, evidence=evidence, min_window_set="min_window" in doc,
        lock_timeout=lock_timeout,
    )


def _expand_env(value: Any, environ: dict[str, str], f: FileReader, key: str, line: int | None = None) -> Any:
    """Replace ${VAR} in every string (secrets come from systemd's EnvironmentFile=)."""
    if isinstance(value, yamlfile.YMap):
        for k in list(value):
            value[k] = _expand_env(value[k], environ, f, f"{key}.{k}" if key else str(k), f.line_of(value, k))
        return value
    if isinstance(value, yamlfile.YList):
        for i, item in enumerate(value):
            value[i] = _expand_env(item, environ, f, f"{key}[{i}]", value.item_lines[i])
        return value
    if isinstance(value, str) and "${" in value:
        def sub(m: re.Match[str]) -> str:
            name = m.group(1)
            if name not in environ:
                f.problem(line, key, f"environment variable {name} is not set")
                return ""
            return environ[name]

        return _ENV_VAR.sub(sub, value)
    return value



def _read_prometheus(doc: dict[str, Any], f: FileReader) -> PrometheusConfig:
    m = section(doc, "prometheus", f, ["url", "timeout", "scrape_interval", "headers", "max_concurrency", "labels"])
    d = PrometheusConfig()
    url, headers = m.get("url"), m.get("headers")
    if isinstance(url, str) and isinstance(headers, dict) and "@" in url.partition("://")[2].partition("/")[0] \
            and any(str(k).lower() == "authorization" for k in headers):
        # requests lets the URL's userinfo replace the header: one credential would be dropped.
        f.problem(f.line_of(m, "headers"), "prometheus.headers",
                  "an Authorization header and userinfo in prometheus.url cannot both be sent; keep one of them")
    return PrometheusConfig(
        url=f.read(m, "url", kinds.url, "prometheus.", d.url).rstrip("/"),
        timeout=f.read(m, "timeout", kinds.positive_duration, "prometheus.", d.timeout),
        scrape_interval=f.read(m, "scrape_interval", kinds.positive_duration, "prometheus.", d.scrape_interval),
        scrape_interval_set="scrape_interval" in m,
        headers=f.read(m, "headers", kinds.str_map, "prometheus.", {}),
        max_concurrency=f.read(m, "max_concurrency", kinds.positive_int, "prometheus.", d.max_concurrency),
        labels=f.read(m, "labels", _scope_labels, "prometheus.", {}),
    )


def _scope_labels(value: Any) -> dict[str, str]:
    """prometheus.labels: label name -> value, names as Prometheus allows them in a selector."""

    labels = kinds.str_map(value)
    try:
        return check_labels(labels)
    except ScopeError as exc:
        raise ValueError(str(exc)) from None


def _read_vars(doc: dict[str, Any], f: FileReader) -> dict[str, str]:
    """`vars:`, values of the user's own for `${NAME}` placeholders in rule files."""
    variables: dict[str, str] = f.read(doc, "vars", kinds.str_map, "", {})
    for name in variables:
        if name in BUILT_IN or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            f.problem(f.line_of(doc, "vars"), f"vars.{name}",
                      f"cannot be a placeholder name: {'it is built in' if name in BUILT_IN else 'use letters, digits and _'}")
    return variables


# How each kind of backend option is read (backends/base.py: OptionKind).
_OPTION_KINDS = {
    OptionKind.ARGV: kinds.argv,
    OptionKind.TEXT: kinds.string,
    OptionKind.TEXTS: kinds.strings,
    OptionKind.NAMES: kinds.str_map,
    OptionKind.DURATION: kinds.positive_duration,
    OptionKind.COUNT: kinds.positive_int,
}


def _read_backend(doc: dict[str, Any], f: FileReader, base: Path) -> BackendConfig | None:
    """The `backend:` section: `type` names a backend of backends.BACKENDS, whose OPTIONS say
    which keys it takes (the constructor receives exactly these as keywords)."""
    if "backend" not in doc or doc["backend"] is None:
        return None
    m = f.mapping(doc["backend"], f.line_of(doc, "backend"), "backend")
    if m is None:
        return None
    kind = f.read(m, "type", kinds.choice(*BACKENDS), "backend.", required=True)
    if kind is None:
        return None
    table = BACKENDS[kind].OPTIONS
    before = len(f.problems)
    f.unknown_keys(m, ["type", *table], "backend.")
    options: dict[str, Any] = {}
    for key, option in table.items():
        if option.kind is OptionKind.PATH:
            value = resolve_path(f.read(m, key, kinds.string, "backend.", required=option.required), base)
        else:
            value = f.read(m, key, _OPTION_KINDS[option.kind], "backend.", required=option.required)
        if value is not None:
            options[key] = value
    if kind == "nginx-bluegreen" and "slots" in options and len(options["slots"]) != 2:
        f.problem(f.line_of(m, "slots"), "backend.slots", "needs exactly two slots, e.g. {blue: 127.0.0.1:8001, green: 127.0.0.1:8002}")
    elif all(key in options for key, option in table.items() if option.required) and len(f.problems) == before:
        # The backend checks what a table cannot (slot addresses, image names): ask it now,
        # so that a bad option is a config error with a line, not a traceback at start.
        try:
            build_backend(kind, options)
        except ValueError as exc:
            f.problem(f.line_of(m, "type"), "backend", str(exc))
    return BackendConfig(kind, options)


def _read_verify(doc: dict[str, Any], f: FileReader) -> VerifyConfig:
    m = section(doc, "verify", f, ["url", "attempts", "every", "timeout", "expect_status", "expect_body", "successes",
                                    "clear_within"])
    d = VerifyConfig()
    return VerifyConfig(
        url=f.read(m, "url", kinds.url, "verify."),
        attempts=f.read(m, "attempts", kinds.positive_int, "verify.", d.attempts),
        every=f.read(m, "every", kinds.positive_duration, "verify.", d.every),
        timeout=f.read(m, "timeout", kinds.positive_duration, "verify.", d.timeout),
        expect_status=f.read(m, "expect_status", kinds.status, "verify.", d.expect_status),
        expect_body=f.read(m, "expect_body", kinds.string, "verify."),
        successes=f.read(m, "successes", kinds.positive_int, "verify.", d.successes),
        clear_within=f.read(m, "clear_within", kinds.positive_duration, "verify."),
    )


def _read_safety(doc: dict[str, Any], f: FileReader) -> SafetyConfig:
    m = section(doc, "safety", f, ["cooldown", "max_auto_rollbacks"])
    d = SafetyConfig()
    return SafetyConfig(
        cooldown=f.read(m, "cooldown", kinds.duration, "safety.", d.cooldown),
        max_auto_rollbacks=f.read(m, "max_auto_rollbacks", kinds.positive_int, "safety.", d.max_auto_rollbacks),
    )


def _read_telemetry(doc: dict[str, Any], f: FileReader) -> TelemetryConfig:
    if "telemetry" in doc and doc["telemetry"] is False:
        return TelemetryConfig(listen=None)
    m = section(doc, "telemetry", f, ["listen", "allow_remote"])
    t = TelemetryConfig(
        listen=f.read(m, "listen", kinds.listen, "telemetry.", TelemetryConfig.listen),
        allow_remote=f.read(m, "allow_remote", kinds.boolean, "telemetry.", False),
    )
    if t.listen and not t.allow_remote:
        host = t.listen.rpartition(":")[0].strip("[]")
        if host not in ("127.0.0.1", "localhost", "::1") and not host.startswith("127."):
            f.problem(f.line_of(m, "listen"), "telemetry.listen",
                      f"{host} is not a loopback address; set telemetry.allow_remote: true to expose metrics")
    return t


def _read_notify(doc: dict[str, Any], f: FileReader, base: Path) -> list[NotifyTarget]:
    raw = doc.get("notify")
    if raw is None:
        return []
    if not isinstance(raw, yamlfile.YList):
        f.problem(f.line_of(doc, "notify"), "notify", f"expected a list of targets, got {kinds.show(raw)}")
        return []
    targets = []
    for i, item in enumerate(raw):
        key = f"notify[{i}]"
        line = raw.item_lines[i]
        if isinstance(item, str):
            item = yamlfile.YMap(url=item)
            item.line, item.key_lines = line, {"url": line}
        m = f.mapping(item, line, key)
        if m is None:
            continue
        f.unknown_keys(m, ["url", "min_severity", "tags"], f"{key}.")
        url = f.read(m, "url", kinds.string, f"{key}.", required=True)
        severity = f.read(m, "min_severity", kinds.choice(*[s.value for s in Severity]), f"{key}.", "info")
        tags = f.read(m, "tags", kinds.strings, f"{key}.", ())
        if url:
            targets.append(NotifyTarget(url=url, min_severity=Severity(severity), tags=tags))
    return targets



FLEET_KEYS = ["etcd", "name", "host", "prefix", "lease", "known_good_hosts", "timeout", "symptom_window", "tls",
              "username", "password"]


def _etcd_url(v: Any) -> str:
    s = kinds.url(v)
    if "@" in s.split("/")[2]:
        # userinfo in a URL ends up in logs and tracebacks: credentials have their own keys
        raise ValueError("must not carry a user or password: use fleet.username and fleet.password (${VAR})")
    return s.rstrip("/")


def read_fleet(doc: dict[str, Any], f: FileReader, base: Path, service: str, host: str) -> FleetConfig | None:
    """The `fleet:` section (absent: no fleet). Secrets come from ${VAR} and are never shown."""
    if doc.get("fleet") is None:
        return None
    m = section(doc, "fleet", f, FLEET_KEYS)
    p = "fleet."
    endpoints = f.read(m, "etcd", kinds.strings, p, (), required=True)
    for i, url in enumerate(endpoints):
        try:
            _etcd_url(url)
        except ValueError as exc:
            line = m["etcd"].item_lines[i] if isinstance(m["etcd"], yamlfile.YList) else f.line_of(m, "etcd")
            f.problem(line, f"fleet.etcd[{i}]", str(exc))
    tls = f.mapping(m["tls"], f.line_of(m, "tls"), "fleet.tls") if m.get("tls") is not None else None
    if tls is None:
        tls = {}
    f.unknown_keys(tls, ["ca", "cert", "key"], "fleet.tls.")
    tls_paths = {k: resolve_path(f.read(tls, k, kinds.string, "fleet.tls."), base) for k in ("ca", "cert", "key")}
    if bool(tls_paths["cert"]) != bool(tls_paths["key"]):
        f.problem(f.line_of(m, "tls"), "fleet.tls", "cert and key go together (client certificate authentication)")
    username = f.read(m, "username", kinds.string, p)
    password = f.read(m, "password", kinds.string, p)
    if bool(username) != bool(password):
        f.problem(f.line_of(m, "username" if username else "password"), "fleet.username",
                  "username and password go together (password from ${VAR})")
    name = f.read(m, "name", kinds.string, p, service)
    prefix = f.read(m, "prefix", kinds.string, p, FleetConfig.prefix)
    if not prefix.startswith("/"):
        f.problem(f.line_of(m, "prefix"), "fleet.prefix", f"must start with / (got {prefix!r})")
    d = FleetConfig((), name, host)
    lease = f.read(m, "lease", kinds.positive_duration, p, d.lease)
    if lease < 2:
        f.problem(f.line_of(m, "lease"), "fleet.lease", "must be at least 2s (etcd leases count whole seconds)")
    return FleetConfig(
        endpoints=tuple(u.rstrip("/") for u in endpoints), name=name,
        host=f.read(m, "host", kinds.string, p, host), prefix=prefix, lease=lease,
        known_good_hosts=f.read(m, "known_good_hosts", kinds.positive_int, p, d.known_good_hosts),
        timeout=f.read(m, "timeout", kinds.positive_duration, p, d.timeout),
        symptom_window=f.read(m, "symptom_window", kinds.positive_duration, p, d.symptom_window),
        ca=tls_paths["ca"], cert=tls_paths["cert"], key=tls_paths["key"], username=username, password=password,
    )


