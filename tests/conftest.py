"""Shared fixtures: a real Prometheus and the controllable demo app (tests/support).

    prometheus_bin   session: path of the `prometheus` binary; FAILS (never skips) without it
    prometheus       factory: prometheus(targets, **PrometheusServer options) -> started server,
                     stopped after the test. Its scrape job is "demo", scrape interval 1 s.
    demo_app         factory: demo_app(release="r1", port=None, settings_file=None, **settings)
                     -> started DemoAppProcess (see watcher/demo/app.py for the settings),
                     stopped after the test. `.target` goes into prometheus([...]).
    symlink_host     a sandbox symlink host in tmp_path (release dirs, `current`, a /health
                     endpoint that follows the link); closed after the test.
    start_watcher    factory: start_watcher(config, env=None) -> `rollback-watcher run` as a
                     subprocess (WatcherProcess, from the repository's top), killed after the test
    demo_stack       session: one default demo app (r1, healthy) scraped by one Prometheus,
                     with data already in. READ ONLY: never control() it; use the factories.

Typical use:

    def test_breaching_rule(prometheus, demo_app):
        app = demo_app(error_ratio=0.3)
        prom = prometheus([app.target])
        prom.wait_for_series('count_over_time(up{job="demo"}[1m]) >= 3')
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from support import REPO, DemoAppProcess, PrometheusServer, SymlinkHost, WatcherProcess


@pytest.fixture(scope="session")
def prometheus_bin() -> str:
    path = shutil.which("prometheus")
    if path is None:
        # A skip would let a machine without Prometheus pass the suite while testing nothing real.
        pytest.fail("the `prometheus` binary is not installed: run `make test`, which installs it", pytrace=False)
    return path


@pytest.fixture
def prometheus(prometheus_bin: str, tmp_path: Path) -> Iterator[Callable[..., PrometheusServer]]:
    started: list[PrometheusServer] = []

    def start(targets: list[str], **options: Any) -> PrometheusServer:
        server = PrometheusServer(tmp_path / f"prometheus-{len(started)}", targets, binary=prometheus_bin, **options)
        started.append(server)  # before start(): a failed start is stopped too
        return server.start()

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def demo_app(tmp_path: Path) -> Iterator[Callable[..., DemoAppProcess]]:
    started: list[DemoAppProcess] = []

    def start(
        release: str = "r1", port: int | None = None, settings_file: Path | None = None, **settings: Any
    ) -> DemoAppProcess:
        app = DemoAppProcess(
            tmp_path / "demoapp", release, settings=settings or None, settings_file=settings_file, port=port
        )
        started.append(app)
        return app.start()

    yield start
    for app in started:
        app.stop()


@dataclass(frozen=True)
class DemoStack:
    app: DemoAppProcess
    prometheus: PrometheusServer


@pytest.fixture(scope="session")
def demo_stack(prometheus_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoStack]:
    workdir = tmp_path_factory.mktemp("demo-stack")
    with DemoAppProcess(workdir, "r1") as app, PrometheusServer(workdir, [app.target], binary=prometheus_bin) as prom:
        # Two samples: enough for rate() over a short range to answer.
        prom.wait_for_series('count_over_time(up{job="demo"}[1m]) >= 2', timeout=15)
        yield DemoStack(app, prom)


@pytest.fixture
def symlink_host(tmp_path: Path) -> Iterator[SymlinkHost]:
    host = SymlinkHost(tmp_path / "host")
    yield host
    host.close()


@pytest.fixture
def start_watcher(tmp_path: Path) -> Iterator[Callable[..., WatcherProcess]]:
    procs: list[WatcherProcess] = []

    def start(config: Path, env: dict | None = None) -> WatcherProcess:
        w = WatcherProcess(config, tmp_path / f"watcher-{len(procs)}.log", env, cwd=REPO)
        procs.append(w)
        return w

    yield start
    for w in procs:
        w.stop(sig=9)


# pytest deletes PYTEST_CURRENT_TEST from os.environ after each test. Threads of the scenario
# suites (and notifier threads) read os.environ meanwhile (httpx and requests look for proxies,
# subprocess copies it), and os.environ's iteration lists the keys, then reads each: a key
# deleted in between raised KeyError in a scenario's setup (seen once in a clean-clone run).
# Emptied instead of deleted, the key never disappears under a reader.
def _keep_current_test_var() -> None:
    import _pytest.runner as runner

    update = getattr(runner, "_update_current_test_var", None)
    if update is None:
        return

    def never_deleted(item, when):
        if when:
            update(item, when)
        else:
            os.environ["PYTEST_CURRENT_TEST"] = ""

    runner._update_current_test_var = never_deleted


_keep_current_test_var()


# `make test` runs the suite in several processes (pytest-xdist). A scenario suite starts all
# its scenarios at once from one session fixture, so a whole scenario directory must run in one
# worker (split across workers, each would start every scenario again); any other test file
# stays whole in one worker, so its module fixtures (one booted system, one dockerd) are made
# once. xdist's own --dist loadfile keeps only files whole: this scheduler keeps directories.
# tests/sim is not one: its files share no session fixture, and its two budgeted searches
# (test_search.py, test_search_more.py: about a minute of one core each) run on two workers.
_WHOLE_DIRECTORIES = {"decisions", "e2e", "fleet", "host", "shipped"}

# The scopes that take longest, longest first (minutes of scenario time each, measured in full
# runs): they start on separate workers at once, and the many short files fill the workers in
# after them. xdist's own order (most tests first) started these last and made a long tail.
_LONGEST_FIRST = ["tests/decisions", "tests/shipped", "tests/fleet", "tests/e2e", "tests/sim/test_search_more.py",
                  "tests/sim/test_search.py", "tests/host", "tests/sim/test_examples.py",
                  "tests/integrations/test_capistrano.py", "tests/packs/test_packs_live.py"]


def _scope_of(nodeid: str) -> str:
    path = nodeid.split("::", 1)[0]
    parts = path.split("/")
    if len(parts) > 2 and parts[0] == "tests" and parts[1] in _WHOLE_DIRECTORIES:
        return "/".join(parts[:2])
    return path


def pytest_collection_modifyitems(config, items):
    rank = {scope: i for i, scope in enumerate(_LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(_scope_of(item.nodeid), len(rank)))  # stable: the rest keep their order


def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    config.option.loadscopereorder = False  # keep the order above (collection order)

    class WholeFilesAndScenarioDirectories(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _scope_of(nodeid)

    return WholeFilesAndScenarioDirectories(config, log)
