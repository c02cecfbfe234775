"""The registry the config loader builds backends from."""

from pathlib import Path

import pytest

from watcher.backends import BACKENDS, build_backend
from watcher.backends.symlink import SymlinkBackend


def test_every_type_of_the_design_is_registered():
    assert set(BACKENDS) == {"symlink", "nginx-bluegreen", "docker", "command"}


def test_build_backend_passes_the_options_as_keywords(tmp_path: Path):
    b = build_backend("symlink", {"releases": tmp_path / "releases", "current": tmp_path / "current", "keep": 3})
    assert isinstance(b, SymlinkBackend) and b.keep == 3


def test_build_backend_refuses_an_unknown_type_and_bad_options(tmp_path: Path):
    with pytest.raises(KeyError):
        build_backend("ftp", {})
    with pytest.raises(ValueError):
        build_backend("symlink", {"releases": tmp_path, "current": tmp_path / "current", "keep": 0})


def test_host_identity_is_what_the_backend_acts_on_whatever_the_spelling(tmp_path: Path):
    """The instance lock's key (issue 16): one `current` reached through a symlinked directory
    is one host; another container, upstream file or switch command is another."""
    from watcher.backends import host_identity

    (tmp_path / "app").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "app")
    assert host_identity("symlink", {"current": tmp_path / "app" / "current"}) == \
        host_identity("symlink", {"current": tmp_path / "alias" / "current"})
    assert host_identity("symlink", {"current": tmp_path / "app" / "current"}) != \
        host_identity("symlink", {"current": tmp_path / "app" / "current2"})
    assert host_identity("docker", {"container": "shop"}) != host_identity("docker", {"container": "blog"})
    assert host_identity("docker", {"container": "shop"}) != \
        host_identity("docker", {"container": "shop", "docker": ("docker", "-H", "tcp://10.0.0.2:2375")})
    assert host_identity("nginx-bluegreen", {"upstream_file": tmp_path / "alias" / "up.conf"}) == \
        host_identity("nginx-bluegreen", {"upstream_file": tmp_path / "app" / "up.conf"})
    assert host_identity("command", {"switch": ("deploy", "{target}")}) != \
        host_identity("command", {"switch": ("deploy2", "{target}")})
