"""Fixtures of the decision-quality suite; the machinery is in lab.py (read its docstring).

Each test is marked `@pytest.mark.decision(NAME)`; the session fixture `decisions` starts every
selected scenario at once, each in its own thread, against one shared Prometheus (scrape 1 s),
so the suite costs about as long as its slowest scenario, not the sum."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

# The e2e harness's receiver and helpers are shared, not copied.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))

from lab import SCENARIO_TIMEOUT, Lab, Runner  # noqa: E402

from harness import Outcome  # noqa: E402


@pytest.fixture(scope="session")
def decisions(request, prometheus_bin, tmp_path_factory):
    wanted = []
    for item in request.session.items:
        marker = item.get_closest_marker("decision")
        if marker is not None and marker.args[0] not in wanted:
            wanted.append(marker.args[0])
    lab = Lab(tmp_path_factory.mktemp("decisions"), prometheus_bin)
    lab.prometheus.start()
    started = time.monotonic()
    try:
        runner = Runner(lab, wanted)
        yield runner
        for fut in runner.futures.values():  # every scenario finishes before the teardown
            try:
                fut.result(timeout=SCENARIO_TIMEOUT)
            except BaseException:  # noqa: BLE001 - reported by its own test
                pass
        _SUMMARY.update(runner.seconds)
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
