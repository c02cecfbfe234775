"""The rollback backends, by the name `backend.type` gives them in watcher.yaml."""

from __future__ import annotations

from watcher.backends.base import Backend, Release, check_release_id
from watcher.backends.command import CommandBackend
from watcher.backends.docker import DockerBackend
from watcher.backends.nginx import NginxBlueGreenBackend
from watcher.backends.symlink import SymlinkBackend

BACKENDS = {
    "symlink": SymlinkBackend,
    "nginx-bluegreen": NginxBlueGreenBackend,
    "docker": DockerBackend,
    "command": CommandBackend,
}

__all__ = ["BACKENDS", "Backend", "Release", "build_backend", "check_release_id", "host_identity", "identity_of"]


def build_backend(type_name: str, options: dict) -> Backend:
    """The backend for a validated `backend:` mapping (its `type` taken out). Raises KeyError
    for an unknown type and ValueError for options a backend cannot work with."""
    return BACKENDS[type_name](**options)


def host_identity(type_name: str, options: dict) -> str:
    """What a backend acts on, as one string: two watchers with the same identity would switch
    the same thing, whatever their state dirs (the instance lock is keyed by it). Paths are
    resolved, so `/srv/app/current` and a symlinked `/home/deploy/app/current` are one host."""
    import json
    import os

    def real(path) -> str:
        # `current` itself is a symlink to a release: resolve its directory, keep its name.
        path = os.fspath(path)
        return os.path.join(os.path.realpath(os.path.dirname(path) or "."), os.path.basename(path))

    if type_name == "symlink":
        return f"symlink:{real(options['current'])}"
    if type_name == "nginx-bluegreen":
        return f"nginx-bluegreen:{os.path.realpath(options['upstream_file'])}"
    if type_name == "docker":
        # The docker argv may name another daemon (`docker -H ...`): part of which host it is.
        return f"docker:{json.dumps(list(options.get('docker') or ['docker']))}:{options['container']}"
    if type_name == "command":
        return f"command:{json.dumps(list(options['switch']))}"
    raise KeyError(type_name)


def identity_of(backend_config) -> str | None:
    """host_identity of a `backend:` section (config.BackendConfig), None without one."""
    return host_identity(backend_config.type, backend_config.options) if backend_config is not None else None
