"""Test rigs, shared by the test suites and the benchmarks (`from support import ...`; pytest puts
tests/ on sys.path through the root conftest, bench/ does it itself).

    PrometheusServer, DemoAppProcess   real processes (watcher/demo/rig.py, shared with the demo)
    NginxServer, SymlinkHost           an nginx and a sandbox symlink host (rigs.py)
    WatcherProcess, run_cli            `rollback-watcher run` and the CLI as subprocesses
"""

from watcher.demo.rig import (
    JOB_NAME,
    LOOPBACK,
    DemoAppProcess,
    PrometheusServer,
    SandboxError,
    cpu_seconds,
    free_port,
)

from support.rigs import NginxServer, SymlinkHost, WatcherProcess, run_cli, wait_for

__all__ = [
    "JOB_NAME", "LOOPBACK", "DemoAppProcess", "PrometheusServer", "SandboxError", "cpu_seconds", "free_port",
    "NginxServer", "SymlinkHost", "WatcherProcess", "run_cli", "wait_for",
]
