"""Secrets in notify URLs never reach redacted forms, journal, logs, exceptions or CLI output."""

from __future__ import annotations

import io
import logging

import pytest

from support import free_port
from watcher.actions.notifytest import notify_test_command
from watcher.core.envelope import Message, MessageContext, Severity
from watcher.notify.notifier import (
    NotifyTarget,
    check_targets,
    redact_text,
    redact_url,
    url_secrets,
)

SLACK_BOT = "xoxb-1234-5678-4ddbc191d40ee098cbaae6f3523ada2d"

# url, secrets it holds, what its redacted form still shows
URLS = [
    ("ntfys://alice:s3cret-pw@ntfy.example.com/shop-api", ["s3cret-pw"],
     "ntfys://alice:***@ntfy.example.com/shop-api"),
    ("ntfy://ntfy.example.com/shop-api?token=tk_secret0123", ["tk_secret0123"],
     "ntfy://ntfy.example.com/shop-api?token=***"),
    ("ntfy://tk_usertoken4567@ntfy.example.com/shop-api", ["tk_usertoken4567"],
     "ntfy://***@ntfy.example.com/shop-api"),
    ("json://hooks.example.com/in?+X-Api-Key=hdrsecret99&:apikey=bodysecret7",
     ["hdrsecret99", "bodysecret7"], "json://hooks.example.com/in?+X-Api-Key=***&:apikey=***"),
    ("slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/#ops",
     ["T1JJ3T3L2", "A1BRTD4JD", "TIiajkdnlazkcOXrIdevi7FQ"], "slack://***/***/***/#ops"),
    ("https://hooks.slack.com/services/T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ",
     ["T1JJ3T3L2", "A1BRTD4JD", "TIiajkdnlazkcOXrIdevi7FQ"],
     "https://hooks.slack.com/services/***/***/***"),
    (f"slack://{SLACK_BOT}/#general", [SLACK_BOT], "slack://***/#general"),
    ("nosuchservice://bob:pw-unparsed1@host/abcdef123456?password=qwerty99",
     ["pw-unparsed1", "abcdef123456", "qwerty99"], "nosuchservice://bob:***@host/***?password=***"),
]


@pytest.mark.parametrize("url,secrets,shown", URLS, ids=[u[0].split(":")[0] + str(i)
                                                         for i, u in enumerate(URLS)])
def test_redacted_url_masks_every_secret_and_keeps_the_rest(url, secrets, shown):
    redacted = redact_url(url)
    assert redacted == shown
    for secret in secrets:
        assert secret not in redacted
        assert secret in url_secrets(url)


def test_mode_values_and_plain_words_are_not_treated_as_secrets():
    secrets = url_secrets("ntfy://ntfy.example.com/topic?auth=token&priority=max")
    assert secrets == frozenset()
    assert redact_url("ntfy://ntfy.example.com/topic?auth=token") == \
        "ntfy://ntfy.example.com/topic?auth=token"


def test_config_file_path_is_shown_as_is():
    assert redact_url("/etc/rollback-watcher/apprise.yml") == "/etc/rollback-watcher/apprise.yml"
    assert url_secrets("/etc/rollback-watcher/apprise.yml") == frozenset()


def test_redact_text_masks_raw_and_url_encoded_secrets():
    text = "failed for pa ss/word and pa%20ss%2Fword and pa+ss%2Fword"
    assert redact_text(text, ["pa ss/word"]) == "failed for *** and *** and ***"


def test_redact_text_ignores_secrets_too_short_to_mask_safely():
    assert redact_text("a b c", ["b"]) == "a b c"


def secret_run_targets(receiver, down_port):
    """Targets holding every kind of secret: two reachable, two down."""
    return [
        NotifyTarget(receiver.ntfy_url(query="token=tk_ntfysecret1")),
        NotifyTarget(receiver.json_url(query="+X-Api-Key=hdrsecret22")),
        NotifyTarget(f"ntfy://alice:s3cret-pw33@127.0.0.1:{down_port}/topic"),
        NotifyTarget(f"json://127.0.0.1:{down_port}/hook?+Authorization=Bearer%20hdrsecret44"),
    ]


SECRETS = ["tk_ntfysecret1", "hdrsecret22", "s3cret-pw33", "hdrsecret44"]


def assert_clean(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret} leaked into {where}"


