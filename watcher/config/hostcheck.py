"""What `check` verifies on this host beyond the config's syntax: the paths it names exist, the
telemetry port is free. Each is something `run` would otherwise discover on every tick (a backend
path), never (a deploy lock in a missing directory is never held), or by crashing (a taken port).

The problems are ConfigProblems with the line of their key in watcher.yaml, so `check` prints
them like every other config error: FILE:LINE: KEY: message.
"""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path

from watcher.backends import BACKENDS
from watcher.backends.base import OptionKind
from watcher.base import yamlfile
from watcher.base.errors import ConfigProblem
from watcher.config.schema import WatcherConfig

# The exit code of `run` when it cannot start on this host (sysexits.h EX_CONFIG): a restart
# would fail the same way, so the unit lists it in RestartPreventExitStatus=.
EXIT_CANNOT_START = 78


def path_problems(cfg: WatcherConfig, lines: dict[str, int]) -> list[ConfigProblem]:
    """Backend paths that do not exist; a deploy_lock whose directory does not exist. `lines` is
    key_lines(cfg.path), which `check` reads once for every problem it reports."""
    problems = []
    if cfg.backend is not None:
        for key, option in BACKENDS[cfg.backend.type].OPTIONS.items():
            path = cfg.backend.options.get(key)
            if option.kind is not OptionKind.PATH or path is None:
                continue
            name = f"backend.{key}"
            if not os.path.lexists(path):
                problems.append(ConfigProblem(str(cfg.path), lines.get(name), name,
                                              f"{path} does not exist on this host"))
            elif key == "releases" and not Path(path).is_dir():
                problems.append(ConfigProblem(str(cfg.path), lines.get(name), name, f"{path} is not a directory"))
    if cfg.deploy_lock is not None and not cfg.deploy_lock.parent.is_dir():
        hint = ""
        if str(cfg.deploy_lock).startswith(("/run/", "/var/run/")):
            hint = " (/run is emptied at boot: let the unit create it with RuntimeDirectory=, or use a persistent dir)"
        problems.append(ConfigProblem(
            str(cfg.path), lines.get("deploy_lock"), "deploy_lock",
            f"directory {cfg.deploy_lock.parent} does not exist: no deploy script could hold this lock, "
            f"and the watcher would never wait for one{hint}"))
    return problems


def port_problem(listen: str | None, watcher_running: bool) -> str | None:
    """Why `run` could not listen on telemetry.listen, or None. The running watcher's own
    port is not a problem."""
    if listen is None:
        return None
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    try:
        infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return f"telemetry.listen {listen}: cannot resolve {host}: {exc.strerror}"
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # The same socket options as http.server's: SO_REUSEADDR, so TIME_WAIT is no conflict.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE and watcher_running:
                return None
            return listen_error(listen, exc)
    return None


def listen_error(listen: str, exc: OSError) -> str:
    """One line for a telemetry endpoint that cannot listen."""
    if exc.errno == errno.EADDRINUSE:
        return (f"telemetry.listen {listen} is already in use (another rollback-watcher on this host?): "
                f"give each watcher its own telemetry.listen port, or `telemetry: false`")
    return f"telemetry.listen {listen}: cannot listen: {exc.strerror or exc}"


def key_lines(path: Path) -> dict[str, int]:
    """Line of each top-level key, backend key and notify item ("notify[0]"), re-read from the file `cfg` came from
    (the typed config keeps no lines); an unreadable file gives no lines, never an error."""
    try:
        doc = yamlfile.load(Path(path).read_text())
    except (OSError, UnicodeDecodeError, yamlfile.YamlProblem):
        return {}
    if not isinstance(doc, yamlfile.YMap):
        return {}
    lines = dict(doc.key_lines)
    backend = doc.get("backend")
    if isinstance(backend, yamlfile.YMap):
        lines.update({f"backend.{k}": v for k, v in backend.key_lines.items()})
    notify = doc.get("notify")
    if isinstance(notify, yamlfile.YList):
        lines.update({f"notify[{i}]": line for i, line in enumerate(notify.item_lines)})
    return lines


def notify_as_written(path: Path) -> dict[int, str]:
    """Each notify target's URL as watcher.yaml writes it, `${VAR}` not expanded (index ->
    URL), for `check`'s warning on credentials typed into the file; {} when unreadable."""
    try:
        doc = yamlfile.load(Path(path).read_text())
    except (OSError, UnicodeDecodeError, yamlfile.YamlProblem):
        return {}
    notify = doc.get("notify") if isinstance(doc, yamlfile.YMap) else None
    if not isinstance(notify, yamlfile.YList):
        return {}
    written = {}
    for i, item in enumerate(notify):
        url = item.get("url") if isinstance(item, yamlfile.YMap) else item
        if isinstance(url, str):
            written[i] = url
    return written
