"""The typed configuration: frozen dataclasses built from a validated watcher.yaml
(config/load.py) and passed around the code, never raw mappings."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from watcher.core.envelope import NotifyTarget
from watcher.core.rules import Rule


@dataclass(frozen=True)
class PrometheusConfig:
    url: str = "http://127.0.0.1:9090"
    timeout: float = 5.0
    scrape_interval: float = 15.0
    # Whether `scrape_interval` was written in the config: if not, the watcher learns it from
    # Prometheus' targets at start (signals.learn_scrape_interval) and says so.
    scrape_interval_set: bool = False
    headers: dict[str, str] = field(default_factory=dict, hash=False)
    max_concurrency: int = 8  # queries of one tick in flight at once
    # Matchers added to every selector of every PromQL rule but `scope: fleet` ones
    # (config/bind.py): one rule table for a fleet on a shared Prometheus.
    labels: dict[str, str] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class BackendConfig:
    type: str
    options: dict[str, Any] = field(default_factory=dict, hash=False)  # typed keyword arguments


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


def with_scrape_interval(config: WatcherConfig, seconds: float) -> WatcherConfig:
    """`config` with a scrape interval learned from Prometheus; `min_window` follows it (3
    scrapes) unless the config set it."""
    prometheus = dataclasses.replace(config.prometheus, scrape_interval=seconds)
    min_window = config.min_window if config.min_window_set else min(3 * seconds, config.max_window)
    return dataclasses.replace(config, prometheus=prometheus, min_window=min_window)


