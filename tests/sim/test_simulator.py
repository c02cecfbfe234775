"""The simulator's own parts: the same history runs the same twice, the fake etcd keeps the
semantics the fleet relies on (tests/fleet checks the real gateway against a real etcd), the
ground truth's Prometheus computes what Prometheus would.

The fake etcd is the one fake here, at the process boundary: thousands of simulated fleets
cannot each start an etcd cluster."""

from __future__ import annotations

import math

import pytest

from sim.etcd import FakeEtcd, FakeGateway, well_formed_verdict
from sim.generate import RandomChoices, generate
from sim.truth import App, Profile, Scrapes
from sim.world import run_history
from watcher.fleet.etcd import FleetUnavailable, WatchEnded


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def test_a_generated_history_runs_the_same_twice():
    history = generate(RandomChoices(1038))
    first, second = run_history(history), run_history(history)
    assert [str(v) for v in first.violations] == [str(v) for v in second.violations]
    assert (first.stats.ticks, first.stats.seconds) == (second.stats.ticks, second.stats.seconds)


def test_fake_etcd_create_is_first_writer_wins_and_replace_compares_the_exact_old_value():
    etcd = FakeEtcd(Clock())
    gw = FakeGateway(etcd, "web-1", lambda: True)
    assert gw.create("/k", "one") is True
    assert gw.create("/k", "two") is False
    assert gw.replace("/k", b"two", "three") is False
    assert gw.replace("/k", b"one", "three") is True
    assert gw.get("/k") == b"three"


def test_fake_etcd_lease_expiry_deletes_its_keys_and_the_watch_sees_the_delete():
    clock = Clock()
    etcd = FakeEtcd(clock)
    gw = FakeGateway(etcd, "web-1", lambda: True)
    lease = gw.grant(3)
    gw.put("/p/hosts/web-1", "{}", lease_id=lease)
    start = etcd.revision + 1
    clock.t += 2.9
    assert gw.keepalive(lease) == 3
    clock.t += 3.1
    assert gw.get("/p/hosts/web-1") is None
    assert gw.keepalive(lease) == -1
    stream = gw.watch("/p/", start, 30.0)
    events = []
    with pytest.raises(WatchEnded):
        for _rev, batch in stream.events():
            events += batch
    assert [(e.kind, e.key) for e in events] == [("delete", "/p/hosts/web-1")]


def test_fake_etcd_watch_from_a_compacted_revision_asks_for_a_full_read():
    etcd = FakeEtcd(Clock())
    gw = FakeGateway(etcd, "web-1", lambda: True)
    gw.put("/p/a", "1")
    etcd.compact()
    with pytest.raises(WatchEnded) as ended:
        list(gw.watch("/p/", 1, 30.0).events())
    assert ended.value.resync


def test_a_partitioned_host_cannot_reach_the_fake_etcd():
    gw = FakeGateway(FakeEtcd(Clock()), "web-1", lambda: False)
    with pytest.raises(FleetUnavailable):
        gw.put("/p/a", "1")


def test_a_verdict_this_version_writes_is_well_formed_and_another_shape_is_not():
    from watcher.core.fleetmodel import FleetVerdict

    assert well_formed_verdict(FleetVerdict("r1", "bad", "web-1", 1.0, "errors", 0.3, "why").encode().encode())
    assert well_formed_verdict(b'{"verdict": "good", "host": 42, "at": "soon"}') is None
    assert well_formed_verdict(b"\x00garbage") is None


def test_the_error_ratio_of_a_flapping_release_is_its_share_over_the_range():
    app = App({"r1": Profile(error=0.0, flap_on_s=5, flap_off_s=5, flap_error=0.3)})
    app.restart("r1", 0.0, 0.0)
    scrapes = Scrapes(app, scrape=1.0, phase=0.5)
    assert scrapes.error_ratio(60.5, 60.0) == pytest.approx(0.15, abs=0.01)
    # A 4 s trailing window inside a healthy half-period sees no errors.
    assert scrapes.error_ratio(59.5, 4.0) == pytest.approx(0.0, abs=1e-9)


def test_a_release_without_traffic_has_no_ratio_and_one_never_failing_has_no_5xx_series():
    app = App({"quiet": Profile(error=0.0, traffic=0.0), "clean": Profile(error=0.0)})
    app.restart("quiet", 0.0, 0.0)
    assert Scrapes(app, 1.0, 0.5).error_ratio(30.0, 20.0) is None
    app = App({"clean": Profile(error=0.0)})
    app.restart("clean", 0.0, 0.0)
    assert Scrapes(app, 1.0, 0.5).error_ratio(30.0, 20.0) is None


def test_a_restart_leaves_a_gap_in_up():
    app = App({"r1": Profile(), "r2": Profile()})
    app.restart("r1", 0.0, 0.0)
    app.restart("r2", 10.0, 5.0)
    scrapes = Scrapes(app, 1.0, 0.5)
    assert scrapes.up(12.6) == 0.0
    assert scrapes.up(16.6) == 1.0
    assert not math.isnan(scrapes.error_ratio(20.0, 10.0) or 0.0)
