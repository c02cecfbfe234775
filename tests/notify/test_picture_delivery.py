"""A message's picture through real Apprise to real HTTP receivers on 127.0.0.1: attached where
the target takes files, and never the reason a message is late or lost (issue 24, item 2).
The "no-attachments" receiver answers as a ntfy server without `attachment-cache-dir` does
(conftest.Receiver)."""

from __future__ import annotations

import base64
import io
import threading
from dataclasses import replace

from PIL import Image

from watcher.core.envelope import Message, Severity
from watcher.notify.attach import PictureMaker
from watcher.notify.notifier import NotifyTarget
from watcher.notify.pictures import PNG_SIGNATURE, BreachPicture, PictureError, thresholds_for

T0 = 1_764_000_000.0
PICTURE = BreachPicture(rule="http-5xx-ratio", unit="ratio", thresholds=thresholds_for(above=0.1),
                        points=tuple((T0 + 15 * i, 0.02 if i < 20 else 0.4) for i in range(40)),
                        deploy_at=T0 + 270, breach_at=T0 + 300, switch_at=T0 + 420, release="r2", host="web-1")


def UNHURRIED() -> PictureMaker:  # noqa: N802 - reads as the kind of maker it is
    """A maker that waits for its picture as long as a test may take: these tests are about
    how a picture travels, not about how long matplotlib takes to import on a loaded machine
    (the tick imports it ahead, while a rollback rule is pending: tests/notify/test_pictures.py)."""
    return PictureMaker(wait=60)


def rollback(picture=PICTURE) -> Message:
    return Message("rolling_back", Severity.WARNING, "[shop@web-1] rolling back r2 → r1",
                   "Rolling back r2 → r1.\nNext: rollback-watcher status", release="r2",
                   rules=("http-5xx-ratio",), picture=picture)


def png_size(data: bytes) -> tuple[int, int]:
    assert data.startswith(PNG_SIGNATURE)
    image = Image.open(io.BytesIO(data))
    image.load()
    return image.size


def sent(journal) -> list[dict]:
    return [e for e in journal if e["kind"] == "notify_sent"]


def test_json_target_gets_the_picture_as_a_base64_png_beside_the_message(receiver, make_notifier, journal):
    notifier = make_notifier([NotifyTarget(receiver.json_url())], pictures=UNHURRIED())
    notifier.send(rollback())
    assert notifier.flush(30)
    [request] = receiver.requests
    assert request.body["title"] == "[shop@web-1] rolling back r2 → r1"
    [attachment] = request.body["attachments"]
    assert (attachment["filename"], attachment["mimetype"]) == ("http-5xx-ratio.png", "image/png")
    assert png_size(base64.b64decode(attachment["base64"])) == (960, 540)
    assert request.body["schema"] == "rollback-watcher/1"  # the payload is still there
    assert [e["picture"] for e in sent(journal)] == [True]


def test_ntfy_target_gets_the_png_as_the_body_and_the_text_as_parameters(receiver, make_notifier):
    notifier = make_notifier([NotifyTarget(receiver.ntfy_url("shop"))], pictures=UNHURRIED())
    notifier.send(rollback())
    assert notifier.flush(30)
    [request] = receiver.requests
    assert request.path.startswith("/shop?") and "filename=http-5xx-ratio.png" in request.path
    assert "rolling+back" in request.path
    assert png_size(request.raw) == (960, 540)
    assert request.headers["x-priority"] == "high"


def test_ntfy_server_refusing_attachments_gets_the_message_without_the_picture(receivers, make_notifier, journal):
    receiver = receivers(mode="no-attachments")
    notifier = make_notifier([NotifyTarget(receiver.ntfy_url("shop"))], retries=0, pictures=UNHURRIED())
    notifier.send(rollback())
    assert notifier.flush(30)
    with_picture, without = receiver.requests
    assert with_picture.body is None and png_size(with_picture.raw) == (960, 540)
    assert without.body == {"topic": "shop", "title": "[shop@web-1] rolling back r2 → r1",
                            "message": "Rolling back r2 → r1.\nNext: rollback-watcher status"}
    assert [e["picture"] for e in sent(journal)] == [False]
    assert "notify_failed" not in journal.kinds()


def test_target_without_attachments_gets_the_text_and_nothing_is_drawn(receiver, make_notifier, journal):
    drawn = []
    notifier = make_notifier([NotifyTarget(f"gotify://127.0.0.1:{receiver.port}/AbCdEfGhIjKlMnO")],
                             pictures=PictureMaker(render=lambda p: drawn.append(p) or PNG_SIGNATURE))
    notifier.send(rollback())
    assert notifier.flush(30)
    [request] = receiver.requests
    assert request.path == "/message" and request.body["title"] == "[shop@web-1] rolling back r2 → r1"
    assert drawn == []
    assert [e["picture"] for e in sent(journal)] == [False]


def test_picture_that_cannot_be_drawn_leaves_the_message_going_without_it(receiver, make_notifier, journal):
    def broken(picture):
        raise PictureError("matplotlib is not installed (matplotlib)")

    notifier = make_notifier([NotifyTarget(receiver.json_url())], pictures=PictureMaker(render=broken))
    notifier.send(rollback())
    assert notifier.flush(30)
    [request] = receiver.requests
    assert request.body["attachments"] == [] and "rolling back" in request.body["title"]
    assert [e["picture"] for e in sent(journal)] == [False]


def test_picture_late_past_the_wait_leaves_the_message_going_without_it(receiver, make_notifier, journal):
    never = threading.Event()
    late = PictureMaker(render=lambda p: never.wait(30) and PNG_SIGNATURE, wait=0.1)
    notifier = make_notifier([NotifyTarget(receiver.json_url())], pictures=late)
    notifier.send(rollback())
    assert notifier.flush(30)
    never.set()
    [request] = receiver.requests
    assert request.body["attachments"] == []


def test_one_picture_is_drawn_for_every_target_of_a_message(receivers, make_notifier, journal):
    first, second = receivers(), receivers()
    drawn = []

    def render(picture):
        from watcher.notify.pictures import render_png

        drawn.append(picture.rule)
        return render_png(picture)

    notifier = make_notifier([NotifyTarget(first.json_url()), NotifyTarget(second.ntfy_url())],
                             pictures=PictureMaker(render=render))
    notifier.send(rollback())
    assert notifier.flush(30)
    assert drawn == ["http-5xx-ratio"]
    assert len(first.requests) == len(second.requests) == 1
    assert sorted(e["picture"] for e in sent(journal)) == [True, True]


def test_message_without_a_picture_goes_without_attachments(receiver, make_notifier, journal):
    notifier = make_notifier([NotifyTarget(receiver.json_url())])
    notifier.send(replace(rollback(), picture=None))
    assert notifier.flush(30)
    assert receiver.requests[0].body["attachments"] == []
    assert [e["picture"] for e in sent(journal)] == [False]
