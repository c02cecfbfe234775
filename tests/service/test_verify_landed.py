"""A rollback's verification and a deploy that lands during it, on a backend that fails to say
which release is current at the wrong moment.

The verification looks at `current` after each attempt: a deploy that landed supersedes the
rollback ("did not verify" would blame the restored release for the new one and halt). When
the last attempt's look failed, a deploy that landed then was taken for a failed rollback: the
watcher halted "did not verify" with the new release live (sim seed 12001760). It looks once
more now, and a backend still unreadable is said in the halt.

A real symlink backend on a temp dir, wrapped to fail `current()` on chosen calls (the
simulator's injected faults: a disk error, a broken link); real HTTP probes of a closed port on
127.0.0.1 (the restored release does not answer)."""

from __future__ import annotations

import socket

from watcher.backends.symlink import SymlinkBackend
from watcher.base.errors import RollbackError
from watcher.config.schema import VerifyConfig
from watcher.service.verify import verify
from watcher.signals.probe import HttpProbe


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Flaky(SymlinkBackend):
    """current() fails on the calls numbered in `fail` (1 = the first) and the tool deploys
    `deploy` just before call `deploy_at`."""

    def __init__(self, root, fail=(), deploy=None, deploy_at=0):
        super().__init__(root / "releases", root / "current")
        self.root, self.fail, self.deploy, self.deploy_at, self.calls = root, set(fail), deploy, deploy_at, 0

    def current(self):
        self.calls += 1
        if self.deploy is not None and self.calls == self.deploy_at:
            link = self.root / "current"
            link.unlink()
            link.symlink_to(self.root / "releases" / self.deploy)
        if self.calls in self.fail:
            raise RollbackError("cannot resolve current: Input/output error")
        return super().current()


def host(tmp_path, current="r0"):
    for rid in ("r0", "r2", "r3"):
        (tmp_path / "releases" / rid).mkdir(parents=True)
    (tmp_path / "current").symlink_to(tmp_path / "releases" / current)
    return tmp_path


def run(backend, attempts=3):
    config = VerifyConfig(url=f"http://127.0.0.1:{closed_port()}/health", attempts=attempts, every=0.0, timeout=0.5)
    return verify("r0", backend, config, [], HttpProbe(), lambda: 0.0, lambda s: None, previous="r2")


def test_a_deploy_that_landed_while_the_last_look_failed_supersedes_the_rollback(tmp_path):
    # Calls: 1 the first check, 2-4 the attempts' looks; r3 lands before the 4th, which fails.
    backend = Flaky(host(tmp_path), fail={4}, deploy="r3", deploy_at=4)
    result = run(backend)
    assert not result.ok and result.landed == "r3", result


def test_a_backend_unreadable_at_the_end_is_said(tmp_path):
    backend = Flaky(host(tmp_path), fail={4, 5})
    result = run(backend)
    assert not result.ok and result.landed is None
    assert "could not say which release is current" in result.detail, result.detail


def test_a_readable_backend_and_a_dead_target_do_not_verify(tmp_path):
    result = run(Flaky(host(tmp_path)))
    assert not result.ok and result.landed is None
    assert result.detail.startswith("not healthy after 3 attempts") and "could not say" not in result.detail
