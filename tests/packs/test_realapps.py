"""The real-instrumentation rigs (tests/support/realapps.py) behave as the apps they stand for:
labelled series appear on first use, errors follow the share asked for, a crash is an exit."""

from __future__ import annotations

import time

import pytest

from support.realapps import GoApp, PythonApp


def series(app, name: str) -> list[str]:
    return [line for line in app.get("/metrics").text.splitlines() if line.startswith(name + "{")]


@pytest.fixture(params=["python", "go"])
def app(request, tmp_path):
    rig = PythonApp(tmp_path, "r1") if request.param == "python" else GoApp(tmp_path, "r1")
    with rig:
        yield rig


def test_a_fresh_process_exposes_no_request_series_until_its_first_request(app):
    assert series(app, "http_requests_total") == []
    assert app.get("/").status_code == 200
    assert [s for s in series(app, "http_requests_total") if 'code="200"' in s]
    assert not [s for s in series(app, "http_requests_total") if 'code="500"' in s]


def test_an_error_share_of_forty_percent_is_two_in_every_five(app):
    app.control(error_ratio=0.4)
    assert [app.get("/").status_code for _ in range(10)] == [200, 200, 500, 200, 500] * 2


def test_the_own_traffic_generator_sends_the_rate_asked(app):
    app.control(rps=20)
    time.sleep(1.0)
    app.control(rps=0)
    time.sleep(0.3)
    count = sum(float(s.rsplit(" ", 1)[1]) for s in series(app, "http_requests_total"))
    assert 10 <= count <= 30, count


def test_a_crash_is_the_process_exiting(app):
    assert app.crash() == 3
    assert not app.running()


def test_a_python_release_with_a_warm_up_burst_fails_only_while_warming_up(tmp_path):
    with PythonApp(tmp_path, "r2", warmup_s=1.0, warmup_error_ratio=1.0) as app:
        assert app.get("/").status_code == 500
        time.sleep(1.1)
        assert app.get("/").status_code == 200
