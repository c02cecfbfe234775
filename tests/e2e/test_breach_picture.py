"""What on-call sees, end to end (issue 24, item 2): a bad deploy on a sandbox host watched by
the real watcher (a subprocess) through a real Prometheus, the rollback told over Apprise's
json:// to a loopback receiver. The rolling-back and rolled-back messages carry a PNG picture
of the breach (base64 in the JSON body's `attachments`), and `explain --plot` and
`incidents ID --plot` write one from Prometheus.
"""

from __future__ import annotations

import base64
import io

import pytest
from harness import Lab, Outcome, scenario
from PIL import Image

pytestmark = pytest.mark.e2e

GOOD = {"error_ratio": 0.0, "latency_s": 0.005}
ROLLBACK_S = 120.0


def png_image(data: bytes) -> Image.Image:
    """The bytes decoded as a PNG, every pixel (a truncated or corrupt file raises)."""
    assert data.startswith(b"\x89PNG\r\n\x1a\n"), data[:16]
    image = Image.open(io.BytesIO(data))
    image.load()
    assert image.format == "PNG"
    return image


@scenario("5xx-picture")
def run_5xx_picture(lab: Lab) -> Outcome:
    st = lab.stage("5xx-picture", scheme="json")
    st.add_release("r1", **GOOD)
    st.add_release("r2", error_ratio=0.30, latency_s=0.005)
    st.start_app("r1")
    st.write_config()
    st.start_watcher()
    st.mark_good("r1")
    st.wait_series(5)
    onset = st.deploy("r2")
    st.wait_event("rollback_verified", ROLLBACK_S)
    st.wait_title("rolled back r2 → r1")
    incident = st.wait_event("incident", 30)
    return Outcome(st, onset, data={"incident": incident["id"]})


@pytest.mark.scenario("5xx-picture")
def test_rollback_message_over_json_carries_a_png_picture_of_the_breach(outcome):
    messages = outcome.stage.receiver.received()
    told = {m["title"]: m for m in messages if "roll" in m.get("title", "")}
    rolling = next(m for t, m in told.items() if "rolling back r2 → r1" in t)
    rolled = next(m for t, m in told.items() if "rolled back r2 → r1" in t)
    for name, message in (("rolling_back", rolling), ("rollback_verified", rolled)):
        [attachment] = message["attachments"]
        assert attachment["mimetype"] == "image/png"
        assert attachment["filename"] == "http-5xx-ratio.png"
        data = base64.b64decode(attachment["base64"])
        (outcome.stage.root / f"received-{name}.png").write_bytes(data)  # to look at after a run
        assert png_image(data).size == (960, 540)
        # The structured payload is still there beside the picture.
        assert message["schema"] == "rollback-watcher/1" and message["rule"] == "http-5xx-ratio"
    # Messages that are not about a breach go without a picture.
    deployed = next(m for m in messages if "deployed r2" in m.get("title", ""))
    assert not deployed.get("attachments")


@pytest.mark.scenario("5xx-picture")
def test_explain_plot_writes_a_png_of_the_rule_from_prometheus(outcome):
    st = outcome.stage
    path = st.root / "explain-http-5xx-ratio.png"
    result = st.cli("explain", "http-5xx-ratio", "--plot", str(path))
    assert str(path) in result.stdout
    assert png_image(path.read_bytes()).size == (960, 540)


@pytest.mark.scenario("5xx-picture")
def test_incidents_plot_writes_a_png_of_the_incident_from_prometheus(outcome):
    st = outcome.stage
    path = st.root / "incident.png"
    result = st.cli("incidents", outcome.data["incident"], "--plot", str(path))
    assert str(path) in result.stdout
    assert png_image(path.read_bytes()).size == (960, 540)
