"""Helpers for service tests. The sandbox symlink host (`symlink_host`) and `rollback-watcher
run` as a subprocess (`start_watcher`) are tests/conftest.py's fixtures; the classes live in
tests/support, shared with the fault tests and the benchmarks."""

from __future__ import annotations

from pathlib import Path

from support import run_cli

REPO = Path(__file__).resolve().parents[2]


def cli(*args, **kwargs):
    """`python -m watcher ARGS` from the repository's top, as a user in a checkout runs it."""
    kwargs.setdefault("cwd", REPO)
    return run_cli(*args, **kwargs)
