"""Fixtures of the e2e suite; the machinery is in harness.py (read its docstring first)."""

from __future__ import annotations

import pytest
from harness import Lab, Outcome, runner

from support import selected_scenarios


def pytest_configure(config):
    config.addinivalue_line("markers", "scenario(name): the e2e scenario whose outcome this test asserts")


@pytest.fixture(scope="session")
def scenarios(request, prometheus_bin, tmp_path_factory):
    lab = Lab(tmp_path_factory.mktemp("e2e"), prometheus_bin)
    lab.prometheus.start()
    try:
        run = runner(lab, selected_scenarios(request.session.items, "scenario"))
        yield run
        run.wait_all()  # let every scenario finish before tearing down
    finally:
        lab.close()


@pytest.fixture
def outcome(request, scenarios) -> Outcome:
    marker = request.node.get_closest_marker("scenario")
    assert marker is not None, "an e2e test that uses `outcome` needs @pytest.mark.scenario(NAME)"
    result = scenarios.result(marker.args[0])
    if result.timings:
        _REPORT[marker.args[0]] = result.timings
        keep_timings(request.config, marker.args[0], result.timings)
    return result


def keep_timings(config: pytest.Config, name: str, timings: dict) -> None:
    """The last 20 timings of each scenario in pytest's cache (`e2e/timings`), to compare runs.
    With `-p no:cacheprovider` there is no cache: the end-of-run summary is all there is."""
    cache = getattr(config, "cache", None)
    if cache is None:
        return
    history = cache.get("e2e/timings", {})
    history[name] = [*history.get(name, []), timings][-20:]
    cache.set("e2e/timings", history)


_REPORT: dict[str, dict] = {}


def pytest_terminal_summary(terminalreporter):
    if not _REPORT:
        return
    terminalreporter.section("e2e: fault onset -> verified rollback")
    for name, t in sorted(_REPORT.items()):
        parts = ", ".join(f"{k} {v:.2f}s" for k, v in t.items() if isinstance(v, (int, float)))
        terminalreporter.write_line(f"{name}: {parts}")
