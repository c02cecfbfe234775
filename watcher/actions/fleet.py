"""Fleet commands: `gate RELEASE` for deploy scripts and `fleet status` (watcher/fleet/link.py).

    rollback-watcher gate r42                       0 go, 1 bad fleet-wide, 2 unknown
    rollback-watcher gate r42 --wait --canary 2 --timeout 20m
                                                    block until r42 survived its window on 2
                                                    hosts (0) or is bad anywhere (1); 2 on timeout

`gate` reads etcd once per `--every` while it waits (a deploy script's gate is one process for
a few minutes, not a watcher per tick). etcd unreachable is "unknown" (2), never "go".
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from watcher.base.errors import ConfigError, ConfigProblem
from watcher.base.format import untrusted
from watcher.config.load import load_config
from watcher.config.schema import FleetConfig, WatcherConfig
from watcher.core.fleetmodel import (
    HOST_MAX,
    REASON_MAX,
    RELEASE_MAX,
    FleetVerdict,
    FleetView,
    GateAnswer,
    GateCode,
    Keys,
    Member,
    gate_answer,
    survived_at,
)
from watcher.fleet.etcd import EtcdGateway, FleetUnavailable


def fleet_config(path: str) -> FleetConfig:
    cfg = load_config(path)
    if cfg.fleet is None:
        raise ConfigError([ConfigProblem(str(cfg.path), None, "fleet", "no `fleet:` section: this host is not in a fleet")])
    return cfg.fleet


def run_gate(cfg: FleetConfig, release: str, canary: int | None, wait: bool, limit: float, step: float,
             clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> GateAnswer:
    gateway = EtcdGateway(cfg)
    deadline = clock() + limit
    while True:
        try:
            answer = gate_answer(release, read_view(gateway, cfg), canary, cfg.known_good_hosts)
        except FleetUnavailable as exc:
            answer = GateAnswer(GateCode.UNKNOWN, f"etcd unreachable: {exc}")
        if answer.final or not wait or clock() + step > deadline:
            return answer
        sleep(step)


def view_json(view: FleetView, name: str) -> dict[str, Any]:
    return {
        "fleet": name,
        "hosts": {h: {"release": m.release, "phase": m.phase, "in_window": m.in_window, "known_good": m.known_good,
                      "firing": m.firing, "tick_at": m.tick_at, "previous": m.previous}
                  for h, m in sorted(view.members.items())},
        "verdicts": {r: {"verdict": v.verdict, "host": v.host, "at": v.at, "rule": v.rule, "value": v.value,
                         "reason": v.reason} for r, v in sorted(view.verdicts.items())},
        "survived": {r: sorted(h) for r, h in sorted(view.survived.items())},
    }


def format_view(view: FleetView, name: str, now: float) -> str:
    """The fleet for a terminal. Every name and reason in it was written to etcd by some host:
    `untrusted` (one line, no terminal escapes, capped) before it is printed."""
    lines = [f"fleet {name}: {len(view.members)} host(s) alive"]
    lines.append(f"  {'HOST':<20} {'RELEASE':<24} {'PHASE':<12} {'WINDOW':<7} {'LAST TICK':<10} FIRING")
    for host, m in sorted(view.members.items()):
        firing = untrusted(", ".join(sorted(m.firing)), 120) or "-"
        ago = f"{max(0.0, now - m.tick_at):.0f}s ago" if m.tick_at else "-"
        lines.append(f"  {untrusted(host, HOST_MAX):<20} {untrusted(m.release or '?', RELEASE_MAX):<24} "
                     f"{untrusted(m.phase, 12):<12} {'yes' if m.in_window else 'no':<7} {ago:<10} {firing}")
    releases = sorted(set(view.verdicts) | set(view.survived))
    if releases:
        lines.append(f"  {'RELEASE':<24} {'VERDICT':<8} {'BY':<20} {'SURVIVED ON':<12} WHY")
    for r in releases:
        v = view.verdicts.get(r)
        survived = len(view.survived.get(r, ()))
        why = untrusted((f"{v.rule}: {v.reason}" if v.rule else v.reason) if v else "", REASON_MAX)
        lines.append(f"  {untrusted(r, RELEASE_MAX):<24} {v.verdict if v else '-':<8} "
                     f"{untrusted(v.host, HOST_MAX) if v else '-':<20} {survived:<12} {why}")
    return "\n".join(lines)


def status_block(cfg: FleetConfig, now: float) -> tuple[dict[str, Any], str]:
    """`status` with a fleet: the fleet as etcd sees it now (one read, the short timeout)."""
    try:
        view = read_view(EtcdGateway(cfg), cfg)
    except FleetUnavailable as exc:
        return {"fleet": cfg.name, "error": str(exc)}, f"fleet {cfg.name}: etcd unreachable: {exc}"
    return view_json(view, cfg.name), format_view(view, cfg.name, now)


def check_online(cfg: WatcherConfig) -> list[tuple[str, bool, str]]:
    """`check --online` for the fleet: (what, ok, what it said) for each etcd endpoint's
    /health and for one read of the fleet's keys; nothing without a `fleet:` section."""
    if cfg.fleet is None:
        return []
    return check_etcd(cfg.fleet)


def check_etcd(config: FleetConfig) -> list[tuple[str, bool, str]]:
    """Each endpoint's health (GET /health), then one read of the fleet's keys."""
    gateway = EtcdGateway(config)
    rows = gateway.health()
    try:
        _, kvs = gateway.range_prefix(config.root)
        rows.append((f"read {config.root}", True, f"read {config.root}: {len(kvs)} key(s)"))
    except FleetUnavailable as exc:
        rows.append((f"read {config.root}", False, str(exc)))
    return rows


def read_view(gateway: EtcdGateway, config: FleetConfig) -> FleetView:
    """The fleet as one read of etcd sees it (for `gate` and `fleet status`)."""
    keys = Keys(config.root)
    _, kvs = gateway.range_prefix(config.root)
    members: dict[str, Member] = {}
    verdicts: dict[str, FleetVerdict] = {}
    survived: dict[str, set[str]] = {}
    for kv in kvs:
        parsed = keys.parse(kv.key)
        if parsed is None:
            continue
        what, release, host = parsed
        if what == "member":
            m = Member.decode(host, kv.value) if kv.lease else None  # no lease: written by hand, no member
            if m is not None:
                members[host] = m
        elif what == "survived" and survived_at(kv.value) is not None:
            survived.setdefault(release, set()).add(host)
        elif what == "verdict":
            v = FleetVerdict.decode(release, kv.value)
            if v is not None:
                verdicts[release] = v
    return FleetView(members, verdicts, {r: frozenset(h) for r, h in survived.items()})
