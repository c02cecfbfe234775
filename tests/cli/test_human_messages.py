"""What people are told when a human acts through the CLI: who did what (pause, resume,
resolve, mark), and a manual rollback that says what its target is and why it was asked for."""

from __future__ import annotations

import getpass
import os
import re

import pytest

from support import run_cli, wait_for
from watcher.core import envelope
from watcher.core import messages as m
from watcher.core.envelope import MessageContext

RULES = "rules:\n  - name: health\n    http: HEALTH_URL\n    failures: 3\n    action: rollback\n"
CTX = MessageContext("shop-api", "web-1").at(1_714_533_250.0)
ME = os.environ.get("SUDO_USER") or getpass.getuser()


@pytest.fixture
def host(symlink_host):
    for rid in ("r1", "r2", "r3"):
        symlink_host.add_release(rid)
    symlink_host.deploy("r3")
    return symlink_host


def titles(receiver, count):
    wait_for(lambda: len(receiver.bodies) >= count, 20, what=f"{count} message(s)")
    return [b["title"] for b in receiver.bodies]


def test_pause_resume_and_mark_tell_people_who_did_what(host, json_receiver):
    config = host.write_config(RULES, notify=[{"url": json_receiver.url}])
    paused = run_cli("pause", "--for", "1h", "--config", config)
    assert paused.returncode == 0, paused.stderr
    # a time people read, not an epoch
    assert re.search(r"paused until \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", paused.stdout), paused.stdout
    run_cli("resume", "--config", config, check=True)
    run_cli("mark", "good", "r1", "--config", config, check=True)
    found = titles(json_receiver, 3)
    assert any("paused until" in t and f"by {ME}" in t for t in found), found
    assert any(t.endswith(f"resumed by {ME}") for t in found), found
    assert any(f"r1 marked good by {ME}" in t for t in found), found
    assert any(e["kind"] == "pause" and e["by"] == ME for e in host.journal())


def test_manual_rollback_to_a_release_not_known_good_says_so_and_carries_the_reason(host, json_receiver):
    config = host.write_config(RULES, notify=[{"url": json_receiver.url}])
    done = run_cli("rollback", "--to", "r1", "--yes", "--reason", "bad migration in r3", "--config", config)
    assert done.returncode == 0, done.stdout + done.stderr
    wait_for(lambda: any("rolling back" in b["title"] for b in json_receiver.bodies), 20, what="rolling_back")
    [rolling] = [b for b in json_receiver.bodies if "rolling back" in b["title"]]
    assert "by hand" in rolling["title"]
    assert "bad migration in r3" in rolling["message"]
    assert "not marked known-good" in rolling["message"]
    assert "newest known-good" not in rolling["message"]
    assert "no rule named" not in rolling["message"]


def test_cannot_act_names_the_candidate_release_in_its_next_command():
    message = m.cannot_act(CTX, "r42", "cooldown: rolled back 5m ago", [], candidate="r41")
    assert "rollback-watcher rollback --to r41" in message.body
    assert "--to ID" not in message.body


def test_first_start_without_a_known_good_release_promises_no_rollback():
    message = m.deploy_seen(CTX, "r1", 1800, None, "no release is known-good yet")
    assert "rolls back to" not in message.body
    assert "No rollback target: no release is known-good yet. A firing rollback rule in that window calls a human" \
        in message.body
    assert envelope.payload(message)["target"] is None


def test_deploy_seen_names_the_release_a_rollback_would_go_to():
    message = m.deploy_seen(CTX, "r2", 1800, "r1")
    assert "rolls back to r1, the newest known-good release before it" in message.body
    assert envelope.payload(message)["target"] == "r1"


def test_json_webhook_gets_the_event_as_versioned_data(host, json_receiver):
    """A real loopback receiver behind a json:// target: Apprise's title/message/type, and the
    event's facts in the documented shape (envelope.payload, schema rollback-watcher/1)."""
    config = host.write_config(RULES, notify=[{"url": json_receiver.url + "?:team=web"}])
    done = run_cli("rollback", "--to", "r1", "--yes", "--reason", "bad migration in r3", "--config", config)
    assert done.returncode == 0, done.stdout + done.stderr
    wait_for(lambda: any(b.get("event") == "rollback_verified" for b in json_receiver.bodies), 30,
             what="rollback_verified")
    rolling = next(b for b in json_receiver.bodies if b.get("event") == "rolling_back")
    assert set(envelope.PAYLOAD_KEYS) <= set(rolling)
    assert rolling["schema"] == "rollback-watcher/1"
    assert {k: rolling[k] for k in ("service", "host", "release", "target", "action", "severity")} == {
        "service": "sandbox", "host": "testhost", "release": "r3", "target": "r1", "action": "rollback",
        "severity": "warning"}
    assert rolling["next"].startswith("rollback-watcher status")
    assert rolling["title"].startswith("[sandbox@testhost]") and rolling["type"] == "warning"
    assert rolling["team"] == "web"  # the URL's own :key extras are kept
    verified = next(b for b in json_receiver.bodies if b.get("event") == "rollback_verified")
    assert verified["action"] == "rolled_back" and verified["target"] == "r1"
