"""Fixtures for the CLI tests: `rollback-watcher run` as a subprocess (tests/support), stopped
after the test, also on failure."""

from __future__ import annotations

from pathlib import Path

import pytest

from support import WatcherProcess

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def start_watcher(tmp_path):
    procs: list[WatcherProcess] = []

    def start(config: Path, env: dict | None = None) -> WatcherProcess:
        w = WatcherProcess(config, tmp_path / f"watcher-{len(procs)}.log", env, cwd=REPO)
        procs.append(w)
        return w

    yield start
    for w in procs:
        w.stop(sig=9)
