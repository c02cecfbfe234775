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

__all__ = ["BACKENDS", "Backend", "Release", "build_backend", "check_release_id"]


def build_backend(type_name: str, options: dict) -> Backend:
    """The backend for a validated `backend:` mapping (its `type` taken out). Raises KeyError
    for an unknown type and ValueError for options a backend cannot work with."""
    return BACKENDS[type_name](**options)
