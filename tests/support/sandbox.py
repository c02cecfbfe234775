"""The demo rig's Prometheus and demo app (watcher/demo/rig.py) with their ports from
support/ports.py: the demo rig picks them with a bind to port 0, which another test process may
be given too before the server binds it (see support/ports.py). Neither program can bind port 0
and report the port it got, so the number must be reserved first."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from support.ports import LOOPBACK, free_port
from watcher.demo import rig


class PrometheusServer(rig.PrometheusServer):
    __doc__ = rig.PrometheusServer.__doc__

    def __init__(self, workdir: Path, targets: list[str], *args: Any, port: int | None = None, **kwargs: Any):
        super().__init__(workdir, targets, *args, **kwargs)
        # restart() keeps this port: it stays reserved for this process.
        self.port = port or free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"


class DemoAppProcess(rig.DemoAppProcess):
    __doc__ = rig.DemoAppProcess.__doc__

    def __init__(self, workdir: Path, release: str = "r1", settings: dict[str, Any] | None = None,
                 settings_file: Path | None = None, port: int | None = None, python: str = sys.executable):
        super().__init__(workdir, release, settings=settings, settings_file=settings_file,
                         port=port if port is not None else free_port(), python=python)
