"""The fleet end to end: N watchers as subprocesses, each with its own sandbox symlink host and
demo app, one shared Prometheus, a real 3-member etcd (tests/fleet/fleetrig.py).

The scenarios are slow by nature (watchers start, deploys, `for: 3s`, rollbacks verify), so
the first test to ask starts every selected scenario at once, each in its own thread with its
own fleet name (scenarios that kill etcd members get a cluster of their own); each test then
waits for its scenario and re-raises what went wrong there.
"""

from __future__ import annotations

import functools
import json
import time
import traceback
from concurrent.futures import Future
from pathlib import Path

import httpx
import pytest
from fleetrig import Fleet

from support import NotificationReceiver, PortPool, PrometheusServer, ScenarioRunner, free_port, wait_for
from support.etcd import EtcdCluster
from watcher.actions.fleet import read_view
from watcher.fleet.etcd import EtcdGateway

BAD = {"error_ratio": 0.3}
OK = {"error_ratio": 0.0}
TIMEOUT = 240.0  # one scenario, start to outcome

SCENARIOS: dict[str, tuple[int, object]] = {}  # name -> (hosts it needs, fn(env, fleet))


def scenario(name: str, hosts: int):
    def register(fn):
        SCENARIOS[name] = (hosts, fn)
        return fn
    return register


class Env:
    def __init__(self, root: Path, ports: PortPool, prometheus: PrometheusServer, endpoints: list[str],
                 receiver: NotificationReceiver):
        self.root, self.ports, self.prometheus, self.endpoints, self.receiver = root, ports, prometheus, endpoints, receiver

    def fleet(self, name: str, n: int, endpoints: list[str] | None = None) -> Fleet:
        return Fleet(self.root / name, name, self.ports.take(n), self.prometheus, endpoints or self.endpoints,
                     self.receiver)

    def cluster(self, name: str) -> EtcdCluster:
        return EtcdCluster(self.root / name / "etcd").start_all()


def fleet_view(host):
    from watcher.config.load import load_config

    cfg = load_config(host.config_path).fleet
    return read_view(EtcdGateway(cfg), cfg)


# ---------------------------------------------------------------------------------------------
# The scenarios


@scenario("bad_release_3_of_5", hosts=5)
def bad_release_on_three_of_five(env: Env, fleet: Fleet) -> None:
    """r2 is bad only where traffic shows it (h0); h1 and h2 have too little traffic to see it.
    h0 rolls back; h1, h2 learn the verdict and roll back too; gate refuses r2 for h3, h4."""
    for i, h in enumerate(fleet.hosts):
        h.add_release("r1", **OK)
        h.add_release("r2", **(BAD if i == 0 else {"error_ratio": 0.02}))
    metrics_port = free_port()
    fleet.each(lambda h: h.ready("r1", **({"telemetry": {"listen": f"127.0.0.1:{metrics_port}"}} if h is fleet[1] else {})))
    fleet.each(lambda h: h.deploy("r2"), fleet.hosts[:3])
    fleet[0].wait_event("rollback_verified", 120, release="r2")
    for h in fleet.hosts[1:3]:
        e = h.wait_event("rollback_intent", 60, release="r2")
        assert e["rules"] == ["fleet:http-5xx-ratio"], e
        h.wait_event("rollback_verified", 60, release="r2")
        assert h.current_id() == "r1"
    for h in fleet.hosts[3:]:
        out = h.cli("gate", "r2")
        assert out.returncode == 1, out.stdout + out.stderr
        assert f"rolled back on {fleet[0].name} (http-5xx-ratio)" in out.stdout
        assert h.current_id() == "r1" and not h.events("rollback_intent")
    # The originating host and rule are in the other hosts' messages.
    for h in fleet.hosts[1:3]:
        wait_for(lambda h=h: h.sent("rollback_verified"), 30, what=f"{h.name}'s rollback message")
        assert len(h.sent("rolling_back")) == 1
    v = fleet_view(fleet[3]).verdicts["r2"]
    assert (v.verdict, v.host, v.rule) == ("bad", fleet[0].name, "http-5xx-ratio")
    # h1's telemetry: membership, the verdict learned, its propagation delay, etcd's counters.
    metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5, trust_env=False).text
    assert "rollback_watcher_fleet_members 5.0" in metrics
    assert 'rollback_watcher_fleet_verdicts_learned_total{verdict="bad"} 1.0' in metrics
    assert "rollback_watcher_fleet_propagation_seconds_count 1.0" in metrics
    assert "rollback_watcher_fleet_etcd_errors" in metrics and "rollback_watcher_fleet_blind 0.0" in metrics


