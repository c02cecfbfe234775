"""Fixtures for service tests: a sandbox symlink host (real release dirs, a real `current`
symlink, a real /health endpoint that follows it) and `rollback-watcher run` as a subprocess.
The classes live in tests/support, shared with the fault tests and the benchmarks."""

from __future__ import annotations

from pathlib import Path

import pytest

from support import WatcherProcess, run_cli

REPO = Path(__file__).resolve().parents[2]


def cli(*args, **kwargs):
    """`python -m watcher ARGS` from the repository's top, as a user in a checkout runs it."""
    kwargs.setdefault("cwd", REPO)
    return run_cli(*args, **kwargs)


@pytest.fixture
def start_watcher(tmp_path):
    procs = []

    def start(config: Path, env: dict | None = None) -> WatcherProcess:
        w = WatcherProcess(config, tmp_path / f"watcher-{len(procs)}.log", env, cwd=REPO)
        procs.append(w)
        return w

    yield start
    for w in procs:
        w.stop(sig=9)
