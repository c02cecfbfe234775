"""A listing of releases that fails inside the rollback executor, right after the decider's
listing succeeded, is tried again before the rollback is called failed: one blip (an NFS
hiccup, an artifact store's 502) must not halt the watcher with a bad release serving.

In-process ticks on a real symlink host (support.ticking); the only injected thing is the
failure itself, at the backend's `releases()`, named by FlakyListing below."""

from __future__ import annotations

from support.ticking import Clock, make, ticks
from watcher.backends.symlink import SymlinkBackend
from watcher.base.errors import RollbackError


class FlakyListing(SymlinkBackend):
    """The real symlink backend whose `releases()` fails on the calls numbered in `fail_on`."""

    def __init__(self, real: SymlinkBackend, fail_on: set[int]):
        self.__dict__.update(real.__dict__)
        self.calls, self.fail_on = 0, fail_on

    def releases(self):
        self.calls += 1
        if self.calls in self.fail_on:
            raise RollbackError(f"cannot list {self.releases_dir}: Stale file handle")
        return super().releases()


def setup(symlink_host, clock, fail_on):
    host = symlink_host
    host.add_release("r1")
    host.add_release("r2", health=503)
    host.deploy("r1")
    w = make(host, clock)
    w.apply_request("mark", {"release": "r1", "mark": "good"}, clock())
    ticks(w, clock, 1)
    host.deploy("r2")
    ticks(w, clock, 1)  # the deploy is seen, the probe's first failure
    w.backend = FlakyListing(w.backend, fail_on)
    return host, w


def test_one_failed_listing_in_the_executor_is_tried_again_and_the_rollback_made(symlink_host):
    clock = Clock()
    # Call 1: the decider's listing (ok); call 2: the executor's (fails); call 3: ok.
    host, w = setup(symlink_host, clock, fail_on={2})
    reports = ticks(w, clock, 3)
    assert "rolled_back" in [r.acted for r in reports], [(r.verdict, r.acted) for r in reports]
    assert host.current_id() == "r1"
    assert w.state.halted is None
    kinds = host.kinds()
    assert kinds.count("rollback_retry") == 1 and "rollback_failed" not in kinds


def test_a_listing_that_keeps_failing_in_the_executor_fails_the_rollback_and_halts(symlink_host):
    clock = Clock()
    host, w = setup(symlink_host, clock, fail_on={2, 3, 4})
    reports = ticks(w, clock, 2)
    assert "rollback_failed" in [r.acted for r in reports]
    assert host.current_id() == "r2"
    assert w.state.halted and "Stale file handle" in w.state.halted
    assert host.kinds().count("rollback_retry") == 2
