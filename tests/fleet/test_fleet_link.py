"""The fleet edge (watcher/fleet/link.py) against a real 3-member etcd cluster."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time

from support import wait_for
from watcher.core.fleetmodel import BAD, GOOD, FleetVerdict, Keys, Member
from watcher.fleet.etcd import EtcdGateway
from watcher.fleet.link import OUTBOX, FleetLink


def bad(release: str, host: str, rule: str = "http-5xx-ratio") -> FleetVerdict:
    return FleetVerdict(release, BAD, host, time.time(), rule, 0.3, f"{rule} fired on {host}")


def joined(link, *hosts):
    return wait_for(lambda: set(hosts) <= set(link.view().members), 20, what=f"members {hosts}")


def learned(link, release: str, timeout: float = 20.0):
    got = []

    def check():
        got.extend(link.take_verdicts())
        return [v for v, _ in got if v.release == release]

    return wait_for(check, timeout, what=f"a verdict for {release}")


def test_two_hosts_writing_a_verdict_at_once_leave_exactly_one(link, fleet_config):
    a, b = link("web-a"), link("web-b")
    joined(a, "web-a", "web-b")
    barrier = threading.Barrier(2)

    def publish(link, host):
        barrier.wait()
        link.publish_verdict(bad("r2", host))

    threads = [threading.Thread(target=publish, args=(link, h)) for link, h in ((a, "web-a"), (b, "web-b"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    gateway = EtcdGateway(fleet_config("probe"))
    key = Keys(fleet_config("probe").root).verdict("r2")
    stored = wait_for(lambda: gateway.get(key), 20, what="the verdict in etcd")
    winner = FleetVerdict.decode("r2", stored)
    assert winner.verdict == BAD and winner.host in ("web-a", "web-b")
    # Both end with the stored verdict in their cache, whoever wrote first.
    wait_for(lambda: a.view().verdicts["r2"] == winner == b.view().verdicts["r2"], 20, what="the same verdict on both")
    assert gateway.create(key, bad("r2", "web-c").encode()) is False


def test_a_verdict_reaches_the_other_host_by_watch(link):
    a, b = link("web-a", lease=15.0), link("web-b", lease=15.0)
    joined(b, "web-a", "web-b")
    requests_before = b.counters.requests
    a.publish_verdict(bad("r2", "web-a"))
    (v,) = learned(b, "r2")
    assert v.host == "web-a" and v.rule == "http-5xx-ratio" and v.value == 0.3
    # Delivered by the open watch: b made no request of its own to learn it (its lease beat is
    # every 5 s; a read of the prefix would be a request too).
    assert b.counters.requests - requests_before <= 2
    assert b.counters.propagation and b.counters.propagation[-1] >= 0


def test_known_good_fleet_wide_after_k_hosts_survived(link):
    a, b = link("web-a", known_good_hosts=2), link("web-b", known_good_hosts=2)
    joined(a, "web-a", "web-b")
    a.publish_survived("r2", time.time())
    wait_for(lambda: "web-a" in b.view().survived.get("r2", ()), 20, what="web-a's survived mark")
    assert "r2" not in b.view().verdicts  # one host is not enough
    b.publish_survived("r2", time.time())
    (v,) = learned(a, "r2")
    assert v.verdict == GOOD and "2 host(s)" in v.reason
    # A later rollback of r2 replaces good with bad: the gate must refuse it from then on.
    a.publish_verdict(bad("r2", "web-a"))
    wait_for(lambda: b.view().verdicts["r2"].verdict == BAD, 20, what="bad replacing good")


def test_membership_of_a_killed_watcher_expires_with_its_lease(link, fleet_config, tmp_path):
    observer = link("web-obs")
    cfg = fleet_config("web-dead", lease=2.0)
    script = textwrap.dedent(f"""
        import time
        from pathlib import Path
        from watcher.config.schema import FleetConfig
        from watcher.fleet.link import FleetLink
        from watcher.core.fleetmodel import Member
        link = FleetLink(FleetConfig({cfg.endpoints!r}, {cfg.name!r}, "web-dead", lease=2.0, timeout=1.0),
                         Path({str(tmp_path / "dead")!r})).start()
        link.report(Member("web-dead", "r2", tick_at=time.time()))
        time.sleep(600)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        wait_for(lambda: observer.view().members.get("web-dead", Member("x", None)).release == "r2", 30,
                 what="web-dead's membership")
        proc.kill()  # no revoke, no goodbye: only the lease can end it
        proc.wait()
        killed_at = time.monotonic()
        wait_for(lambda: "web-dead" not in observer.view().members, 30, what="the lease to expire")
        assert time.monotonic() - killed_at >= 1.0  # it went with the lease, not before
    finally:
        proc.kill()
        proc.wait()