def test_a_run_with_token_bearing_urls_leaks_no_secret_anywhere(receiver, make_notifier,
                                                               journal, caplog):
    caplog.set_level(logging.DEBUG)  # Apprise's own DEBUG lines print headers
    targets = secret_run_targets(receiver, free_port())
    notifier = make_notifier(targets, retries=1)
    notifier.send(Message("test", Severity.CRITICAL, "title", "body"))
    assert notifier.flush(10)
    notifier.retry_undelivered()
    assert notifier.flush(10)
    results = notifier.deliver_now(Message("test", Severity.INFO, "t", "b"))
    notifier.close(1)

    # the secrets did work: the reachable receiver got them
    # (the two reachable targets are delivered to concurrently: either request may come first)
    assert any(r.headers.get("authorization") == "Bearer tk_ntfysecret1" for r in receiver.requests)
    assert any(r.headers.get("x-api-key") == "hdrsecret22" for r in receiver.requests)
    assert {e["kind"] for e in journal} >= {"notify_sent", "notify_failed", "notify_retried"}
    assert_clean(repr(journal), "the journal")
    assert_clean(caplog.text, "the logs")
    assert_clean(repr(results), "delivery results")
    assert_clean(repr(notifier.undelivered()), "undelivered")
    assert any("notify failed" in r.getMessage() for r in caplog.records)
    assert set(SECRETS) <= notifier.secrets()


def test_notify_test_output_shows_redacted_targets_and_fails_if_one_is_down(receiver, caplog):
    caplog.set_level(logging.DEBUG)
    out = io.StringIO()
    code = notify_test_command(secret_run_targets(receiver, free_port()), "warning", out,
                               ctx=MessageContext("shop-api", "web-1"), timeout=1, retries=0)
    text = out.getvalue()
    assert code == 1
    assert_clean(text, "notify-test output")
    assert_clean(caplog.text, "notify-test logs")
    lines = text.splitlines()
    assert lines[0].startswith(f"delivered  ntfy://127.0.0.1:{receiver.port}/alerts?token=***")
    assert lines[1].startswith(f"delivered  json://127.0.0.1:{receiver.port}/hook?+X-Api-Key=***")
    assert lines[2].startswith("FAILED     ntfy://alice:***@127.0.0.1:")
    assert lines[3].startswith("FAILED     json://127.0.0.1:")
    assert "+Authorization=***" in lines[3]
    assert lines[-1] == "2 of 4 delivered"


def test_notify_test_returns_0_when_every_target_got_it_and_notes_filters(receiver):
    out = io.StringIO()
    targets = [NotifyTarget(receiver.ntfy_url()),
               NotifyTarget(receiver.json_url(), min_severity=Severity.FAILURE)]
    code = notify_test_command(targets, "info", out, ctx=MessageContext("shop-api", "web-1"))
    assert code == 0
    assert "its min_severity failure filters info" in out.getvalue()
    assert receiver.wait_for(2)
    titles = {r.body["title"] for r in receiver.requests}
    assert titles == {"[shop-api@web-1] test notification (info)"}
    ntfy = next(r for r in receiver.requests if r.path == "/")
    assert ntfy.headers["x-priority"] == "low"


def test_notify_test_without_targets_says_so_and_fails():
    out = io.StringIO()
    assert notify_test_command([], "info", out) == 1
    assert "no notify targets" in out.getvalue()


def test_check_targets_names_bad_urls_redacted(tmp_path):
    problems = check_targets([
        NotifyTarget("ntfy://ntfy.example.com/ok"),
        NotifyTarget("nosuchservice://bob:pw-check55@host/x"),
        NotifyTarget(str(tmp_path / "missing.yml")),
    ])
    assert len(problems) == 2
    assert problems[0] == "notify[1]: Apprise does not understand nosuchservice://bob:***@host/x"
    assert problems[1].startswith("notify[2]: cannot read Apprise config")
    assert "pw-check55" not in "\n".join(problems)


def test_secrets_inside_a_message_are_scrubbed_before_sending(receiver, make_notifier):
    url = receiver.ntfy_url(query="token=tk_inbodysecret")
    notifier = make_notifier([NotifyTarget(url)])
    notifier.send(Message("blind", Severity.WARNING, "t", f"error talking to {url}"))
    assert notifier.flush(5)
    assert "tk_inbodysecret" not in receiver.requests[0].body["message"]


@pytest.mark.parametrize("url,secrets,shown", URLS, ids=[u[0].split(":")[0] + str(i)
                                                         for i, u in enumerate(URLS)])
def test_redaction_without_apprise_masks_at_least_as_much(url, secrets, shown):
    redacted = redact_url(url, use_apprise=False)
    for secret in secrets:
        assert secret not in redacted


def test_notify_test_with_an_unknown_severity_names_the_choices_and_fails(receiver):
    out = io.StringIO()
    assert notify_test_command([NotifyTarget(receiver.json_url())], "urgent", out) == 1
    assert "unknown severity 'urgent'; one of: info, success, warning, failure, critical" in out.getvalue()
    assert receiver.requests == []
