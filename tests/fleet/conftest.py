"""Fixtures for the fleet tests: a real 3-member etcd cluster (tests/support/etcd.py).

    etcd          session: one shared cluster; each test uses its own fleet name (`fleet_name`),
                  so tests never see each other's keys. Never kill its members.
    etcd_cluster  factory: a cluster of its own, for tests that kill members or stop them all;
                  stopped after the test (SIGTERM, then SIGKILL).
    fleet_config  fleet_config(host, endpoints=None, **overrides) -> FleetConfig on `etcd`.
    link          link(host, **overrides) -> a started FleetLink with its own state dir;
                  stopped after the test.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from support.etcd import EtcdCluster, etcd_binary
from watcher.config.schema import FleetConfig
from watcher.demo.rig import SandboxError


@pytest.fixture(scope="session")
def etcd(tmp_path_factory):
    try:
        etcd_binary()
    except SandboxError as exc:
        pytest.fail(str(exc), pytrace=False)  # never a skip: a machine without etcd tests nothing
    cluster = EtcdCluster(tmp_path_factory.mktemp("etcd"))
    try:
        yield cluster.start_all()
    finally:
        cluster.stop_all()


@pytest.fixture
def etcd_cluster(tmp_path):
    started = []

    def start(members: int = 3) -> EtcdCluster:
        cluster = EtcdCluster(tmp_path / f"etcd-{len(started)}", members)
        started.append(cluster)
        return cluster.start_all()

    yield start
    for cluster in started:
        cluster.stop_all()


@pytest.fixture
def fleet_name() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def fleet_config(etcd, fleet_name):
    def make(host: str, endpoints=None, **overrides) -> FleetConfig:
        base = dict(endpoints=tuple(endpoints or etcd.endpoints), name=fleet_name, host=host, lease=3.0,
                    timeout=1.0)
        base.update(overrides)
        return FleetConfig(**base)

    return make


@pytest.fixture
def link(fleet_config, tmp_path):
    from watcher.fleet.link import FleetLink

    started = []

    def start(host: str, state_dir: Path | None = None, **overrides) -> FleetLink:
        cfg = fleet_config(host, **overrides)
        link = FleetLink(cfg, state_dir or tmp_path / f"state-{host}")
        started.append(link)
        return link.start()

    yield start
    for link in started:
        link.stop()
