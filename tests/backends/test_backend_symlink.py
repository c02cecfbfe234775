"""The symlink backend against real directories, symlinks and restart commands."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from watcher.backends.base import Release
from watcher.backends.symlink import SymlinkBackend
from watcher.base.errors import RollbackError, UnsafeReleaseId

PY = sys.executable


def make_release(root: Path, release_id: str, mtime: float | None = None) -> Path:
    path = root / "releases" / release_id
    path.mkdir(parents=True)
    (path / "app.py").write_text(f"VERSION = {release_id!r}\n")
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """releases/1, 2, 3 with `current` -> releases/3 (absolute, as Capistrano writes it)."""
    for rid in ("1", "2", "3"):
        make_release(tmp_path, rid)
    os.symlink(tmp_path / "releases" / "3", tmp_path / "current")
    return tmp_path


def backend(site: Path, **options) -> SymlinkBackend:
    return SymlinkBackend(releases=site / "releases", current=site / "current", **options)


def ids(releases: list[Release]) -> list[str]:
    return [r.id for r in releases]


# --- listing -------------------------------------------------------------------------------


def test_releases_are_listed_newest_first_by_their_mtime_never_by_name(tmp_path):
    # git-SHA names sort in no useful order; so do "9" and "10" as text. The directory's mtime is
    # its creation time (the watcher's own deploy timeline comes first: decide.order_releases).
    make_release(tmp_path, "f3a9c1e", mtime=1000)
    make_release(tmp_path, "0b7d2aa", mtime=3000)
    make_release(tmp_path, "c41e9f0", mtime=2000)
    make_release(tmp_path, "10", mtime=500)
    make_release(tmp_path, "9", mtime=400)
    releases = backend(tmp_path).releases()
    assert ids(releases) == ["0b7d2aa", "c41e9f0", "f3a9c1e", "10", "9"]
    assert [r.created for r in releases] == [3000, 2000, 1000, 500, 400]


def test_listing_skips_unsafe_names_symlinks_files_and_hidden_dirs_with_warnings(tmp_path, caplog):
    make_release(tmp_path, "1")
    make_release(tmp_path, "bad\x01name")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "x").write_text("x")
    os.symlink(outside, tmp_path / "releases" / "2")
    (tmp_path / "releases" / "notes.txt").write_text("not a release")
    make_release(tmp_path, ".prune-0-abc")
    with caplog.at_level(logging.WARNING, logger="watcher.backends.symlink"):
        assert ids(backend(tmp_path).releases()) == ["1"]
    assert "control character" in caplog.text
    assert "a symlink is not a release" in caplog.text


def test_listing_a_missing_releases_dir_raises_rollback_error(tmp_path):
    with pytest.raises(RollbackError, match="cannot list"):
        backend(tmp_path).releases()


# --- current -------------------------------------------------------------------------------


def test_current_is_the_release_the_link_points_to(site):
    current = backend(site).current()
    assert current.id == "3"
    assert current.location == str((site / "releases" / "3").resolve())


def test_current_follows_a_relative_link(site):
    (site / "current").unlink()
    os.symlink("releases/2", site / "current")
    assert backend(site).current().id == "2"


def test_current_pointing_outside_releases_raises(site):
    (site / "current").unlink()
    os.symlink("/tmp", site / "current")
    with pytest.raises(RollbackError, match="not to a release directory inside"):
        backend(site).current()


def test_current_missing_or_dangling_raises(site):
    (site / "current").unlink()
    with pytest.raises(RollbackError, match="cannot resolve"):
        backend(site).current()
    os.symlink(site / "releases" / "gone", site / "current")
    with pytest.raises(RollbackError, match="cannot resolve"):
        backend(site).current()


def test_current_that_is_a_plain_directory_raises(tmp_path):
    make_release(tmp_path, "1")
    (tmp_path / "current").mkdir()
    with pytest.raises(RollbackError, match="not a symlink"):
        backend(tmp_path).current()


# --- preflight -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "error", "message"),
    [
        ("9", RollbackError, "does not exist"),
        ("../../etc", UnsafeReleaseId, "path separator"),
        ("..", UnsafeReleaseId, "relative path"),
        ("bad\x1bname", UnsafeReleaseId, "control character"),
        ("", UnsafeReleaseId, "empty"),
    ],
)
def test_preflight_refuses_missing_and_unsafe_ids(site, target, error, message):
    with pytest.raises(error, match=message):
        backend(site).preflight(Release(target))


def test_preflight_refuses_an_empty_release_dir(site):
    (site / "releases" / "4").mkdir()
    with pytest.raises(RollbackError, match="is empty"):
        backend(site).preflight(Release("4"))


def test_preflight_refuses_a_file_in_place_of_a_release_dir(site):
    (site / "releases" / "4").write_text("x")
    with pytest.raises(RollbackError, match="not a directory"):
        backend(site).preflight(Release("4"))


def test_preflight_refuses_a_symlinked_release_pointing_outside(site, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside")
    (outside / "app.py").write_text("evil")
    os.symlink(outside, site / "releases" / "4")
    with pytest.raises(RollbackError, match="is a symlink"):
        backend(site).preflight(Release("4"))


def test_preflight_accepts_a_whole_release(site):
    backend(site).preflight(Release("2"))


# --- switch --------------------------------------------------------------------------------


def test_switch_moves_current_and_runs_restart(site):
    marker = site / "restarted"
    restart = (PY, "-c", f"open({str(marker)!r}, 'w').write('ok'); print('reloaded')")
    output = backend(site, restart=restart).switch(Release("1"), reason="5xx ratio")
    assert os.readlink(site / "current") == str(site / "releases" / "1")
    assert backend(site).current().id == "1"
    assert marker.read_text() == "ok"
    assert "reloaded" in output
    assert not [p for p in site.iterdir() if p.name.startswith(".current")], "temp link left behind"


def test_switch_keeps_a_relative_link_relative(site):
    (site / "current").unlink()
    os.symlink("releases/3", site / "current")
    backend(site).switch(Release("2"))
    assert os.readlink(site / "current") == "releases/2"


def test_switch_to_an_unsafe_or_missing_target_leaves_current_untouched(site):
    for target in ("../../etc", "9"):
        with pytest.raises(RollbackError):
            backend(site).switch(Release(target))
        assert backend(site).current().id == "3"


def test_failed_restart_runs_fallback_and_succeeds(site):
    marker = site / "fallback-ran"
    restart = (PY, "-c", "import sys; print('reload refused'); sys.exit(1)")
    fallback = (PY, "-c", f"open({str(marker)!r}, 'w').write('ok'); print('restarted')")
    output = backend(site, restart=restart, restart_fallback=fallback).switch(Release("2"))
    assert marker.exists()
    assert "reload refused" in output and "restarted" in output
    assert backend(site).current().id == "2"


def test_restart_and_fallback_both_failing_raise_saying_the_link_moved(site):
    restart = (PY, "-c", "import sys; print('reload refused'); sys.exit(1)")
    fallback = (PY, "-c", "import sys; print('restart refused'); sys.exit(3)")
    with pytest.raises(RollbackError) as caught:
        backend(site, restart=restart, restart_fallback=fallback).switch(Release("2"))
    assert caught.value.reason.startswith("switched current to 2 but restart failed")
    assert "exited 3" in caught.value.reason
    assert "reload refused" in caught.value.output and "restart refused" in caught.value.output
    assert backend(site).current().id == "2"


def test_restart_that_hangs_is_killed_at_the_timeout(site):
    restart = (PY, "-c", "import time; time.sleep(30)")
    started = time.monotonic()
    with pytest.raises(RollbackError, match="timed out"):
        backend(site, restart=restart, restart_timeout=0.5).switch(Release("2"))
    assert time.monotonic() - started < 10


def test_restart_that_cannot_start_is_a_failed_restart(site):
    with pytest.raises(RollbackError, match="but restart failed"):
        backend(site, restart=("/nonexistent/reload",)).switch(Release("2"))


def test_current_is_never_missing_for_another_process_during_500_switches(site):
    """A reader in another process, in a tight loop, never sees `current` missing or dangling."""
    stop, ready, result = site / "stop", site / "ready", site / "result"
    reader = textwrap.dedent(
        f"""
        import os
        link, stop = {str(site / "current")!r}, {str(stop)!r}
        reads = misses = 0
        open({str(ready)!r}, "w").close()
        while not os.path.exists(stop):
            for _ in range(200):
                reads += 1
                try:
                    os.readlink(link)
                    if not os.path.exists(link):
                        misses += 1
                except OSError:
                    misses += 1
        open({str(result)!r}, "w").write(f"{{reads}} {{misses}}")
        """
    )
    proc = subprocess.Popen([PY, "-c", reader])
    try:
        deadline = time.monotonic() + 10
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert ready.exists(), "reader did not start"
        b = backend(site)
        for i in range(500):
            b.switch(Release(("1", "2", "3")[i % 3]))
        stop.touch()
        proc.wait(timeout=10)
    finally:
        proc.kill()
        proc.wait()
    reads, misses = map(int, result.read_text().split())
    assert reads > 1000
    assert misses == 0


# --- prune ---------------------------------------------------------------------------------


def test_prune_without_keep_removes_nothing(site):
    assert backend(site).prune(set()) == []
    assert ids(backend(site).releases()) == ["3", "2", "1"]


def test_prune_removes_old_releases_but_never_current_or_protected(tmp_path):
    for rid in range(1, 9):
        make_release(tmp_path, str(rid))
    os.symlink(tmp_path / "releases" / "1", tmp_path / "current")  # rolled back to the oldest
    removed = backend(tmp_path, keep=3).prune(protected={"3"})
    assert sorted(removed) == ["2", "4", "5"]
    assert ids(backend(tmp_path).releases()) == ["8", "7", "6", "3", "1"]
    assert not [p for p in (tmp_path / "releases").iterdir() if p.name.startswith(".")]


def test_prune_refuses_when_current_cannot_be_read(site):
    (site / "current").unlink()
    with pytest.raises(RollbackError):
        backend(site, keep=1).prune(set())
    assert ids(backend(site).releases()) == ["3", "2", "1"]


def test_prune_never_follows_a_symlink_out_of_releases(site, tmp_path_factory):
    outside = tmp_path_factory.mktemp("precious")
    (outside / "data").write_text("keep me")
    os.symlink(outside, site / "releases" / "0")
    backend(site, keep=1).prune(set())
    assert (outside / "data").read_text() == "keep me"
