"""Driving a Watcher one tick at a time, in-process, with a fake clock: only time is
simulated, so watch windows, cooldowns and pauses pass in milliseconds."""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager

from watcher.config.load import load_config
from watcher.service.build import build_watcher

PROBE_RULE = """rules:
  - name: health
    http: HEALTH_URL
    failures: 2
    action: rollback
"""


class Clock:
    def __init__(self):
        self.t = 1_800_000_000.0

    def __call__(self):
        return self.t

    def advance(self, seconds):
        self.t += seconds


def make(host, clock, rules: str = PROBE_RULE, **extra):
    """A started Watcher on a SymlinkHost, health-probe rule, 10 min watch window by default."""
    extra.setdefault("watch_window", "10m")
    cfg = load_config(host.write_config(rules, **extra), environ={})
    w = build_watcher(cfg, notify=False, clock=clock)
    w.sleep = lambda s: None  # verification attempts pass in simulated time
    w.start()
    return w


def ticks(w, clock, n, every=1.0):
    reports = []
    for _ in range(n):
        reports.append(w.tick())
        clock.advance(every)
    return reports



def oom_counter(tmp_path):
    """A vmstat file for `host: oom_kills` rules (the kernel's own would need real OOM kills),
    at `oom_kill 0`: returns its path and `kill(n=1)`, which adds kills."""
    path = tmp_path / "vmstat"
    count = [0]

    def kill(n: int = 1) -> None:
        count[0] += n
        path.write_text(f"nr_free_pages 1\noom_kill {count[0]}\n")

    kill(0)
    return path, kill


@contextmanager
def held_deploy_lock(path):
    """The deploy lock held as `flock deploy.lock ./deploy.sh` holds it (an flock on its own
    open file, so the watcher in this same process sees it held by another); yields the fd."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield fd
    finally:
        os.close(fd)