@scenario("canary_pass", hosts=1)
def canary_gate_passes(env: Env, fleet: Fleet) -> None:
    h = fleet[0]
    h.add_release("r1", **OK)
    h.add_release("r3", **OK)
    h.ready("r1", watch_window="6s")
    h.deploy("r3")
    out = h.cli("gate", "r3", "--wait", "--canary", "1", "--timeout", "120s", "--every", "500ms", timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    assert h.current_id() == "r3"


@scenario("canary_fail", hosts=1)
def canary_gate_fails(env: Env, fleet: Fleet) -> None:
    h = fleet[0]
    h.add_release("r1", **OK)
    h.add_release("r4", **BAD)
    h.ready("r1")
    h.deploy("r4")
    out = h.cli("gate", "r4", "--wait", "--canary", "1", "--timeout", "120s", "--every", "500ms", timeout=180)
    assert out.returncode == 1, out.stdout + out.stderr
    h.wait_event("rollback_verified", 60, release="r4")


@scenario("fleet_wide_symptom", hosts=3)
def symptom_on_every_host_is_not_the_release(env: Env, fleet: Fleet) -> None:
    """h0, h1 on the new r2, h2 still on known-good r1; then the 'database' fails for all.

    `for: 20s`: h2, outside any window, reads its rule over max_window (1m), which crosses 10%
    only ~10 s after the onset, while h0 and h1 read theirs since their deploy; a `for` shorter
    than that lets the new release fire before the old one breaches (docs/fleet.md)."""
    for h in fleet.hosts:
        h.add_release("r1", **OK)
        h.add_release("r2", **OK)
    fleet.each(lambda h: h.ready("r1", rule_for="20s"))
    fleet.each(lambda h: h.deploy("r2"), fleet.hosts[:2])
    for h in fleet.hosts[:2]:
        h.wait_event("deploy", 30, release="r2")
    time.sleep(2)
    fleet.each(lambda h: h.app.control(error_ratio=0.6))
    outage = time.time()
    for h in fleet.hosts[:2]:
        e = h.wait_event("verdict", 90, check="fleet_symptom")
        assert fleet[2].name in e["reason"], e
    # Watch a while longer: no rollback anywhere, one symptom message per host.
    wait_for(lambda: time.time() > outage + 15, 30, what="observation")
    for h in fleet.hosts:
        assert not h.events("rollback_intent"), h.name
        assert h.current_id() == ("r1" if h is fleet[2] else "r2")
    for h in fleet.hosts[:2]:
        wait_for(lambda h=h: h.sent("fleet_symptom"), 30, what=f"{h.name}'s symptom message")
        assert len(h.sent("fleet_symptom")) == 1


@scenario("etcd_member_killed", hosts=2)
def one_etcd_member_killed_changes_nothing(env: Env, fleet: Fleet) -> None:
    cluster = env.cluster("etcd_member_killed")
    try:
        for h in fleet.hosts:
            h.endpoints = cluster.endpoints
            h.add_release("r1", **OK)
            h.add_release("r2", **(BAD if h is fleet[0] else OK))
        fleet.each(lambda h: h.ready("r1"))
        cluster.kill(0)
        fleet.each(lambda h: h.deploy("r2"))
        fleet[0].wait_event("rollback_verified", 120, release="r2")
        e = fleet[1].wait_event("rollback_intent", 60, release="r2")
        assert e["rules"] == ["fleet:http-5xx-ratio"]
        for h in fleet.hosts:
            assert not h.events("fleet_blind"), h.name
    finally:
        fleet.close()
        cluster.stop_all()


@scenario("etcd_all_down", hosts=2)
def all_etcd_down_each_host_still_rolls_back(env: Env, fleet: Fleet) -> None:
    cluster = env.cluster("etcd_all_down")
    try:
        for h in fleet.hosts:
            h.endpoints = cluster.endpoints
            h.add_release("r1", **OK)
            h.add_release("r2", **BAD)
        fleet.each(lambda h: h.ready("r1"))
        cluster.stop_all()
        fleet.each(lambda h: h.deploy("r2"))
        for h in fleet.hosts:
            h.wait_event("rollback_verified", 120, release="r2")
            h.wait_event("fleet_blind", 60)
        owed = json.loads((fleet[0].state_dir / "fleet-outbox.json").read_text())
        assert [o["release"] for o in owed if o["kind"] == "verdict"] == ["r2"]
        cluster.start_all()
        for h in fleet.hosts:
            h.wait_event("fleet_recovered", 90)
        wait_for(lambda: "r2" in fleet_view(fleet[0]).verdicts, 60, what="the verdict written after etcd returned")
        assert fleet_view(fleet[0]).verdicts["r2"].verdict == "bad"
        for h in fleet.hosts:
            assert len(h.events("fleet_blind")) == 1 and len(h.events("fleet_recovered")) == 1
    finally:
        fleet.close()
        cluster.stop_all()


@scenario("watcher_killed", hosts=2)
def a_killed_watcher_leaves_the_fleet_with_its_lease(env: Env, fleet: Fleet) -> None:
    for h in fleet.hosts:
        h.add_release("r1", **OK)
    fleet.each(lambda h: h.ready("r1"))
    wait_for(lambda: len(fleet_view(fleet[1]).members) == 2, 30, what="both members")
    fleet[0].kill_watcher()
    killed = time.monotonic()
    wait_for(lambda: fleet[0].name not in fleet_view(fleet[1]).members, 30, what="the killed member to expire")
    assert time.monotonic() - killed >= 1  # by its lease, not by a goodbye
    out = fleet[1].cli("fleet", "status", "--json")
    assert list(json.loads(out.stdout)["hosts"]) == [fleet[1].name]


@scenario("two_detect_at_once", hosts=2)
def two_hosts_detecting_at_once(env: Env, fleet: Fleet) -> None:
    for h in fleet.hosts:
        h.add_release("r1", **OK)
        h.add_release("r2", **BAD)
    fleet.each(lambda h: h.ready("r1"))
    fleet.each(lambda h: h.deploy("r2"))
    for h in fleet.hosts:
        h.wait_event("rollback_verified", 120, release="r2")
    v = wait_for(lambda: fleet_view(fleet[0]).verdicts.get("r2"), 30, what="the verdict")
    assert v.host in (fleet[0].name, fleet[1].name)
    time.sleep(3)  # a late fleet trigger would show now
    for h in fleet.hosts:
        assert len(h.events("rollback_intent")) == 1, h.name
        wait_for(lambda h=h: h.sent("rollback_verified"), 30, what=f"{h.name}'s message")
        assert len(h.sent("rolling_back")) == 1 and len(h.sent("rollback_verified")) == 1, h.name


# ---------------------------------------------------------------------------------------------
# Running them at once


@pytest.fixture(scope="session")
def fleet_outcomes(request, etcd, prometheus_bin, tmp_path_factory) -> dict[str, Future]:
    selected = [name for name in SCENARIOS
                if any(item.name == f"test_scenario[{name}]" for item in request.session.items)]
    root = tmp_path_factory.mktemp("fleet-e2e")
    ports = PortPool(sum(SCENARIOS[n][0] for n in selected))
    receiver = NotificationReceiver(scheme="json")  # one endpoint every host's Apprise posts to
    prometheus = PrometheusServer(root / "prometheus", ports.targets, binary=prometheus_bin).start()
    env = Env(root, ports, prometheus, etcd.endpoints, receiver)
    fleets: list[Fleet] = []

    def run(name: str, env: Env) -> None:
        hosts, fn = SCENARIOS[name]
        fleet = env.fleet(name.replace("_", "-"), hosts)
        fleets.append(fleet)
        try:
            fn(env, fleet)
        except BaseException as exc:  # noqa: BLE001 - handed to the scenario's test
            raise AssertionError(f"{name}: {exc}\n{traceback.format_exc()}") from exc
        finally:
            fleet.close()

    runner = ScenarioRunner({name: functools.partial(run, name) for name in selected}, selected, env, TIMEOUT)
    try:
        yield runner.futures
    finally:
        runner.wait_all()
        for fleet in fleets:
            fleet.close()
        prometheus.stop()
        receiver.close()


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario(name, fleet_outcomes):
    fleet_outcomes[name].result(timeout=TIMEOUT)
