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

from watcher.core.fleetmodel import (
    FleetVerdict,
    FleetView,
    GateAnswer,
    GateCode,
    Keys,
    Member,
    gate_answer,
    survived_at,
)


def fleet_config(path: str):
    from watcher.base.errors import ConfigError, ConfigProblem
    from watcher.config.load import load_config

    cfg = load_config(path)
    if cfg.fleet is None:
        raise ConfigError([ConfigProblem(str(cfg.path), None, "fleet", "no `fleet:` section: this host is not in a fleet")])
    return cfg.fleet


def run_gate(cfg, release: str, canary: int | None, wait: bool, limit: float, step: float,
             clock=time.monotonic, sleep=time.sleep) -> GateAnswer:
    from watcher.fleet.etcd import EtcdGateway, FleetUnavailable

    gateway = EtcdGateway(cfg)
    deadline = clock() + limit
    while True:
        try:
            answer = gate_answer(release, read_view(gateway, cfg), canary)
        except FleetUnavailable as exc:
            answer = GateAnswer(GateCode.UNKNOWN, f"etcd unreachable: {exc}")
        if answer.final or not wait or clock() + step > deadline:
            return answer
        sleep(step)


def view_json(view: FleetView, name: str) -> dict:
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
    lines = [f"fleet {name}: {len(view.members)} host(s) alive"]
    lines.append(f"  {'HOST':<20} {'RELEASE':<24} {'PHASE':<12} {'WINDOW':<7} {'LAST TICK':<10} FIRING")
    for host, m in sorted(view.members.items()):
        firing = ", ".join(sorted(m.firing)) or "-"
        ago = f"{max(0.0, now - m.tick_at):.0f}s ago" if m.tick_at else "-"
        lines.append(f"  {host:<20} {m.release or '?':<24} {m.phase:<12} {'yes' if m.in_window else 'no':<7} "
                     f"{ago:<10} {firing}")
    releases = sorted(set(view.verdicts) | set(view.survived))
    if releases:
        lines.append(f"  {'RELEASE':<24} {'VERDICT':<8} {'BY':<20} {'SURVIVED ON':<12} WHY")
    for r in releases:
        v = view.verdicts.get(r)
        survived = len(view.survived.get(r, ()))
        why = (f"{v.rule}: {v.reason}" if v.rule else v.reason) if v else ""
        lines.append(f"  {r:<24} {v.verdict if v else '-':<8} {v.host if v else '-':<20} {survived:<12} {why}")
    return "\n".join(lines)


def status_block(cfg, now: float) -> tuple[dict, str]:
    """`status` with a fleet: the fleet as etcd sees it now (one read, the short timeout)."""
    from watcher.fleet.etcd import EtcdGateway, FleetUnavailable

    try:
        view = read_view(EtcdGateway(cfg), cfg)
    except FleetUnavailable as exc:
        return {"fleet": cfg.name, "error": str(exc)}, f"fleet {cfg.name}: etcd unreachable: {exc}"
    return view_json(view, cfg.name), format_view(view, cfg.name, now)


def check_online(cfg) -> list[str]:
    """`check --online` for the fleet: problems found (an empty list when etcd answers)."""
    if cfg.fleet is None:
        return []

    return [f"{what}: {detail}" for what, ok, detail in check_etcd(cfg.fleet) if not ok]


def check_etcd(config) -> list[tuple[str, bool, str]]:
    """`check --online`: each endpoint's health, then one read of the fleet's keys."""
    from watcher.fleet.etcd import EtcdGateway, FleetUnavailable

    gateway = EtcdGateway(config)
    rows = gateway.health()
    try:
        _, kvs = gateway.range_prefix(config.root)
        rows.append((f"read {config.root}", True, f"{len(kvs)} key(s)"))
    except FleetUnavailable as exc:
        rows.append((f"read {config.root}", False, str(exc)))
    return rows


def read_view(gateway, config) -> FleetView:
    """The fleet as one read of etcd sees it (for `gate` and `fleet status`)."""
    keys = Keys(config.root)
    _, kvs = gateway.range_prefix(config.root)
    members, verdicts, survived = {}, {}, {}
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
