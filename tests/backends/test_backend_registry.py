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
