"""The deploy message (`deploy_seen`) names the release a rollback would go to, as the decider
would choose it at that moment, or says why there is none: on-call reads at the deploy what the
watcher will do if it fires."""

from __future__ import annotations

from support.ticking import Clock, make


class Outbox(list):
    """What the service sends (tick.Notifier), kept: the message text is the point here."""

    def send(self, message):
        self.append(message)

    def restore_undelivered(self, events):
        return 0

    def retry_undelivered(self):
        return 0


def test_the_deploy_message_names_the_release_a_rollback_would_go_to(symlink_host):
    """A real symlink host: r1 known-good, r2 deployed; then r2 marked a barrier (a destructive
    migration) and r3 deployed: no rollback may cross r2, and the message says so."""
    host = symlink_host
    for rid in ("r1", "r2", "r3"):
        host.add_release(rid)
    host.deploy("r1")
    clock = Clock()
    w = make(host, clock)
    w.notifier = sent = Outbox()
    w.apply_request("mark", {"release": "r1", "mark": "good", "by": "test"}, clock())
    host.deploy("r2")
    w.tick()
    seen = [msg for msg in sent if msg.kind == "deploy_seen"]
    assert "rolls back to r1, the newest known-good release before it" in seen[-1].body
    w.apply_request("mark", {"release": "r2", "mark": "barrier", "by": "test"}, clock())
    clock.advance(1)
    host.deploy("r3")
    w.tick()
    seen = [msg for msg in sent if msg.kind == "deploy_seen"]
    assert "No rollback target: r2 is a barrier (not reversible) between r3 and any known-good release." \
        in seen[-1].body, seen[-1].body
    assert "calls a human" in seen[-1].body
