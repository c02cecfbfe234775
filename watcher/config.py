"""Load and validate watcher.yaml and the rule files (docs/design.md section 3).

Every problem is collected with its file, line and key, then raised once as a ConfigError
(as borgmatic does); what comes out are frozen dataclasses that the rest of the code passes
around, never raw mappings.

Length: over 400 lines because it is the one validator of watcher.yaml and the rule files, with
a message naming file, line and key for every way each key can be wrong; rule test files
(ruletest.py) reuse its public FileReader and read_rule rather than a copy.
"""

from __future__ import annotations

import dataclasses
import difflib
import glob
import math
import os
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from watcher.base import yamlfile
from watcher.base.durations import parse_duration
from watcher.base.errors import ConfigError, ConfigProblem
from watcher.core.messages import NotifyTarget, Severity
from watcher.core.rules import (
    ACTIONS,
    HOST_SIGNALS,
    NO_DATA_POLICIES,
    WINDOW_TOKEN,
    HostCheck,
    HttpCheck,
    Location,
    PromQuery,
    Rule,
)

# ---------------------------------------------------------------------------------------------
# The typed configuration


@dataclass(frozen=True)
class PrometheusConfig:
    url: str = "http://127.0.0.1:9090"
    timeout: float = 5.0
    scrape_interval: float = 15.0
    # Whether `scrape_interval` was written in the config: if not, the watcher learns it from
    # Prometheus' targets at start (signals.learn_scrape_interval) and says so.
    scrape_interval_set: bool = False
    headers: dict = field(default_factory=dict, hash=False)
    max_concurrency: int = 8  # queries of one tick in flight at once


@dataclass(frozen=True)
class BackendConfig:
    type: str
    options: dict = field(default_factory=dict, hash=False)  # typed keyword arguments


@dataclass(frozen=True)
class VerifyConfig:
    url: str | None = None
    attempts: int = 20
    every: float = 3.0
    timeout: float = 2.0
    expect_status: int = 200
    expect_body: str | None = None
    # Verification passes after this many healthy answers in a row (1 = the first one).
    successes: int = 1
    # How long the rules that fired get to clear on the restored release before the rollback is
    # called "did not clear" (None: the longest range the fired rules read, at least max_window,
    # plus three intervals: confirm.clear_bound).
    clear_within: float | None = None


@dataclass(frozen=True)
class SafetyConfig:
    cooldown: float = 1800.0
    max_auto_rollbacks: int = 1


@dataclass(frozen=True)
class TelemetryConfig:
    listen: str | None = "127.0.0.1:9464"  # None: no metrics endpoint
    allow_remote: bool = False


@dataclass(frozen=True)
class FleetConfig:
    """The `fleet:` section: this host's place in a fleet coordinated through etcd."""

    endpoints: tuple[str, ...]  # etcd client URLs, tried in order
    name: str  # the fleet (default: service)
    host: str  # this member (default: host)
    prefix: str = "/rollback-watcher"
    lease: float = 15.0  # membership lease TTL, seconds
    known_good_hosts: int = 2  # known-good fleet-wide after surviving the window on K hosts
    timeout: float = 2.0  # every etcd request; never on a local rollback's path
    symptom_window: float = 300.0  # "same time" for the fleet-wide symptom check
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # never printed

    @property
    def root(self) -> str:
        """PREFIX/NAME/: every key of this fleet lives under it."""
        return f"{self.prefix.rstrip('/')}/{self.name}/"


@dataclass(frozen=True)
class WatcherConfig:
    path: Path
    service: str
    host: str
    interval: float
    prometheus: PrometheusConfig
    rules: tuple[Rule, ...]
    watch_window: float
    mode: str  # "act" | "shadow"
    backend: BackendConfig | None
    verify: VerifyConfig
    safety: SafetyConfig
    deploy_lock: Path | None
    notify: tuple[NotifyTarget, ...]
    state_dir: Path
    error_limit: int
    min_window: float
    max_window: float
    telemetry: TelemetryConfig
    notify_pending: bool = False
    rule_files: tuple[Path, ...] = ()
    fleet: FleetConfig | None = None  # None: this host decides alone (no `fleet:` section)
    # A release becomes known-good at the end of its window only if its rollback rules saw data
    # on at least this share of its ticks (no evidence is not good evidence).
    evidence: float = 0.8
    min_window_set: bool = False  # min_window written in the config (else 3 x scrape interval)
    # A deploy lock held this long while a rollback rule fires is said once (the window waits).
    lock_timeout: float = 300.0

    @property
    def shadow(self) -> bool:
        return self.mode == "shadow"

    @property
    def clear_within(self) -> float:
        """The bound for rules to clear on a restored release when none reads a longer range
        (confirm.clear_bound has the per-rollback one)."""
        if self.verify.clear_within is not None:
            return self.verify.clear_within
        return self.max_window + 3 * self.interval

    def rule(self, name: str) -> Rule | None:
        return next((r for r in self.rules if r.name == name), None)


