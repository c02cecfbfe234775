"""Fixtures for the tests against systemd as PID 1 (a booted Debian 12 container).

    host_prerequisites  session: FAILS (never skips) naming what this machine lacks: the
                        tools (the Makefile installs them), root, the cached rootfs (`make rootfs`)
    booted              factory: booted(name) -> a started BootedSystem with the checkout's copy,
                        the wheelhouse and the host's Prometheus bound in; stopped after the
                        module, also when a test or the boot fails
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from host.machine import BootedSystem, missing_prerequisites, rootfs_path
from host.provision import binds


@pytest.fixture(scope="session")
def host_prerequisites() -> Path:
    rootfs = rootfs_path()
    missing = missing_prerequisites(rootfs)
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        missing.append("`prometheus` (apt package prometheus; `make test` installs it)")
    if missing:
        pytest.fail("cannot boot systemd in a container here; missing: " + "; ".join(missing), pytrace=False)
    return rootfs


@pytest.fixture(scope="module")
def booted(host_prerequisites: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], BootedSystem]]:
    started: list[BootedSystem] = []
    workdir = tmp_path_factory.mktemp("host")

    def boot(name: str) -> BootedSystem:
        machine = BootedSystem(host_prerequisites, name, workdir,
                               binds(workdir, host_prerequisites.parent, shutil.which("prometheus")))
        started.append(machine)  # before start(): a failed boot is stopped too
        return machine.start()

    yield boot
    for machine in started:
        machine.stop()