def test_one_etcd_member_killed_changes_nothing(etcd_cluster, link):
    cluster = etcd_cluster()
    a, b = link("web-a", endpoints=cluster.endpoints), link("web-b", endpoints=cluster.endpoints)
    joined(a, "web-a", "web-b")
    # Kill the member both are talking to, so that failover is exercised.
    active = cluster.endpoints.index(a.gateway.endpoint)
    cluster.kill(active)
    a.publish_verdict(bad("r3", "web-a"))
    (v,) = learned(b, "r3", timeout=30)
    assert v.host == "web-a"
    a.report(Member("web-a", "r3", tick_at=time.time()))
    wait_for(lambda: b.view().members["web-a"].release == "r3", 30, what="membership update after the kill")
    assert a.take_notices() == [] and b.take_notices() == []
    assert not a.blind and not b.blind


def test_all_etcd_down_blind_once_outbox_kept_across_a_restart_and_flushed(etcd_cluster, link, tmp_path):
    cluster = etcd_cluster()
    state = tmp_path / "state-web-a"
    a = link("web-a", state_dir=state, endpoints=cluster.endpoints, lease=2.0)
    b = link("web-b", endpoints=cluster.endpoints, lease=2.0)
    joined(b, "web-a", "web-b")
    cluster.stop_all()
    wait_for(lambda: a.blind, 30, what="web-a blind")
    time.sleep(3)  # several failed beats: still one notice
    notices = a.take_notices()
    assert [n.kind for n in notices] == ["blind"]
    assert "no etcd endpoint answered" in notices[0].detail

    # A rollback while etcd is down: owed, on disk; then the watcher restarts.
    a.publish_verdict(bad("r4", "web-a"))
    a.stop()
    owed = json.loads((state / OUTBOX).read_text())
    assert [o["kind"] for o in owed] == ["verdict"] and owed[0]["release"] == "r4"
    a2 = FleetLink(a.config, state).start()
    try:
        wait_for(lambda: a2.blind, 30, what="the restarted web-a blind")
        cluster.start_all()
        (v,) = learned(b, "r4", timeout=60)
        assert v.host == "web-a"
        wait_for(lambda: json.loads((state / OUTBOX).read_text()) == [], 30, what="the outbox emptied")
        kinds = [n.kind for n in a2.take_notices()] + [n.kind for n in a2.take_notices()]
        assert kinds == ["blind", "recovered"]
        wait_for(lambda: "recovered" in [n.kind for n in b.take_notices()], 30, what="web-b recovered")
        assert b.take_notices() == []  # once
    finally:
        a2.stop()


def enable_auth(endpoint: str, password: str) -> None:
    """etcd's own auth, through its JSON gateway: a root user with the root role, then on."""
    import httpx

    for path, body in (("/v3/auth/user/add", {"name": "root", "password": password}),
                       ("/v3/auth/role/add", {"name": "root"}),
                       ("/v3/auth/user/grant", {"user": "root", "role": "root"}),
                       ("/v3/auth/enable", {})):
        r = httpx.post(endpoint + path, json=body, timeout=5, trust_env=False)
        assert r.status_code == 200, (path, r.text)


def test_etcd_with_auth_username_password_and_watch(etcd_cluster, link):
    cluster = etcd_cluster(members=1)
    enable_auth(cluster.endpoints[0], "s3cret-etcd-pw")
    auth = dict(endpoints=cluster.endpoints, username="root", password="s3cret-etcd-pw")
    a, b = link("web-a", **auth), link("web-b", **auth)
    joined(b, "web-a", "web-b")
    a.publish_verdict(bad("r8", "web-a"))
    (v,) = learned(b, "r8")  # the watch carries the token too
    assert v.host == "web-a"

    wrong = link("web-x", endpoints=cluster.endpoints, username="root", password="wrong-pw-123", lease=2.0)
    wait_for(lambda: wrong.blind, 30, what="blind with a wrong password")
    (notice,) = wrong.take_notices()
    assert "wrong-pw-123" not in notice.detail and "s3cret-etcd-pw" not in notice.detail
    assert "web-x" not in a.view().members


def test_etcd_over_tls_with_a_client_certificate(tmp_path, fleet_name):
    from support.etcd import EtcdCluster
    from watcher.config.schema import FleetConfig

    cluster = EtcdCluster(tmp_path / "etcd-tls", members=1, tls=True)
    links = []
    try:
        cluster.start_all()
        tls = cluster.tls
        assert cluster.endpoints[0].startswith("https://")

        def start(host):
            cfg = FleetConfig(tuple(cluster.endpoints), fleet_name, host, lease=3.0, timeout=2.0, ca=tls.ca,
                              cert=tls.client_cert, key=tls.client_key)
            links.append(FleetLink(cfg, tmp_path / host).start())
            return links[-1]

        a, b = start("web-a"), start("web-b")
        joined(b, "web-a", "web-b")
        a.publish_verdict(bad("r9", "web-a"))
        (v,) = learned(b, "r9")  # the watch, through httpx, with the same certificates
        assert v.host == "web-a"
        # Without the client certificate etcd refuses: blind, not a crash.
        nocert = FleetConfig(tuple(cluster.endpoints), fleet_name, "web-x", lease=2.0, timeout=2.0, ca=tls.ca)
        links.append(FleetLink(nocert, tmp_path / "web-x").start())
        wait_for(lambda: links[-1].blind, 30, what="blind without a client certificate")
    finally:
        for link in links:
            link.stop()
        cluster.stop_all()
