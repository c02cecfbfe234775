"""The rollback backends, by the name `backend.type` gives them in watcher.yaml."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from watcher.backends.base import Backend, BackendType, Release, check_release_id
from watcher.backends.command import CommandBackend
from watcher.backends.docker import DockerBackend
from watcher.backends.nginx import NginxBlueGreenBackend
from watcher.backends.symlink import SymlinkBackend

BACKENDS: dict[str, BackendType] = {
    "symlink": SymlinkBackend,
    "nginx-bluegreen": NginxBlueGreenBackend,
    "docker": DockerBackend,
    "command": CommandBackend,
}

__all__ = ["BACKENDS", "Backend", "Release", "build_backend", "check_release_id", "host_identity", "identity_of"]


def build_backend(type_name: str, options: Mapping[str, Any]) -> Backend:
    """The backend for a validated `backend:` mapping (its `type` taken out). Raises KeyError
    for an unknown type and ValueError for options a backend cannot work with."""
    return BACKENDS[type_name](**options)


def host_identity(type_name: str, options: Mapping[str, Any]) -> str:
    """What a backend acts on, as one string: two watchers with the same identity would switch
    the same thing, whatever their state dirs (the instance lock is keyed by it). Paths are
    resolved, so `/srv/app/current` and a symlinked `/home/deploy/app/current` are one host.
    Each backend says what it acts on (its `identity`)."""
    return BACKENDS[type_name].identity(options)


class BackendSection(Protocol):
    """A `backend:` section as config.schema.BackendConfig holds it (config/ is above us)."""

    @property
    def type(self) -> str: ...

    @property
    def options(self) -> Mapping[str, Any]: ...


def identity_of(backend_config: BackendSection | None) -> str | None:
    """host_identity of a `backend:` section (config.BackendConfig), None without one."""
    return host_identity(backend_config.type, backend_config.options) if backend_config is not None else None
