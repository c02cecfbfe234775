"""Fixtures of the decision-quality suite; the machinery is in lab.py (read its docstring).

Each test is marked `@pytest.mark.decision(NAME)`; the session fixture `decisions` starts every
selected scenario at once, each in its own thread, against one shared Prometheus (scrape 1 s),
so the suite costs about as long as its slowest scenario, not the sum."""

from __future__ import annotations

import time

import pytest
from lab import Lab, runner

from support import Outcome, selected_scenarios


@pytest.fixture(scope="session")
def decisions(request, prometheus_bin, tmp_path_factory):
    lab = Lab(tmp_path_factory.mktemp("decisions"), prometheus_bin)
    lab.prometheus.start()
    started = time.monotonic()
    try:
        run = runner(lab, selected_scenarios(request.session.items, "decision"))
        yield run
        run.wait_all()  # every scenario finishes before the teardown
        _SUMMARY.update(run.seconds)
        _SUMMARY["(suite, wall)"] = time.monotonic() - started
    finally:
        lab.close()


@pytest.fixture
def outcome(request, decisions) -> Outcome:
    marker = request.node.get_closest_marker("decision")
    assert marker is not None, "a decision test that uses `outcome` needs @pytest.mark.decision(NAME)"
    return decisions.result(marker.args[0])


_SUMMARY: dict[str, float] = {}


def pytest_terminal_summary(terminalreporter):
    if not _SUMMARY:
        return
    terminalreporter.section("decisions: wall time per scenario (they run concurrently)")
    for name, seconds in sorted(_SUMMARY.items(), key=lambda kv: kv[1]):
        terminalreporter.write_line(f"{seconds:6.1f}s  {name}")