def _show(value: Any) -> str:
    kind = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "a number",
            float: "a number", type(None): "nothing"}
    for t, name in kind.items():
        if isinstance(value, t):
            return name if t in (dict, list, type(None)) else f"{name} ({value!r})"
    return type(value).__name__


# ---------------------------------------------------------------------------------------------
# The checker: reads a YMap against a table of keys, records problems, returns typed values


class FileReader:
    """Problems of one file, and helpers that read keys of its mappings. Public: the rule test
    files (ruletest.py) are read with the same helpers, so they report problems alike."""

    def __init__(self, path: str, problems: list[ConfigProblem]):
        self.path = path
        self.problems = problems

    def problem(self, line: int | None, key: str, message: str) -> None:
        self.problems.append(ConfigProblem(self.path, line, key, message))

    def line_of(self, mapping: Any, key: str | None = None) -> int | None:
        if isinstance(mapping, yamlfile.YMap):
            if key is not None and key in mapping.key_lines:
                return mapping.key_lines[key]
            return mapping.line
        return getattr(mapping, "line", None)

    def mapping(self, value: Any, line: int | None, key: str) -> yamlfile.YMap | None:
        if isinstance(value, dict):
            return value
        self.problem(line, key, f"expected a mapping, got {_show(value)}")
        return None

    def unknown_keys(self, mapping: dict, allowed: list[str], prefix: str) -> None:
        for key in mapping:
            if key in allowed:
                continue
            name = f"{prefix}{key}"
            close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            self.problem(self.line_of(mapping, key), name, f"unknown key{hint}")

    def read(self, mapping: dict, key: str, kind: Callable[[Any], Any], prefix: str = "", default: Any = None,
             required: bool = False) -> Any:
        """The typed value of `key`, or `default` (a problem is recorded when it is invalid)."""
        name = f"{prefix}{key}"
        if key not in mapping or mapping[key] is None:
            if required:
                self.problem(self.line_of(mapping), name, "is required")
            return default
        try:
            return kind(mapping[key])
        except ValueError as exc:
            self.problem(self.line_of(mapping, key), name, str(exc))
            return default


# Value kinds: each takes the raw YAML value and returns the typed one or raises ValueError.


def _string(v: Any) -> str:
    if isinstance(v, str) and v.strip():
        return v
    if isinstance(v, str):
        raise ValueError("must not be empty")
    raise ValueError(f"expected a string, got {_show(v)}")


def _number(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"expected a number, got {_show(v)}")
    if not math.isfinite(v) or abs(v) > 1e300:
        raise ValueError(f"expected a finite number, got {v!r}")
    return float(v)


def _non_negative(v: Any) -> float:
    x = _number(v)
    if x < 0:
        raise ValueError(f"must not be negative, got {v!r}")
    return x


