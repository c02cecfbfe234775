"""Test rigs, shared by the test suites and the benchmarks (`from support import ...`; pytest puts
tests/ on sys.path through the root conftest, bench/ does it itself).

    PrometheusServer, DemoAppProcess   real processes (watcher/demo/rig.py, shared with the demo),
                                       on ports reserved by support/ports.py (sandbox.py)
    free_port, free_ports              loopback ports no other test process can take (ports.py)
    NginxServer, SymlinkHost           an nginx and a sandbox symlink host (rigs.py)
    HEALTH_PROBE_RULES, UP_BREACH_RULES  the fault suites' one-rule tables for a SymlinkHost (rigs.py)
    terminate_then_kill                SIGTERM a daemon, SIGKILL its process group after a timeout
                                       (processes.py: the dockerd and nspawn rigs)
    WatcherProcess, run_cli            `rollback-watcher run` and the CLI as subprocesses
    NotificationReceiver               a loopback ntfy/json endpoint for Apprise (receiver.py)
    LoopbackServer                     any http.server handler on 127.0.0.1:0 in a thread
    ScenarioHost, ScenarioRunner, ...  what the scenario rigs of tests/e2e, tests/decisions and
                                       tests/fleet share (scenarios.py)
    support.realapps                   apps and exporters the project did not build: PythonApp
                                       (prometheus_client, lazy labels), GoApp (client_golang),
                                       HAProxy, NodeExporter (import them from there)
"""

from support.ports import LOOPBACK, free_port, free_ports
from support.processes import terminate_then_kill
from support.receiver import LoopbackServer, NotificationReceiver
from support.rigs import (
    HEALTH_PROBE_RULES,
    UP_BREACH_RULES,
    NginxServer,
    SymlinkHost,
    WatcherProcess,
    run_cli,
    wait_for,
)
from support.sandbox import DemoAppProcess, PrometheusServer
from support.scenarios import (
    REPO,
    Outcome,
    PortPool,
    ScenarioHost,
    ScenarioRegistry,
    ScenarioRunner,
    selected_scenarios,
)
from watcher.demo.rig import JOB_NAME, SandboxError, cpu_seconds

__all__ = [
    "JOB_NAME", "LOOPBACK", "DemoAppProcess", "PrometheusServer", "SandboxError", "cpu_seconds", "free_port",
    "free_ports", "LoopbackServer", "NotificationReceiver",
    "NginxServer", "SymlinkHost", "WatcherProcess", "run_cli", "wait_for",
    "HEALTH_PROBE_RULES", "UP_BREACH_RULES", "terminate_then_kill",
    "REPO", "Outcome", "PortPool", "ScenarioHost", "ScenarioRegistry", "ScenarioRunner", "selected_scenarios",
]
