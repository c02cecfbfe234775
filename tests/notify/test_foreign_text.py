"""Text that did not come from this host's config (a verdict another host, or anyone with write
access to etcd, stored) reaches each target as the characters it is: escaped for the target's
format by Apprise (the watcher hands it plain text), mentions defused, no link whose text hides
its address, capped. Real Apprise, real HTTP receivers on 127.0.0.1 (conftest.Receiver): json://
in each format Apprise can give it, ntfy, and Mattermost (a chat that renders markdown)."""

from __future__ import annotations

import pytest

from watcher.base.format import untrusted
from watcher.core import messages as m
from watcher.core.envelope import MessageContext, NotifyTarget
from watcher.core.fleetmodel import BAD, FleetVerdict
from watcher.service.coordinator import fleet_finding

URGENT = "**URGENT** [login here](http://evil.example/phish)"
VERDICT = FleetVerdict("r42", BAD, "web-2 @here", 1_714_533_000.0, URGENT, 0.4, "<script>alert(1)</script> @channel "
                       "<!channel> <@U024BE7LH>" + " pad" * 100, "%")
MESSAGE = m.rolling_back(MessageContext("shop", "web-1").at(1_714_533_100.0), "r42", "r41", [fleet_finding(VERDICT)])


@pytest.mark.parametrize("text, shown", [
    (URGENT, "**URGENT** [login here] (http://evil.example/phish)"),
    ("@channel @here @everyone", "@\u200bchannel @\u200bhere @\u200beveryone"),
    ("<!channel> <@U024BE7LH> <@&123>", "<!\u200bchannel> <@\u200bU024BE7LH> <@\u200b&123>"),
    ("two\nlines\r\x1b[31mred\u202egnp.exe", "two lines [31mred gnp.exe"),
    ("web-1.example.com", "web-1.example.com"),  # ordinary names stay as they are
])
def test_untrusted_text_is_one_line_without_mentions_or_masked_links(text, shown):
    assert untrusted(text) == shown
    assert untrusted(shown) == shown  # once is enough: doing it again changes nothing


def test_untrusted_text_is_capped_in_the_middle():
    assert len(untrusted("x" * 500, 64)) == 64


def test_a_foreign_verdict_reaches_every_format_as_plain_text(receiver, make_notifier, journal):
    targets = [NotifyTarget(receiver.json_url("markdown", "format=markdown")),
               NotifyTarget(receiver.json_url("html", "format=html")),
               NotifyTarget(receiver.json_url("text")),
               NotifyTarget(receiver.ntfy_url("alerts")),
               NotifyTarget(f"mmost://127.0.0.1:{receiver.port}/mattermost-hook-token")]
    notifier = make_notifier(targets)
    notifier.send(MESSAGE)
    assert notifier.flush(15) and receiver.wait_for(len(targets))
    assert [e["kind"] for e in journal].count("notify_sent") == len(targets), journal
    by_path = {r.path.split("?")[0]: r for r in receiver.requests}

    markdown = by_path["/markdown"].body["message"]
    assert "\\*\\*URGENT\\*\\* \\[login here\\] \\(http://evil\\.example/phish\\)" in markdown
    html = by_path["/html"].body["message"]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>" not in html
    for body in (markdown, html, by_path["/text"].body["message"], by_path["/"].body["message"],
                 by_path["/hooks/mattermost-hook-token"].body["text"]):
        assert "](" not in body  # no link hides its address, in any format
        assert "@channel" not in body and "@here" not in body and "<!channel>" not in body and "<@U0" not in body
        assert " pad" * 60 not in body  # the reason capped (fleetmodel.REASON_MAX)
    assert "x-markdown" not in by_path["/"].headers  # ntfy renders it as plain text
