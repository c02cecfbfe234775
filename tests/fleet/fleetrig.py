"""A fleet of sandbox hosts for the end-to-end scenarios and the benchmark.

Each FleetHost is one "VM": a symlink release layout, ONE demo app started with
`--settings current/settings.json` (a deploy or a rollback re-points `current`, then SIGHUPs
the app, which re-reads the settings of whatever is current), and `rollback-watcher run` as a
subprocess with a `fleet:` section. All hosts share one Prometheus (scrape 1 s; each host's rule
selects its own app with `instance="127.0.0.1:PORT"`) and one etcd cluster; a fleet name per
scenario keeps scenarios apart in one cluster.

The host itself (releases, the app, the watcher, its journal) is the ScenarioHost every scenario
suite shares (tests/support/scenarios.py); what is here is the fleet's rule, its config and the
group of hosts. The apps' ports are chosen before Prometheus starts (its targets are fixed at
start): a PortPool hands them out.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from support import NotificationReceiver, PrometheusServer, ScenarioHost

RULES = """\
rules:
  - name: http-5xx-ratio
    query: sum(rate(http_requests_total{code=~"5..",SEL}[$window])) / sum(rate(http_requests_total{SEL}[$window]))
    above: 0.10
    for: FOR
    value_unit: "%"
    action: rollback
"""

class FleetHost(ScenarioHost):
    """One "VM" of a fleet: a ScenarioHost whose watcher.yaml has a `fleet:` section."""

    def __init__(self, root: Path, name: str, port: int, prometheus: PrometheusServer, endpoints: list[str],
                 fleet: str, receiver: NotificationReceiver | None = None):
        super().__init__(root, port, prometheus, receiver, name=name)
        self.endpoints = list(endpoints)
        self.fleet = fleet

    def write_config(self, rule_for: str = "3s", **extra: Any) -> Path:
        """RULES with this app's selector; a dict in `extra` is merged into that section."""
        rules = RULES.replace("SEL", f'instance="{self.instance}"').replace("FOR", rule_for)
        cfg = self.base_config(self.name)
        cfg["fleet"] = {"etcd": self.endpoints, "name": self.fleet, "host": self.name, "lease": "3s",
                        "timeout": "1s", "known_good_hosts": 2, "symptom_window": "1m"}
        for key, value in extra.items():
            if isinstance(value, dict) and isinstance(cfg.get(key), dict):
                cfg[key] = {**cfg[key], **value}
            else:
                cfg[key] = value
        return self.write_files(rules, cfg)

    def cli(self, *args: str, timeout: float = 120, check: bool = False):
        """The CLI; its exit code is the caller's to judge (`gate` answers 1 and 2 on purpose)."""
        return super().cli(*args, timeout=timeout, check=check)

    def ready(self, first: str = "r1", **config: Any) -> None:
        """App on `first`, watcher running, `first` known-good: a host of a healthy fleet.
        `first` is marked good in the state before the watcher starts, as `mark good` would
        (18 CLI processes at once starve a busy 2-core machine for minutes)."""
        from watcher.core.model import ReleaseRecord
        from watcher.store.state import State, StateStore

        self.start_app(first)
        self.write_config(**config)
        store = StateStore(self.state_dir)
        store.ensure_dir()
        store.save(State(releases={first: ReleaseRecord(first, mark="good", reason="marked by the test")}))
        self.start_watcher()

    def sent(self, kind: str) -> list[dict]:
        return [e for e in self.events("notify_sent") if e.get("message_kind") == kind]


class Fleet:
    """N hosts of one fleet name on one Prometheus and one etcd."""

    def __init__(self, root: Path, name: str, ports: list[int], prometheus: PrometheusServer, endpoints: list[str],
                 receiver: NotificationReceiver | None = None):
        self.name = name
        self.hosts = [FleetHost(root / f"h{i}", f"{name}-h{i}", port, prometheus, endpoints, name, receiver)
                      for i, port in enumerate(ports)]

    def __getitem__(self, i: int) -> FleetHost:
        return self.hosts[i]

    def each(self, fn, hosts=None) -> None:
        """fn(host) on every host at once (starting watchers one by one takes N x 2 s)."""
        errors: list[BaseException] = []

        def run(h):
            try:
                fn(h)
            except BaseException as exc:  # noqa: BLE001 - re-raised below in the caller's thread
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(h,)) for h in (hosts or self.hosts)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]

    def close(self) -> None:
        for h in self.hosts:
            h.close()
