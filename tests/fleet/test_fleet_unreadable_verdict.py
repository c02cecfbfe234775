"""A verdict key whose stored value cannot be read (damaged, or written by another version),
against a real etcd: the link replaces it and keeps working."""

from __future__ import annotations

import time

from support import wait_for
from watcher.core.fleetmodel import BAD, FleetVerdict, Keys
from watcher.fleet.etcd import EtcdGateway


def bad(release: str, host: str) -> FleetVerdict:
    return FleetVerdict(release, BAD, host, time.time(), "http-5xx-ratio", 0.3, f"fired on {host}")


def test_an_unreadable_stored_verdict_is_replaced_and_the_link_keeps_syncing(link, fleet_config):
    gateway = EtcdGateway(fleet_config("probe"))
    keys = Keys(fleet_config("probe").root)
    gateway.put(keys.verdict("r2"), "not a verdict")
    a = link("web-a")
    a.publish_verdict(bad("r2", "web-a"))
    stored = wait_for(lambda: FleetVerdict.decode("r2", gateway.get(keys.verdict("r2")) or b""), 20,
                      what="the unreadable verdict replaced")
    assert stored.host == "web-a"
    # The sync thread outlived the replacement (it logged the old value as "unreadable"): a
    # later verdict is written as well.
    a.publish_verdict(bad("r3", "web-a"))
    wait_for(lambda: gateway.get(keys.verdict("r3")), 20, what="the next verdict in etcd")
