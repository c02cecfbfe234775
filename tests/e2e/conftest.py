"""Fixtures of the e2e suite; the machinery is in harness.py (read its docstring first)."""

from __future__ import annotations

import pytest

from harness import SCENARIO_TIMEOUT, Lab, Outcome, Runner


def pytest_configure(config):
    config.addinivalue_line("markers", "scenario(name): the e2e scenario whose outcome this test asserts")


@pytest.fixture(scope="session")
def scenarios(request, prometheus_bin, tmp_path_factory):
    wanted = []
    for item in request.session.items:
        marker = item.get_closest_marker("scenario")
        if marker is not None and marker.args[0] not in wanted:
            wanted.append(marker.args[0])
    lab = Lab(tmp_path_factory.mktemp("e2e"), prometheus_bin)
    lab.prometheus.start()
    try:
        runner = Runner(lab, wanted)
        yield runner
        for fut in runner.futures.values():  # let every scenario finish before tearing down
            try:
                fut.result(timeout=SCENARIO_TIMEOUT)
            except BaseException:  # noqa: BLE001 - reported by its own test
                pass
    finally:
        for st in lab.stages:
            st.close()
        for close in lab.extra_closers:
            close()
        lab.prometheus.stop()


@pytest.fixture
def outcome(request, scenarios) -> Outcome:
    marker = request.node.get_closest_marker("scenario")
    assert marker is not None, "an e2e test that uses `outcome` needs @pytest.mark.scenario(NAME)"
    result = scenarios.result(marker.args[0])
    if result.timings:
        timings = request.config.cache.get("e2e/timings", {})
        timings.setdefault(marker.args[0], []).append(result.timings)
        timings[marker.args[0]] = timings[marker.args[0]][-20:]
        request.config.cache.set("e2e/timings", timings)
        _REPORT[marker.args[0]] = result.timings
    return result


_REPORT: dict[str, dict] = {}


def pytest_terminal_summary(terminalreporter):
    if not _REPORT:
        return
    terminalreporter.section("e2e: fault onset -> verified rollback")
    for name, t in sorted(_REPORT.items()):
        parts = ", ".join(f"{k} {v:.2f}s" for k, v in t.items() if isinstance(v, (int, float)))
        terminalreporter.write_line(f"{name}: {parts}")