def _positive_int(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError(f"expected a whole number, got {_show(v)}")
    if v < 1 or v > 1_000_000:
        raise ValueError(f"must be between 1 and 1000000, got {v}")
    return v


def _bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    raise ValueError(f"expected true or false, got {_show(v)}")


def _duration(v: Any) -> float:
    return parse_duration(v)


def _positive_duration(v: Any) -> float:
    seconds = parse_duration(v)
    if seconds <= 0:
        raise ValueError("must be longer than 0s")
    return seconds


def _share(v: Any) -> float:
    """A share written 0.8 or "80%"."""
    text = v.strip() if isinstance(v, str) else v
    if isinstance(text, str) and text.endswith("%"):
        try:
            x = float(text[:-1].strip()) / 100
        except ValueError:
            raise ValueError(f"expected a share such as 80%, got {_show(v)}") from None
    else:
        x = _number(text)
    if not 0 <= x <= 1:
        raise ValueError(f"expected a share between 0 and 1 (or 0% to 100%), got {_show(v)}")
    return x


def _trailing(v: Any) -> float:
    """`trailing: off` (or 0s) turns the trailing window off; else a duration."""
    if v is False or (isinstance(v, str) and v.strip().lower() == "off"):
        return 0.0
    seconds = parse_duration(v)
    if seconds < 0:
        raise ValueError("must not be negative")
    return seconds


def _url(v: Any) -> str:
    s = _string(v)
    if not re.match(r"^https?://[^\s/]+", s):
        from watcher.base.redact import redact_url

        raise ValueError(f"expected an http:// or https:// URL, got {redact_url(s, use_apprise=False)!r}")
    return s


def _argv(v: Any) -> tuple[str, ...]:
    if isinstance(v, str):
        raise ValueError("must be a list of arguments (argv), never a shell string: "
                         f"write [{', '.join(repr(p) for p in v.split())}]")
    if not isinstance(v, list) or not v:
        raise ValueError(f"expected a non-empty list of arguments, got {_show(v)}")
    if not all(isinstance(a, (str, int, float)) and not isinstance(a, bool) for a in v):
        raise ValueError("every argument must be a string")
    return tuple(str(a) for a in v)


def _strings(v: Any) -> tuple[str, ...]:
    if isinstance(v, str):
        return (v,)
    if not isinstance(v, list) or not all(isinstance(a, str) and a for a in v):
        raise ValueError(f"expected a list of strings, got {_show(v)}")
    return tuple(v)


def _choice(*choices: str) -> Callable[[Any], str]:
    def check(v: Any) -> str:
        if v in choices:
            return v
        close = difflib.get_close_matches(str(v), choices, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"{v!r} is not one of {', '.join(choices)}{hint}")

    return check


def _str_map(v: Any) -> dict:
    if not isinstance(v, dict) or not all(isinstance(k, str) and isinstance(x, (str, int)) for k, x in v.items()):
        raise ValueError(f"expected a mapping of names to strings, got {_show(v)}")
    return {k: str(x) for k, x in v.items()}


def _listen(v: Any) -> str:
    s = _string(v)
    host, _, port = s.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT such as 127.0.0.1:9464, got {s!r}")
    return s


# ---------------------------------------------------------------------------------------------
# Backends: the keys each type takes. The backend classes receive exactly these as keywords.

_PATH = "path"
BACKEND_KEYS: dict[str, dict[str, tuple[Any, bool]]] = {
    # key: (kind, required)
    "symlink": {
        "releases": (_PATH, True),
        "current": (_PATH, True),
        "restart": (_argv, False),
        "restart_fallback": (_argv, False),
        "restart_timeout": (_positive_duration, False),
        "keep": (_positive_int, False),
    },
    "nginx-bluegreen": {
        "upstream_file": (_PATH, True),
        "slots": (_str_map, True),
        "nginx": (_argv, False),
        "version_url": (_string, False),
        "version_file": (_string, False),
        "timeout": (_positive_duration, False),
    },
    "docker": {
        "container": (_string, True),
        "image": (_string, True),
        "history_file": (_PATH, False),
        "ports": (_strings, False),
        "env_file": (_PATH, False),
        "run_args": (_argv, False),
        "docker": (_argv, False),
        "health_timeout": (_positive_duration, False),
        "health_interval": (_positive_duration, False),
    },
    "command": {
        "current": (_argv, True),
        "releases": (_argv, True),
        "switch": (_argv, True),
        "preflight": (_argv, False),
        "timeout": (_positive_duration, False),
    },
}

TOP_KEYS = ["service", "host", "interval", "prometheus", "rules", "watch_window", "mode", "backend", "verify",
            "safety", "deploy_lock", "notify", "state_dir", "error_limit", "min_window", "max_window", "telemetry",
            "notify_pending", "fleet", "evidence", "lock_timeout"]
RULE_KEYS = ["name", "description", "query", "http", "host", "above", "below", "above_baseline", "floor", "for",
             "failures", "action", "no_data", "expect_status", "expect_body", "timeout", "unit", "window", "path",
             "baseline_window", "value_unit", "notify", "trailing"]
_RULE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")
_ENV_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


# ---------------------------------------------------------------------------------------------
# Loading


def load_config(path: str | os.PathLike, environ: dict[str, str] | None = None) -> WatcherConfig:
    """Read watcher.yaml and its rule files. Raises ConfigError with every problem found."""
    path = Path(path)
    environ = dict(os.environ) if environ is None else environ
    problems: list[ConfigProblem] = []
    f = FileReader(str(path), problems)
    doc = _read_yaml(path, f)
    if doc is None:
        raise ConfigError(problems)
    if not isinstance(doc, dict):
        f.problem(1, "", f"expected a mapping of settings at the top, got {_show(doc)}")
        raise ConfigError(problems)
    doc = _expand_env(doc, environ, f, "")
    base = path.parent

    f.unknown_keys(doc, TOP_KEYS, "")
    service = f.read(doc, "service", _string, required=True, default="service")
    host = f.read(doc, "host", _string, default=None) or socket.gethostname()
    interval = f.read(doc, "interval", _positive_duration, default=15.0)
    watch_window = f.read(doc, "watch_window", _positive_duration, default=1800.0)
    mode = f.read(doc, "mode", _choice("act", "shadow"), default="act")
    error_limit = f.read(doc, "error_limit", _positive_int, default=4)
    notify_pending = f.read(doc, "notify_pending", _bool, default=False)
    prometheus = _read_prometheus(doc, f)
    max_window = f.read(doc, "max_window", _positive_duration, default=60.0)
    min_window = f.read(doc, "min_window", _positive_duration, default=min(3 * prometheus.scrape_interval, max_window))
    if min_window > max_window:
        f.problem(f.line_of(doc, "min_window"), "min_window", f"must not be longer than max_window ({max_window:g}s)")
    evidence = f.read(doc, "evidence", _share, default=0.8)
    backend = _read_backend(doc, f, base)
    verify = _read_verify(doc, f)
    safety = _read_safety(doc, f)
    telemetry = _read_telemetry(doc, f)
    deploy_lock = _path(f.read(doc, "deploy_lock", _string), base)
    lock_timeout = f.read(doc, "lock_timeout", _positive_duration, default=300.0)
    state_dir = _path(f.read(doc, "state_dir", _string, default="/var/lib/rollback-watcher"), base)
    notify = _read_notify(doc, f, base)
    fleet = read_fleet(doc, f, base, service, host)

    rule_files = _rule_files(doc, f, base)
    rules = _load_rules(rule_files, problems, max_window)
    needs_prometheus = any(isinstance(r.signal, PromQuery) for r in rules)
    if needs_prometheus and "prometheus" not in doc:
        f.problem(f.line_of(doc), "prometheus", "is required: some rules are PromQL queries")

    if problems:
        order = {p.file: i for i, p in reversed(list(enumerate(problems)))}
        raise ConfigError(sorted(problems, key=lambda p: (order[p.file], p.line or 0)))
    return WatcherConfig(
        path=path, service=service, host=host, interval=interval, prometheus=prometheus, rules=tuple(rules),
        watch_window=watch_window, mode=mode, backend=backend, verify=verify, safety=safety,
        deploy_lock=deploy_lock, notify=tuple(notify), state_dir=state_dir, error_limit=error_limit,
        min_window=min_window, max_window=max_window, telemetry=telemetry, notify_pending=notify_pending,
        rule_files=tuple(rule_files), fleet=fleet, evidence=evidence, min_window_set="min_window" in doc,
        lock_timeout=lock_timeout,
    )


def with_scrape_interval(config: WatcherConfig, seconds: float) -> WatcherConfig:
    """`config` with a scrape interval learned from Prometheus; `min_window` follows it (3
    scrapes) unless the config set it."""
    prometheus = dataclasses.replace(config.prometheus, scrape_interval=seconds)
    min_window = config.min_window if config.min_window_set else min(3 * seconds, config.max_window)
    return dataclasses.replace(config, prometheus=prometheus, min_window=min_window)


def load_rule_file(path: str | os.PathLike, max_window: float = 60.0) -> list[Rule]:
    """Read one rule file on its own (for `rollback-watcher test`). Raises ConfigError."""
    problems: list[ConfigProblem] = []
    rules = _load_rules([Path(path)], problems, max_window)
    if problems:
        raise ConfigError(problems)
    return rules


def _read_yaml(path: Path, f: FileReader):
    try:
        raw = path.read_bytes()
    except OSError as exc:
        f.problem(None, "", f"cannot read: {exc.strerror or exc}")
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        f.problem(line, "", "not UTF-8 text")
        return None
    try:
        doc = yamlfile.load(text)
    except yamlfile.YamlProblem as exc:
        f.problem(exc.line, "", exc.message)
        return None
    if doc is None:
        f.problem(1, "", "the file is empty")
    return doc


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
        def sub(m: re.Match) -> str:
            name = m.group(1)
            if name not in environ:
                f.problem(line, key, f"environment variable {name} is not set")
                return ""
            return environ[name]

        return _ENV_VAR.sub(sub, value)
    return value


def _path(value: str | None, base: Path) -> Path | None:
    if value is None:
        return None
    p = Path(value).expanduser()
    return p if p.is_absolute() else (base / p)


def _section(doc: dict, key: str, f: FileReader, allowed: list[str]) -> dict:
    if key not in doc or doc[key] is None:
        return {}
    m = f.mapping(doc[key], f.line_of(doc, key), key)
    if m is None:
        return {}
    f.unknown_keys(m, allowed, f"{key}.")
    return m


def _read_prometheus(doc: dict, f: FileReader) -> PrometheusConfig:
    m = _section(doc, "prometheus", f, ["url", "timeout", "scrape_interval", "headers", "max_concurrency"])
    d = PrometheusConfig()
    url, headers = m.get("url"), m.get("headers")
    if isinstance(url, str) and isinstance(headers, dict) and "@" in url.partition("://")[2].partition("/")[0] \
            and any(str(k).lower() == "authorization" for k in headers):
        # requests lets the URL's userinfo replace the header: one credential would be dropped.
        f.problem(f.line_of(m, "headers"), "prometheus.headers",
                  "an Authorization header and userinfo in prometheus.url cannot both be sent; keep one of them")
    return PrometheusConfig(
        url=f.read(m, "url", _url, "prometheus.", d.url).rstrip("/"),
        timeout=f.read(m, "timeout", _positive_duration, "prometheus.", d.timeout),
        scrape_interval=f.read(m, "scrape_interval", _positive_duration, "prometheus.", d.scrape_interval),
        scrape_interval_set="scrape_interval" in m,
        headers=f.read(m, "headers", _str_map, "prometheus.", {}),
        max_concurrency=f.read(m, "max_concurrency", _positive_int, "prometheus.", d.max_concurrency),
    )


def _read_backend(doc: dict, f: FileReader, base: Path) -> BackendConfig | None:
    if "backend" not in doc or doc["backend"] is None:
        return None
    m = f.mapping(doc["backend"], f.line_of(doc, "backend"), "backend")
    if m is None:
        return None
    kind = f.read(m, "type", _choice(*BACKEND_KEYS), "backend.", required=True)
    if kind is None:
        return None
    table = BACKEND_KEYS[kind]
    before = len(f.problems)
    f.unknown_keys(m, ["type", *table], "backend.")
    options = {}
    for key, (kind_fn, required) in table.items():
        if kind_fn is _PATH:
            value = _path(f.read(m, key, _string, "backend.", required=required), base)
        else:
            value = f.read(m, key, kind_fn, "backend.", required=required)
        if value is not None:
            options[key] = value
    if kind == "nginx-bluegreen" and "slots" in options and len(options["slots"]) != 2:
        f.problem(f.line_of(m, "slots"), "backend.slots", "needs exactly two slots, e.g. {blue: 127.0.0.1:8001, green: 127.0.0.1:8002}")
    elif all(key in options for key, (_, required) in table.items() if required) and len(f.problems) == before:
        # The backend checks what a table cannot (slot addresses, image names): ask it now,
        # so that a bad option is a config error with a line, not a traceback at start.
        from watcher.backends import build_backend

        try:
            build_backend(kind, options)
        except ValueError as exc:
            f.problem(f.line_of(m, "type"), "backend", str(exc))
    return BackendConfig(kind, options)


def _read_verify(doc: dict, f: FileReader) -> VerifyConfig:
    m = _section(doc, "verify", f, ["url", "attempts", "every", "timeout", "expect_status", "expect_body", "successes",
                                    "clear_within"])
    d = VerifyConfig()
    return VerifyConfig(
        url=f.read(m, "url", _url, "verify."),
        attempts=f.read(m, "attempts", _positive_int, "verify.", d.attempts),
        every=f.read(m, "every", _positive_duration, "verify.", d.every),
        timeout=f.read(m, "timeout", _positive_duration, "verify.", d.timeout),
        expect_status=f.read(m, "expect_status", _status, "verify.", d.expect_status),
        expect_body=f.read(m, "expect_body", _string, "verify."),
        successes=f.read(m, "successes", _positive_int, "verify.", d.successes),
        clear_within=f.read(m, "clear_within", _positive_duration, "verify."),
    )


def _read_safety(doc: dict, f: FileReader) -> SafetyConfig:
    m = _section(doc, "safety", f, ["cooldown", "max_auto_rollbacks"])
    d = SafetyConfig()
    return SafetyConfig(
        cooldown=f.read(m, "cooldown", _duration, "safety.", d.cooldown),
        max_auto_rollbacks=f.read(m, "max_auto_rollbacks", _positive_int, "safety.", d.max_auto_rollbacks),
    )


def _read_telemetry(doc: dict, f: FileReader) -> TelemetryConfig:
    if "telemetry" in doc and doc["telemetry"] is False:
        return TelemetryConfig(listen=None)
    m = _section(doc, "telemetry", f, ["listen", "allow_remote"])
    t = TelemetryConfig(
        listen=f.read(m, "listen", _listen, "telemetry.", TelemetryConfig.listen),
        allow_remote=f.read(m, "allow_remote", _bool, "telemetry.", False),
    )
    if t.listen and not t.allow_remote:
        host = t.listen.rpartition(":")[0].strip("[]")
        if host not in ("127.0.0.1", "localhost", "::1") and not host.startswith("127."):
            f.problem(f.line_of(m, "listen"), "telemetry.listen",
                      f"{host} is not a loopback address; set telemetry.allow_remote: true to expose metrics")
    return t


def _read_notify(doc: dict, f: FileReader, base: Path) -> list[NotifyTarget]:
    raw = doc.get("notify")
    if raw is None:
        return []
    if not isinstance(raw, list):
        f.problem(f.line_of(doc, "notify"), "notify", f"expected a list of targets, got {_show(raw)}")
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
        url = f.read(m, "url", _string, f"{key}.", required=True)
        severity = f.read(m, "min_severity", _choice(*[s.value for s in Severity]), f"{key}.", "info")
        tags = f.read(m, "tags", _strings, f"{key}.", ())
        if url:
            targets.append(NotifyTarget(url=url, min_severity=Severity(severity), tags=tags))
    return targets


FLEET_KEYS = ["etcd", "name", "host", "prefix", "lease", "known_good_hosts", "timeout", "symptom_window", "tls",
              "username", "password"]


def _etcd_url(v: Any) -> str:
    s = _url(v)
    if "@" in s.split("/")[2]:
        # userinfo in a URL ends up in logs and tracebacks: credentials have their own keys
        raise ValueError("must not carry a user or password: use fleet.username and fleet.password (${VAR})")
    return s.rstrip("/")


def read_fleet(doc: dict, f: _File, base: Path, service: str, host: str) -> FleetConfig | None:
    """The `fleet:` section (absent: no fleet). Secrets come from ${VAR} and are never shown."""
    if doc.get("fleet") is None:
        return None
    m = _section(doc, "fleet", f, FLEET_KEYS)
    p = "fleet."
    endpoints = f.read(m, "etcd", _strings, p, (), required=True)
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
    tls_paths = {k: _path(f.read(tls, k, _string, "fleet.tls."), base) for k in ("ca", "cert", "key")}
    if bool(tls_paths["cert"]) != bool(tls_paths["key"]):
        f.problem(f.line_of(m, "tls"), "fleet.tls", "cert and key go together (client certificate authentication)")
    username = f.read(m, "username", _string, p)
    password = f.read(m, "password", _string, p)
    if bool(username) != bool(password):
        f.problem(f.line_of(m, "username" if username else "password"), "fleet.username",
                  "username and password go together (password from ${VAR})")
    name = f.read(m, "name", _string, p, service)
    prefix = f.read(m, "prefix", _string, p, FleetConfig.prefix)
    if not prefix.startswith("/"):
        f.problem(f.line_of(m, "prefix"), "fleet.prefix", f"must start with / (got {prefix!r})")
    d = FleetConfig((), name, host)
    lease = f.read(m, "lease", _positive_duration, p, d.lease)
    if lease < 2:
        f.problem(f.line_of(m, "lease"), "fleet.lease", "must be at least 2s (etcd leases count whole seconds)")
    return FleetConfig(
        endpoints=tuple(u.rstrip("/") for u in endpoints), name=name,
        host=f.read(m, "host", _string, p, host), prefix=prefix, lease=lease,
        known_good_hosts=f.read(m, "known_good_hosts", _positive_int, p, d.known_good_hosts),
        timeout=f.read(m, "timeout", _positive_duration, p, d.timeout),
        symptom_window=f.read(m, "symptom_window", _positive_duration, p, d.symptom_window),
        ca=tls_paths["ca"], cert=tls_paths["cert"], key=tls_paths["key"], username=username, password=password,
    )


def _status(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 100 <= v <= 599:
        raise ValueError(f"expected an HTTP status code such as 200, got {_show(v)}")
    return v


def _rule_files(doc: dict, f: FileReader, base: Path) -> list[Path]:
    raw = doc.get("rules")
    line = f.line_of(doc, "rules")
    if raw is None:
        f.problem(f.line_of(doc), "rules", "is required: a list of rule file globs, e.g. [rules/*.yaml]")
        return []
    try:
        patterns = _strings(raw)
    except ValueError as exc:
        f.problem(line, "rules", str(exc))
        return []
    files: list[Path] = []
    for i, pattern in enumerate(patterns):
        item_line = raw.item_lines[i] if isinstance(raw, yamlfile.YList) else line
        full = pattern if os.path.isabs(pattern) else str(base / pattern)
        matched = sorted(Path(p) for p in glob.glob(full) if os.path.isfile(p))
        if not matched:
            f.problem(item_line, f"rules[{i}]", f"{pattern!r} matches no rule file")
        files.extend(p for p in matched if p not in files)
    return files


def _load_rules(files: list[Path], problems: list[ConfigProblem], max_window: float) -> list[Rule]:
    rules: list[Rule] = []
    seen: dict[str, Location] = {}
    for path in files:
        f = FileReader(str(path), problems)
        doc = _read_yaml(path, f)
        if doc is None:
            continue
        if not isinstance(doc, dict) or "rules" not in doc:
            f.problem(1, "rules", "a rule file holds a mapping with a `rules:` list")
            continue
        f.unknown_keys(doc, ["rules"], "")
        raw = doc["rules"]
        if not isinstance(raw, list):
            f.problem(f.line_of(doc, "rules"), "rules", f"expected a list of rules, got {_show(raw)}")
            continue
        for i, item in enumerate(raw):
            name = item.get("name") if isinstance(item, dict) else None
            if isinstance(name, str) and name in seen:
                f.problem(f.line_of(item, "name"), f"rule {name}: name",
                          f"duplicate rule name (first defined at {seen[name]})")
                continue
            rule = read_rule(item, raw.item_lines[i], i, f, max_window)
            if isinstance(name, str):
                seen[name] = Location(f.path, raw.item_lines[i])
            if rule is not None:
                rules.append(rule)
    return rules


def read_rule(item: Any, line: int, index: int, f: FileReader, max_window: float) -> Rule | None:
    """One rule mapping of a rule file (or of a rule test file's inline `rules:`), validated;
    None with its problems recorded in `f` when it is not a valid rule."""
    m = f.mapping(item, line, f"rules[{index}]")
    if m is None:
        return None
    name = f.read(m, "name", _string, f"rules[{index}].", required=True)
    if name and not _RULE_NAME.match(name):
        f.problem(f.line_of(m, "name"), f"rules[{index}].name",
                  f"{name!r}: use letters, digits and - _ . : (it names metrics and files)")
    p = f"rules[{index}]." if not name else f"rule {name}: "
    count = len(f.problems)
    f.unknown_keys(m, RULE_KEYS, p)

    signals = [k for k in ("query", "http", "host") if k in m]
    signal = None
    if not signals:
        f.problem(m.line, f"{p}query", "missing: a rule reads `query:` (PromQL), `http:` (a probe) or `host:`")
    elif len(signals) > 1:
        f.problem(f.line_of(m, signals[1]), f"{p}{signals[1]}", f"a rule reads one signal, not both {' and '.join(signals)}")
    elif signals[0] == "query":
        query = f.read(m, "query", _string, p, required=True)
        if query:
            _check_promql(query, f, f.line_of(m, "query"), f"{p}query", max_window)
            signal = PromQuery(query.strip())
    elif signals[0] == "http":
        url = f.read(m, "http", _url, p, required=True)
        if url:
            signal = HttpCheck(
                url=url,
                expect_status=f.read(m, "expect_status", _status, p, 200),
                expect_body=f.read(m, "expect_body", _string, p),
                timeout=f.read(m, "timeout", _positive_duration, p, 2.0),
            )
    else:
        kind = f.read(m, "host", _choice(*HOST_SIGNALS), p, required=True)
        if kind:
            unit = f.read(m, "unit", _string, p)
            if kind == "unit_restarts" and not unit:
                f.problem(f.line_of(m, "host"), f"{p}unit", "is required for host: unit_restarts (e.g. shop-api.service)")
            signal = HostCheck(kind=kind, window=f.read(m, "window", _positive_duration, p, 300.0), unit=unit,
                               path=f.read(m, "path", _string, p, "/proc/vmstat"))

    probe_keys = ("expect_status", "expect_body", "timeout")
    host_keys = ("unit", "window", "path")
    for key in probe_keys if not isinstance(signal, HttpCheck) else ():
        if key in m:
            f.problem(f.line_of(m, key), f"{p}{key}", "only applies to `http:` rules")
    for key in host_keys if not isinstance(signal, HostCheck) else ():
        if key in m:
            f.problem(f.line_of(m, key), f"{p}{key}", "only applies to `host:` rules")

    above = f.read(m, "above", _number, p)
    below = f.read(m, "below", _number, p)
    above_baseline = f.read(m, "above_baseline", _non_negative, p)
    floor = f.read(m, "floor", _number, p)
    if isinstance(signal, HttpCheck):
        for key in ("above", "below", "above_baseline", "floor", "no_data"):
            if key in m:
                f.problem(f.line_of(m, key), f"{p}{key}", "does not apply to `http:` rules (they fail or pass)")
    elif isinstance(signal, HostCheck):
        if above is None and below is None:
            above = 0.0  # a host counter breaches when it grew at all within `window`
    elif signal is not None and above is None and below is None and above_baseline is None:
        f.problem(m.line, f"{p}above", "missing: a query rule needs `above`, `below` or `above_baseline`")
    if floor is not None and above_baseline is None:
        f.problem(f.line_of(m, "floor"), f"{p}floor", "only applies together with `above_baseline`")

    action = f.read(m, "action", _choice(*ACTIONS), p, required=True)
    rule = Rule(
        name=name or f"rule-{index}",
        signal=signal,
        action=action or "notify",
        above=above,
        below=below,
        above_baseline=above_baseline,
        floor=floor,
        for_=f.read(m, "for", _duration, p, 0.0),
        failures=f.read(m, "failures", _positive_int, p, 1),
        no_data=f.read(m, "no_data", _choice(*NO_DATA_POLICIES), p, "ok"),
        baseline_window=f.read(m, "baseline_window", _positive_duration, p, 1800.0),
        value_unit=f.read(m, "value_unit", _string, p, ""),
        description=f.read(m, "description", _string, p, ""),
        notify=f.read(m, "notify", _strings, p, ()),
        trailing=f.read(m, "trailing", _trailing, p),
        location=Location(f.path, line),
    )
    return rule if len(f.problems) == count and signal is not None else None


def _check_promql(query: str, f: FileReader, line: int | None, key: str, max_window: float) -> None:
    """Offline syntax check. promql-parser gives no position, so the rule's own line is used."""
    import promql_parser  # a compiled extension: loaded only when rules are checked

    rendered = query.replace(WINDOW_TOKEN, f"{int(max_window)}s")
    if "$" in rendered:
        f.problem(line, key, f"unknown placeholder in {query!r}: only [{WINDOW_TOKEN}] is substituted")
        return
    try:
        promql_parser.parse(rendered)
    except (ValueError, TypeError) as exc:
        f.problem(line, key, f"invalid PromQL: {exc}")
