"""The fleet in one watcher's tick, in-process with a fake clock (tests/support/ticking.py),
its FleetLink on the real etcd: what a verdict from another host does here."""

from __future__ import annotations

import json

import pytest

from support import wait_for
from support.ticking import PROBE_RULE, Clock, held_deploy_lock, ticks
from watcher.config.load import load_config
from watcher.core.fleetmodel import BAD, FleetVerdict
from watcher.service.build import build_watcher


@pytest.fixture
def fleet_watcher(symlink_host, etcd, fleet_name):
    started = []

    def make(clock, **extra):
        cfg = load_config(symlink_host.write_config(
            PROBE_RULE, watch_window="10m", **extra,
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


def test_a_host_under_the_deploy_lock_witnesses_nothing(symlink_host, fleet_watcher, link, tmp_path):
    """A deploy's restart fails the health probe under the lock, while `current` may still name
    the known-good release it replaces: peers must not count that as an outage on a known-good
    release (it excused a crashing release elsewhere as a fleet-wide symptom, sim seed
    4000618). Under the lock the membership names no breach and every rollback rule unseen;
    once the lock is let go, breaches are reported again."""
    host = symlink_host
    host.add_release("r1")
    host.deploy("r1")
    clock = Clock()
    lock = tmp_path / "deploy.lock"
    w = fleet_watcher(clock, deploy_lock=str(lock))
    w.apply_request("mark", {"release": "r1", "mark": "good"}, clock())
    ticks(w, clock, 1)
    peer = link("web-a")

    def membership(what, ok):
        def seen():
            m = peer.view().members.get("web-b")
            return m if m is not None and ok(m) else None
        return wait_for(seen, 20, what=what)

    with held_deploy_lock(lock):
        (host.releases / "r1" / "health_status").write_text("503")  # the restart's closed port
        ticks(w, clock, 1)
        m = membership("health unseen", lambda m: "health" in m.unseen)
        assert m.release == "r1" and m.known_good and m.firing == {}
    ticks(w, clock, 3)  # let go, r1 still failing: its own breach this time
    m = membership("health breaching", lambda m: "health" in m.firing)
    assert "health" not in m.unseen


URGENT = "**URGENT** [login here](http://evil.example/phish)"


def test_markup_in_a_verdict_from_etcd_reaches_chat_as_plain_text(symlink_host, etcd, fleet_name, link):
    """Anyone who can write to etcd stored a bad verdict for the current release whose rule,
    reason and host carry markdown, HTML and mentions. The rollback it triggers is told through
    the real Apprise to a markdown target and an ntfy one: the words arrive as the characters
    they are (escaped for markdown, no masked link, no mention, capped), never as markup."""
    from support import NotificationReceiver
    from watcher.core.fleetmodel import Keys

    host = symlink_host
    host.add_release("r1")
    host.add_release("r2")
    host.deploy("r1")
    markdown, plain = NotificationReceiver("json"), NotificationReceiver("ntfy")
    try:
        cfg = load_config(symlink_host.write_config(
            PROBE_RULE, watch_window="10m",
            notify=[{"url": markdown.url + "?format=markdown"}, {"url": plain.url}],
            fleet={"etcd": etcd.endpoints, "name": fleet_name, "host": "web-b", "lease": "3s", "timeout": "1s"}),
            environ={})
        clock = Clock()
        w = build_watcher(cfg, clock=clock, fleet=True)
        w.sleep = lambda s: None
        w.fleet.start()
        try:
            w.start()
            w.apply_request("mark", {"release": "r1", "mark": "good"}, clock())
            ticks(w, clock, 1)
            host.deploy("r2")
            ticks(w, clock, 2)
            # Written as anyone with write access to etcd would: straight into the key.
            verdict = {"verdict": "bad", "host": "web-a @here", "at": clock(), "rule": URGENT, "value": 0.42,
                       "unit": "%", "reason": "<script>alert(1)</script> @channel <!channel>" + " x" * 400}
            link("web-a").gateway.put(Keys(cfg.fleet.root).verdict("r2"), json.dumps(verdict))
            wait_for(lambda: "r2" in w.fleet.view.verdicts, 20, what="the verdict for r2")
            reports = ticks(w, clock, 2)
            assert reports[0].acted == "rolled_back" and host.current_id() == "r1"
            wait_for(lambda: len(markdown.received()) >= 3 and len(plain.received()) >= 3, 30,
                     what="the rollback's messages")
        finally:
            w.fleet.stop()
            w.notifier.close(5)
        told = [m for m in markdown.received() if m.get("event") == "rolling_back"]
        assert told, [m.get("event") for m in markdown.received()]
        text = told[0]["message"]
        assert "\\*\\*URGENT\\*\\* \\[login here\\] \\(http://evil\\.example/phish\\)" in text  # CommonMark escapes
        assert "](" not in text and "<script>" not in text
        assert "@\u200bchannel" in text and "@\u200bhere" in text and "<!channel>" not in text
        assert told[0]["rule"] == "fleet:**URGENT** [login here] (http://evil.example/phish)"  # the payload's data
        ntfy = next(m for m in plain.received() if "rolling back" in m.get("title", ""))["message"]
        assert "[login here] (http://evil.example/phish)" in ntfy  # plain text: as written, no masked link
        assert "@channel" not in ntfy and "@here" not in ntfy
        assert " x" * 150 not in ntfy  # the reason capped (fleetmodel.REASON_MAX), not 800 characters of it
    finally:
        markdown.close()
        plain.close()
