"""The real-instrumentation rigs (tests/support/realapps.py) behave as the apps they stand for:
labelled series appear on first use, errors follow the share asked for, a crash is an exit."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from support.realapps import GoApp, NodeApp, PythonApp
from watcher.demo.rig import SandboxError

# Each app's request counter and its status label: prometheus_client and client_golang as the
# apps name them, express-prom-bundle's histogram count on the Node app.
REQUESTS = {"pyapp": ("http_requests_total", "code"), "goapp": ("http_requests_total", "code"),
            "nodeapp": ("http_request_duration_seconds_count", "status_code")}
RIGS = {"python": PythonApp, "go": GoApp, "node": NodeApp}


def series(app, name: str | None = None) -> list[str]:
    name = name or REQUESTS[app.what][0]
    return [line for line in app.get("/metrics").text.splitlines() if line.startswith(name + "{")]


@pytest.fixture(params=["python", "go", "node"])
def app(request, tmp_path):
    with RIGS[request.param](tmp_path, "r1") as rig:
        yield rig


def test_a_fresh_process_exposes_no_request_series_until_its_first_request(app):
    label = REQUESTS[app.what][1]
    assert series(app) == []
    assert app.get("/").status_code == 200
    assert [s for s in series(app) if f'{label}="200"' in s]
    assert not [s for s in series(app) if f'{label}="500"' in s]


def test_an_error_share_of_forty_percent_is_two_in_every_five(app):
    app.control(error_ratio=0.4)
    assert [app.get("/").status_code for _ in range(10)] == [200, 200, 500, 200, 500] * 2


def test_the_own_traffic_generator_sends_the_rate_asked(app):
    app.control(rps=20)
    time.sleep(1.0)
    app.control(rps=0)
    time.sleep(0.3)
    count = sum(float(s.rsplit(" ", 1)[1]) for s in series(app))
    assert 10 <= count <= 30, count


def test_a_crash_is_the_process_exiting(app):
    assert app.crash() == 3
    assert not app.running()


def test_a_python_release_with_a_warm_up_burst_fails_only_while_warming_up(tmp_path):
    with PythonApp(tmp_path, "r2", warmup_s=1.0, warmup_error_ratio=1.0) as app:
        assert app.get("/").status_code == 500
        time.sleep(1.1)
        assert app.get("/").status_code == 200


def test_the_node_app_rereads_its_settings_file_on_sighup(tmp_path):
    with NodeApp(tmp_path, "r1") as app:
        app.settings_file.write_text(json.dumps({"release": "r1", "error_ratio": 1.0}))
        os.kill(app.pid, signal.SIGHUP)
        deadline = time.monotonic() + 5
        while app.get("/-/control").json()["error_ratio"] != 1.0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert app.get("/").status_code == 500


def test_a_node_release_with_crash_after_s_zero_cannot_start(tmp_path):
    with pytest.raises(SandboxError):
        NodeApp(tmp_path, "r2", crash_after_s=0).start(timeout=10)
