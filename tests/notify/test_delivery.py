"""Delivery through real Apprise to real HTTP receivers on 127.0.0.1."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from support import free_port
from watcher.core import messages as m
from watcher.core.envelope import Message, MessageContext, Severity
from watcher.core.rules import Finding
from watcher.notify.notifier import NTFY_PRIORITY_NUMBER, Notifier, NotifyTarget

CTX = MessageContext("shop-api", "web-1").at(1_714_533_250.0)
F_5XX = Finding("http-5xx-ratio", "rollback", "> 0.1", value=0.3021, unit="ratio",
                since=1_714_533_120.0)

# severity -> (X-Priority header or None when ntfy's default, number, X-Tags)
NTFY_EXPECTED = {
    Severity.INFO: ("low", 2, "information_source"),
    Severity.SUCCESS: (None, 3, "white_check_mark"),
    Severity.WARNING: ("high", 4, "warning"),
    Severity.FAILURE: ("high", 4, "x"),
    Severity.CRITICAL: ("max", 5, "rotating_light"),
}


def msg(severity=Severity.WARNING, kind="test", title="t", body="b", **kw) -> Message:
    return Message(kind, severity, title, body, **kw)


@pytest.mark.parametrize("severity", list(Severity), ids=lambda s: s.value)
def test_ntfy_gets_priority_and_tag_matching_the_severity(receiver, make_notifier, severity):
    notifier = make_notifier([NotifyTarget(receiver.ntfy_url("shop"))])
    notifier.send(msg(severity, title=f"title {severity.value}", body="body text"))
    assert notifier.flush(30)
    [request] = receiver.requests
    header, number, tag = NTFY_EXPECTED[severity]
    assert request.method == "POST" and request.path == "/"
    assert request.headers.get("x-priority") == header
    assert NTFY_PRIORITY_NUMBER[header or "default"] == number
    assert request.headers["x-tags"] == tag
    assert request.body == {"topic": "shop", "title": f"title {severity.value}",
                            "message": "body text"}


def test_ntfy_critical_is_sent_as_max_never_urgent(receiver, make_notifier):
    notifier = make_notifier([NotifyTarget(receiver.ntfy_url(query="priority=urgent"))])
    notifier.send(msg(Severity.CRITICAL))
    assert notifier.flush(30)
    assert receiver.requests[0].headers["x-priority"] == "max"


@pytest.mark.parametrize("given, sent", [("min", "min"), ("low", "low"), ("4", "high"), ("urgent", "max")])
def test_an_explicit_ntfy_priority_in_the_url_wins_over_the_severity(receiver, make_notifier, given, sent):
    notifier = make_notifier([NotifyTarget(receiver.ntfy_url("shop", query=f"priority={given}"))])
    notifier.send(msg(Severity.CRITICAL))
    notifier.send(msg(Severity.INFO))
    assert notifier.flush(30)
    assert [r.headers.get("x-priority") for r in receiver.requests] == [sent, sent]
    assert receiver.requests[0].headers["x-tags"] == "rotating_light"  # the severity still shows


def test_ntfy_url_tags_are_kept_and_the_severity_tag_appended(receiver, make_notifier):
    notifier = make_notifier([NotifyTarget(receiver.ntfy_url(query="tags=shop,prod"))])
    notifier.send(msg(Severity.FAILURE))
    assert notifier.flush(30)
    assert set(receiver.requests[0].headers["x-tags"].split(",")) == {"shop", "prod", "x"}


@pytest.mark.parametrize("severity,apprise_type", [
    (Severity.INFO, "info"), (Severity.SUCCESS, "success"), (Severity.WARNING, "warning"),
    (Severity.FAILURE, "failure"), (Severity.CRITICAL, "failure"),
], ids=lambda v: getattr(v, "value", v))
def test_json_target_gets_the_apprise_type_of_the_severity(receiver, make_notifier, severity,
                                                          apprise_type):
    notifier = make_notifier([NotifyTarget(receiver.json_url("hook"))])
    notifier.send(msg(severity, title="T", body="B"))
    assert notifier.flush(30)
    [request] = receiver.requests
    assert request.path == "/hook"
    assert request.body["type"] == apprise_type
    assert (request.body["title"], request.body["message"]) == ("T", "B")


@pytest.mark.parametrize("make_message", [
    lambda: m.rolling_back(CTX, "r42", "r41", [F_5XX]),
    lambda: m.rollback_verified(CTX, "r42", "r41", [F_5XX], 12.0),
    lambda: m.verify_failed(CTX, "r42", "r41", "health 503"),
    lambda: m.fired_outside_window(CTX, "r42", [F_5XX]),
], ids=["rolling_back", "rollback_verified", "verify_failed", "fired_outside_window"])
def test_event_title_and_body_arrive_whole_over_ntfy_and_json(receiver, make_notifier,
                                                             make_message):
    message = make_message()
    notifier = make_notifier([NotifyTarget(receiver.ntfy_url()), NotifyTarget(receiver.json_url())])
    notifier.send(message)
    assert notifier.flush(30)
    by_path = {r.path: r.body for r in receiver.requests}
    assert by_path["/"]["title"] == by_path["/hook"]["title"] == message.title
    assert by_path["/"]["message"] == by_path["/hook"]["message"] == message.body
    assert "r42" in message.body and "Next: rollback-watcher" in message.body


def test_two_ntfy_messages_in_a_row_arrive_without_apprises_5s_throttle(receiver, make_notifier):
    notifier = make_notifier([NotifyTarget(receiver.ntfy_url())])
    notifier.deliver_now(msg(title="warm-up"))  # the first use imports Apprise's plugins
    started = time.monotonic()
    notifier.send(m.rolling_back(CTX, "r42", "r41", [F_5XX]))
    notifier.send(m.rollback_verified(CTX, "r42", "r41", [F_5XX], 9.0))
    assert notifier.flush(30)
    elapsed = time.monotonic() - started
    print(f"two ntfy sends delivered in {elapsed * 1000:.0f} ms")
    assert receiver.wait_for(3)
    assert elapsed < 4.0  # Apprise's default ntfy throttle alone would take 5.5 s (~0.1 s idle)
    assert [r.body["title"] for r in receiver.requests[1:]] == [
        "[shop-api@web-1] rolling back r42 → r41", "[shop-api@web-1] rolled back r42 → r41 in 9s"]


def test_min_severity_failure_gets_failure_and_critical_only(receivers, make_notifier):
    loud, quiet = receivers(), receivers()
    notifier = make_notifier([NotifyTarget(loud.json_url(), Severity.INFO),
                              NotifyTarget(quiet.json_url(), Severity.FAILURE)])
    for severity in Severity:
        notifier.send(msg(severity, title=severity.value))
    assert notifier.flush(30)
    assert len(loud.requests) == 5
    assert sorted(r.body["title"] for r in quiet.requests) == ["critical", "failure"]


def test_routed_message_reaches_matching_and_catch_all_targets_not_other_teams(receivers,
                                                                              make_notifier):
    catch_all, db_team, web_team = receivers(), receivers(), receivers()
    notifier = make_notifier([NotifyTarget(catch_all.json_url()),
                              NotifyTarget(db_team.json_url(), tags=("db",)),
                              NotifyTarget(web_team.json_url(), tags=("web",))])
    notifier.send(msg(title="routed", route_tags=("db",)))
    notifier.send(msg(title="general"))
    assert notifier.flush(30)
    assert sorted(r.body["title"] for r in catch_all.requests) == ["general", "routed"]
    assert sorted(r.body["title"] for r in db_team.requests) == ["general", "routed"]
    assert [r.body["title"] for r in web_team.requests] == ["general"]


def test_every_message_the_service_sends_is_delivered_the_notifier_drops_no_repeat(receiver, make_notifier):
    """One authority decides what is news: the service (it sends on state changes). The notifier
    used to drop a second rollback_failed for the same release, and a cannot_act with a new
    reason, within an hour."""
    notifier = make_notifier([NotifyTarget(receiver.json_url())])
    notifier.send(m.rollback_failed(CTX, "r42", "r41", "restart exited 1"))
    notifier.send(m.rollback_failed(CTX, "r42", "r41", "restart exited 1"))  # tried again after `resolve`
    notifier.send(m.cannot_act(CTX, "r42", "cooldown", [F_5XX]))
    notifier.send(m.cannot_act(CTX, "r42", "the deploy lock is held", [F_5XX]))  # a new reason
    assert notifier.flush(30)
    titles = [r.body["title"] for r in receiver.requests]
    assert len(titles) == 4, titles


def test_sent_deliveries_are_journaled_with_the_redacted_target(receiver, make_notifier, journal):
    notifier = make_notifier([NotifyTarget(receiver.ntfy_url(query="token=tk_journalsecret"))])
    notifier.send(msg())
    assert notifier.flush(30)
    [event] = journal
    assert event["kind"] == "notify_sent"
    assert event["target"] == f"ntfy://127.0.0.1:{receiver.port}/alerts?token=***"
    assert receiver.requests[0].headers["authorization"] == "Bearer tk_journalsecret"


def test_closed_port_send_returns_at_once_is_journaled_and_later_redelivered(receivers,
                                                                            make_notifier,
                                                                            journal):
    port = free_port()
    notifier = make_notifier([NotifyTarget(f"ntfy://127.0.0.1:{port}/alerts?token=tk_downsecret")],
                             retries=2, backoff=1.0)
    message = m.rollback_failed(CTX, "r42", "r41", "backend refused")
    started = time.monotonic()
    notifier.send(message)
    # Delivering in the caller would take the two backoffs, 3 s; a loaded machine takes far less.
    assert time.monotonic() - started < 1.0
    assert notifier.flush(30)
    [failed] = journal
    assert failed["kind"] == "notify_failed"
    assert failed["target"] == f"ntfy://127.0.0.1:{port}/alerts?token=***"
    assert failed["attempts"] == 3 and failed["permanent"] is False
    assert "tk_downsecret" not in repr(journal)
    [pending] = notifier.undelivered()
    assert pending.message == message and pending.redeliveries == 0

    receiver = receivers(port=port)  # the endpoint comes back
    assert notifier.retry_undelivered() == 1
    assert notifier.flush(30)
    assert notifier.undelivered() == []
    assert journal[-1]["kind"] == "notify_retried" and journal[-1]["delivered"] is True
    [request] = receiver.requests
    assert request.body["title"] == message.title
    assert request.body["message"].startswith("(Late: first attempt failed at ")
    assert message.body in request.body["message"]


def test_hanging_endpoint_does_not_hold_the_caller_and_is_given_up_within_the_timeout(
        receivers, make_notifier, journal):
    hanging = receivers(mode="hang")
    notifier = make_notifier([NotifyTarget(hanging.ntfy_url())], timeout=0.5, retries=0)
    started = time.monotonic()
    notifier.send(m.rolling_back(CTX, "r42", "r41", [F_5XX]))
    notifier.send(m.verify_failed(CTX, "r42", "r41", "health 503"))
    send_s = time.monotonic() - started
    print(f"send() with a hanging endpoint: {send_s * 1000:.1f} ms for two messages")
    assert send_s < 0.5  # delivering in the caller would wait 0.5 s per message, 1 s for two
    assert notifier.flush(30)
    given_up_s = time.monotonic() - started
    assert given_up_s < 3.0  # two messages, 0.5 s each, plus Apprise's small grace
    assert [e["kind"] for e in journal] == ["notify_failed", "notify_failed"]
    assert "no answer within 0.5s" in journal[0]["reason"]

    hanging.set_mode("ok")
    assert notifier.retry_undelivered() == 2
    assert notifier.flush(30)
    assert notifier.undelivered() == []
    assert [e["kind"] for e in journal[2:]] == ["notify_retried", "notify_retried"]


def test_hanging_target_does_not_delay_another_target(receivers, make_notifier):
    hanging, healthy = receivers(mode="hang"), receivers()
    notifier = make_notifier([NotifyTarget(hanging.json_url()), NotifyTarget(healthy.json_url())],
                             timeout=2.0, retries=0)
    started = time.monotonic()
    notifier.send(msg(title="one"))
    assert healthy.wait_for(1, timeout=1.5)
    assert time.monotonic() - started < 1.5


def test_undelivered_is_dropped_after_the_bounded_redeliveries(make_notifier, journal):
    port = free_port()
    notifier = make_notifier([NotifyTarget(f"json://127.0.0.1:{port}/hook")], retries=0,
                             redeliveries=2)
    notifier.send(msg())
    assert notifier.flush(30)
    for _ in range(3):
        notifier.retry_undelivered()
        assert notifier.flush(30)
    assert notifier.undelivered() == []
    assert [e["kind"] for e in journal] == ["notify_failed", "notify_retried", "notify_retried",
                                            "notify_dropped"]
    assert "2 redeliveries failed" in journal[-1]["reason"]


def test_redelivery_waits_for_its_backoff(make_notifier):
    now = [0.0]
    notifier = make_notifier([NotifyTarget(f"json://127.0.0.1:{free_port()}/hook")], retries=0,
                             clock=lambda: now[0], redelivery_backoff=30)
    notifier.send(msg())
    assert notifier.flush(30)
    assert notifier.retry_undelivered() == 0  # too soon
    now[0] += 30
    assert notifier.retry_undelivered() == 1
    assert notifier.flush(30)
    now[0] += 59  # the next one waits 60 s after the last failure
    assert notifier.retry_undelivered() == 0
    now[0] += 1
    assert notifier.retry_undelivered() == 1


def test_client_error_is_permanent_not_retried_nor_kept(receivers, make_notifier, journal):
    refusing = receivers(mode=400)
    notifier = make_notifier([NotifyTarget(refusing.ntfy_url())], retries=3)
    notifier.send(msg())
    assert notifier.flush(30)
    assert len(refusing.requests) == 1
    [event] = journal
    assert event["kind"] == "notify_failed" and event["permanent"] is True
    assert notifier.undelivered() == []


def test_server_error_is_retried_with_backoff(receivers, make_notifier, journal):
    failing = receivers(mode=503)
    notifier = make_notifier([NotifyTarget(failing.json_url())], retries=2)
    notifier.send(msg())
    assert notifier.flush(30)
    assert len(failing.requests) == 3
    assert journal[0]["attempts"] == 3


def test_unknown_url_fails_permanently_with_a_redacted_reason(make_notifier, journal):
    notifier = make_notifier([NotifyTarget("nosuchservice://user:pw-secret1@host/x")])
    notifier.send(msg())
    assert notifier.flush(30)
    [event] = journal
    assert event["permanent"] is True
    assert "does not understand nosuchservice://user:***@host/x" in event["reason"]
    assert "pw-secret1" not in repr(event)


def test_apprise_config_file_target_delivers_to_each_url_in_it(receivers, make_notifier,
                                                               tmp_path):
    first, second = receivers(), receivers()
    path = tmp_path / "apprise.txt"
    path.write_text(f"{first.json_url()}\n{second.ntfy_url()}\n")
    notifier = make_notifier([NotifyTarget(str(path), Severity.WARNING)])
    notifier.send(msg(Severity.CRITICAL, title="both"))
    notifier.send(msg(Severity.INFO, title="neither"))
    assert notifier.flush(30)
    assert [r.body["title"] for r in first.requests] == ["both"]
    assert [r.headers["x-priority"] for r in second.requests] == ["max"]


def test_missing_config_file_is_journaled_as_a_permanent_failure(make_notifier, journal, tmp_path):
    notifier = make_notifier([NotifyTarget(str(tmp_path / "missing.yml"))])
    notifier.send(msg())
    assert notifier.flush(30)
    assert journal[0]["kind"] == "notify_failed" and journal[0]["permanent"] is True


def test_deliver_now_reports_per_target_and_keeps_nothing(receiver, make_notifier, journal):
    notifier = make_notifier([NotifyTarget(receiver.json_url()),
                              NotifyTarget(f"json://127.0.0.1:{free_port()}/x")], retries=0)
    results = notifier.deliver_now(msg())
    assert [r.delivered for r in results] == [True, False]
    assert results[1].reason and results[1].attempts == 1
    assert notifier.undelivered() == [] and journal == []


def test_a_failing_journal_never_reaches_the_caller(receiver, caplog):
    def broken_journal(kind, **fields):
        raise OSError("disk full")

    notifier = Notifier([NotifyTarget(receiver.json_url())], broken_journal, timeout=1)
    try:
        notifier.send(msg())
        assert notifier.flush(30)
        assert receiver.requests
    finally:
        notifier.close(1)
    assert "journal write failed event=notify_sent error=OSError" in caplog.text


def test_send_after_close_is_dropped_quietly(receiver, make_notifier):
    notifier = make_notifier([NotifyTarget(receiver.json_url())])
    notifier.close(1)
    notifier.send(msg())
    assert notifier.flush(1)
    assert receiver.requests == []


def test_importing_notify_and_messages_does_not_import_apprise():
    code = ("import sys, watcher.notify.notifier, watcher.core.messages; "
            "sys.exit(1 if 'apprise' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_send_does_not_import_apprise_on_the_callers_thread(receiver, make_notifier):
    # send() only queues: the import and the delivery happen on the target's worker thread. An
    # import hook records which thread imports apprise (a fact, not a timing).
    code = ("import sys, threading\n"
            "seen = []\n"
            "class Spy:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name == 'apprise': seen.append(threading.current_thread().name)\n"
            "        return None\n"
            "sys.meta_path.insert(0, Spy())\n"
            "from watcher.notify.notifier import Notifier, NotifyTarget\n"
            "from watcher.core.messages import Message, Severity\n"
            f"n = Notifier([NotifyTarget('{receiver.json_url()}')], lambda *a, **k: None)\n"
            "n.send(Message('k', Severity.INFO, 't', 'b'))\n"
            "ok = n.flush(60)\n"
            "print(seen)\n"
            "sys.exit(0 if ok and seen and 'MainThread' not in seen else 1)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert receiver.wait_for(1)


def test_undelivered_messages_survive_a_restart_through_the_journal(receivers, make_notifier,
                                                                    journal):
    port = free_port()
    target = NotifyTarget(f"ntfy://127.0.0.1:{port}/alerts?token=tk_restartsecret")
    before = make_notifier([target], retries=0)
    message = m.verify_failed(CTX, "r42", "r41", "health 503")
    before.send(message)
    assert before.flush(5)
    before.close(1)

    receiver = receivers(port=port)
    after = make_notifier([target])
    assert after.restore_undelivered(list(journal)) == 1
    [pending] = after.undelivered()
    assert pending.message.title == message.title and pending.message.severity is Severity.CRITICAL
    assert after.retry_undelivered() == 1
    assert after.flush(5)
    assert receiver.requests[0].headers["x-priority"] == "max"
    assert after.undelivered() == []


def test_undelivered_from_journal_lists_open_and_dropped_deliveries_per_target():
    from watcher.notify.notifier import undelivered_from_journal

    events = [
        {"kind": "notify_failed", "id": "a", "target": "t1", "reason": "down"},
        {"kind": "notify_failed", "id": "a", "target": "t2", "reason": "down"},
        {"kind": "notify_retried", "id": "a", "target": "t1", "delivered": True},
        {"kind": "notify_failed", "id": "b", "target": "t1", "reason": "down"},
        {"kind": "notify_dropped", "id": "b", "target": "t1", "reason": "5 redeliveries failed"},
        {"kind": "notify_failed", "id": "c", "target": "t1", "reason": "400", "permanent": True},
    ]
    open_ = undelivered_from_journal(events)
    assert [(e["id"], e["target"], e["state"]) for e in open_] == [
        ("a", "t2", "retrying"), ("b", "t1", "dropped"), ("c", "t1", "dropped")]
