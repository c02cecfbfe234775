"""Fixtures of the shipped-table suite (rig.py's docstring says what it runs). Each test is
marked `@pytest.mark.shipped(NAME)`; the session fixture starts every selected scenario at once,
each in its own thread, on one shared Prometheus, so the suite lasts about as long as its
slowest scenario."""

from __future__ import annotations

import time

import pytest
from rig import ShippedLab, runner

from support import Outcome, selected_scenarios


@pytest.fixture(scope="session")
def shipped_scenarios(request, prometheus_bin, tmp_path_factory):
    lab = ShippedLab(tmp_path_factory.mktemp("shipped"), prometheus_bin)
    lab.prometheus.start()
    started = time.monotonic()
    try:
        run = runner(lab, selected_scenarios(request.session.items, "shipped"))
        yield run
        run.wait_all()  # every scenario finishes before the teardown
        _SUMMARY.update(run.seconds)
        _SUMMARY["(suite, wall)"] = time.monotonic() - started
    finally:
        lab.close()


@pytest.fixture
def outcome(request, shipped_scenarios) -> Outcome:
    marker = request.node.get_closest_marker("shipped")
    assert marker is not None, "a test that uses `outcome` here needs @pytest.mark.shipped(NAME)"
    return shipped_scenarios.result(marker.args[0])


_SUMMARY: dict[str, float] = {}


def pytest_terminal_summary(terminalreporter):
    if not _SUMMARY:
        return
    terminalreporter.section("shipped table on the lazy-label app: wall time per scenario (concurrent)")
    for name, seconds in sorted(_SUMMARY.items(), key=lambda kv: kv[1]):
        terminalreporter.write_line(f"{seconds:6.1f}s  {name}")
