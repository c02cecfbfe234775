"""The fleet in one watcher's tick, in-process with a fake clock (tests/support/ticking.py),
its FleetLink on the real etcd: what a verdict from another host does here."""

from __future__ import annotations

import json

import pytest

from support import wait_for
from support.ticking import PROBE_RULE, Clock, ticks
from watcher.config.load import load_config
from watcher.core.fleetmodel import BAD, FleetVerdict
from watcher.service.tick import build_watcher


@pytest.fixture
def fleet_watcher(symlink_host, etcd, fleet_name):
    started = []

    def make(clock):
        cfg = load_config(symlink_host.write_config(
            PROBE_RULE, watch_window="10m",
            fleet={"etcd": etcd.endpoints, "name": fleet_name, "host": "web-b", "lease": "3s", "timeout": "1s"}),
            environ={})
        w = build_watcher(cfg, notify=False, clock=clock, fleet=True)
        w.sleep = lambda s: None
        w.fleet.start()
        started.append(w)
        w.start()
        return w

    yield make
    for w in started:
        w.fleet.stop()


def learned(w, release):
    return wait_for(lambda: release in w.fleet.view.verdicts, 20, what=f"the verdict for {release}")


def test_a_release_bad_elsewhere_is_never_the_rollback_target_here(symlink_host, fleet_watcher, link):
    host = symlink_host
    host.add_release("r1")
    host.add_release("r2")
    host.add_release("r3", health=503)
    host.deploy("r2")
    clock = Clock()
    w = fleet_watcher(clock)
    for rid in ("r1", "r2"):
        w.apply_request("mark", {"release": rid, "mark": "good"}, clock())
    ticks(w, clock, 1)
    link("web-a").publish_verdict(FleetVerdict("r2", BAD, "web-a", clock(), "http-5xx-ratio", 0.3, "5xx"))
    learned(w, "r2")
    host.deploy("r3")
    reports = ticks(w, clock, 4)
    assert "rolled_back" in [r.acted for r in reports]
    assert host.current_id() == "r1"  # not r2, known-good here but bad fleet-wide
    assert w.state.releases["r2"].mark == "bad"
    assert any(e["kind"] == "mark" and e.get("release") == "r2" and e.get("by") == "fleet (web-a)" for e in host.journal())


def test_a_verdict_for_the_current_release_rolls_back_as_a_fleet_trigger(symlink_host, fleet_watcher, link):
    host = symlink_host
    host.add_release("r1")
    host.add_release("r2")
    host.deploy("r1")
    clock = Clock()
    w = fleet_watcher(clock)
    w.apply_request("mark", {"release": "r1", "mark": "good"}, clock())
    ticks(w, clock, 1)
    host.deploy("r2")  # healthy here: only the fleet knows
    ticks(w, clock, 2)
    assert host.current_id() == "r2"
    link("web-a").publish_verdict(FleetVerdict("r2", BAD, "web-a", clock(), "http-5xx-ratio", 0.3, "5xx 30%"))
    learned(w, "r2")
    reports = ticks(w, clock, 2)
    assert reports[0].acted == "rolled_back" and host.current_id() == "r1"
    intent = next(e for e in host.journal() if e["kind"] == "rollback_intent")
    assert intent["rules"] == ["fleet:http-5xx-ratio"]
    assert "web-a" in reports[0].verdict.findings[0].condition
    # Rolled back because another host said so: nothing more to tell the fleet about r2.
    outbox = host.state_dir / "fleet-outbox.json"
    assert not outbox.exists() or all(o["kind"] != "verdict" for o in json.loads(outbox.read_text()))
