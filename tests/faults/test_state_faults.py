"""Damaged or unusable state (docs/design.md section 8): the watcher refuses to act, says exactly what
is wrong and how to recover, and never loses the journal. Two watchers on one state dir: the
second refuses to start.

The unwritable-directory and disk-full cases mount a read-only bind and a 64 KiB tmpfs: the
suite runs as root, and root ignores file permissions (a chmod 0500 directory stays writable for
it), so a read-only mount is the only honest "cannot write". Where `mount` is not allowed (an
unprivileged container) those two tests fail and say why: they never skip.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from support import HEALTH_PROBE_RULES, WatcherProcess, wait_for
from support import run_cli as cli  # config paths are absolute: any cwd works
from watcher.base.errors import StateError
from watcher.config.load import load_config
from watcher.service.build import build_watcher


def prepared(host):
    """r1 known-good, r2 deployed and seen, a journal with history."""
    host.add_release("r1")
    host.add_release("r2")
    host.deploy("r2")
    config = host.write_config(HEALTH_PROBE_RULES)
    cli("mark", "good", "r1", "--config", config, check=True)
    w = build_watcher(load_config(config), notify=False)
    w.start()
    w.tick()
    w.reader.close()
    return config


@pytest.mark.parametrize("damage,expected", [
    ("truncated", "is damaged"),
    ("empty", "is damaged"),
    ("not_json", "is damaged"),
    ("future_version", "format version 99"),
])
def test_damaged_state_refuses_to_run_says_how_to_recover_keeps_journal(symlink_host, damage, expected):
    host = symlink_host
    config = prepared(host)
    state_path = host.state_dir / "state.json"
    good = state_path.read_text()
    damaged = {
        "truncated": good[: len(good) // 2],
        "empty": "",
        "not_json": "<html>oops</html>\n",
        "future_version": json.dumps(dict(json.loads(good), version=99)),
    }[damage]
    state_path.write_text(damaged)
    journal_before = (host.state_dir / "journal.jsonl").read_bytes()
    host.add_release("r3")  # would be news to a watcher that ran
    result = cli("run", "--config", config, timeout=30)
    # 78: the unit's RestartPreventExitStatus=, so systemd does not re-read it every RestartSec
    assert result.returncode == 78, result.stdout + result.stderr
    assert expected in result.stderr
    assert f"mv {state_path} {state_path}.bad" in result.stderr  # how to recover
    assert "Traceback" not in result.stderr
    assert (host.state_dir / "journal.jsonl").read_bytes() == journal_before
    assert state_path.read_text() == damaged  # evidence kept, not overwritten
    assert host.current_id() == "r2"
    status = cli("status", "--config", config)
    assert status.returncode == 1 and expected in status.stderr


def test_damaged_journal_line_is_skipped_with_a_warning(symlink_host):
    host = symlink_host
    config = prepared(host)
    journal = host.state_dir / "journal.jsonl"
    shown = json.loads(cli("history", "--config", config, "--json", check=True).stdout)
    lines = journal.read_bytes().splitlines(keepends=True)
    journal.write_bytes(lines[0] + b'{"time": 1, "kind": "trunc\n' + b"\xff\xfe not utf-8\n" + b"".join(lines[1:]))
    result = cli("history", "--config", config, "--json")
    assert result.returncode == 0, result.stderr
    assert "journal line skipped" in result.stderr
    events = json.loads(result.stdout)
    assert events == shown
    # and the service runs on it
    w = build_watcher(load_config(config), notify=False)
    w.start()
    w.tick()
    w.reader.close()


def _mount(*args) -> None:
    r = subprocess.run(["mount", *args], capture_output=True, text=True)
    if r.returncode != 0:
        # A skip would let a machine that cannot mount pass without testing the read-only and
        # full-disk cases: `make test` runs as root (CI does), where mount works.
        pytest.fail(f"mount failed ({r.stderr.strip()}): the read-only and full-disk cases need root "
                    "and mount(8); run `make test` as root", pytrace=False)


def _umount(path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


def test_read_only_state_dir_refuses_to_start(symlink_host):
    host = symlink_host
    config = prepared(host)
    journal_before = (host.state_dir / "journal.jsonl").read_bytes()
    _mount("--bind", str(host.state_dir), str(host.state_dir))
    try:
        _mount("-o", "remount,ro,bind", str(host.state_dir))
        result = cli("run", "--config", config, timeout=30)
    finally:
        _umount(host.state_dir)
    assert result.returncode == 1
    assert result.stderr.startswith("Error: the state dir") and "not writable" in result.stderr
    assert "Traceback" not in result.stderr
    assert (host.state_dir / "journal.jsonl").read_bytes() == journal_before


def test_disk_full_never_switches_and_keeps_journal_and_state(symlink_host, tmp_path):
    """The state dir on a 64 KiB tmpfs, filled up while the watcher runs; then r2 turns
    unhealthy: the journal cannot record an intent, so nothing is switched."""
    host = symlink_host
    host.state_dir.mkdir(parents=True)
    _mount("-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", str(host.state_dir))
    try:
        config = prepared(host)
        journal = host.state_dir / "journal.jsonl"
        before = journal.read_bytes()
        state_before = (host.state_dir / "state.json").read_text()
        filler = host.state_dir / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError:
            pass
        finally:
            os.close(fd)
        (host.releases / "r2" / "health_status").write_text("500\n")
        w = build_watcher(load_config(config), notify=False)
        try:
            w.start()
            w.tick()
        except StateError as exc:
            message = str(exc)
        else:
            message = ""
        finally:
            w.reader.close()
        assert "No space left on device" in message and "Free space in" in message
        assert host.current_id() == "r2"
        assert journal.read_bytes().startswith(before)
        json.loads((host.state_dir / "state.json").read_text())  # the previous state, whole
        assert json.loads((host.state_dir / "state.json").read_text())["current"] == json.loads(state_before)["current"]
        filler.unlink()
    finally:
        _umount(host.state_dir)


def test_second_watcher_on_one_state_dir_refuses(symlink_host, tmp_path):
    host = symlink_host
    config = prepared(host)
    first = WatcherProcess(config, tmp_path / "first.log")
    try:
        wait_for(lambda: host.kinds().count("start") >= 2, timeout=30, what="the first watcher to start")
        second = cli("run", "--config", config, timeout=30)
        assert first.proc.poll() is None
    finally:
        code = first.stop()
    # 78: the unit's RestartPreventExitStatus= (a restart every RestartSec would find it held again)
    assert second.returncode == 78, second.stdout + second.stderr
    assert second.stderr.startswith("Error: another watcher runs on")
    assert f"PID {first.proc.pid} (`" in second.stderr  # who holds it, and its command line
    assert code == 0
    assert host.kinds().count("start") == 2  # prepared() + the first; the second never started


@pytest.mark.parametrize("poison", ["nan", "inf"])
def test_a_state_holding_a_time_that_is_not_finite_refuses_with_one_line_not_a_typeerror(symlink_host, poison):
    """What `mark deployed --at nan` left before it was refused: NaN written as the string "nan"
    (state.json is strict JSON). Every start then died in a comparison with a TypeError."""
    host = symlink_host
    config = prepared(host)
    state_path = host.state_dir / "state.json"
    state = json.loads(state_path.read_text())
    state["deployed_at"] = state["window_ends"] = poison
    state["releases"]["r2"]["window_ends"] = poison
    state_path.write_text(json.dumps(state))
    for command, code in (("run", 78), ("status", 1)):
        result = cli(command, "--config", config, timeout=30)
        assert result.returncode == code, result.stdout + result.stderr
        assert "Traceback" not in result.stderr and "TypeError" not in result.stderr
        assert f"deployed_at='{poison}'" in result.stderr and "not finite" in result.stderr
        assert f"mv {state_path} {state_path}.bad" in result.stderr
    assert host.current_id() == "r2"


@pytest.mark.parametrize("field", ["changed_at", "deployed_at"])
def test_every_saved_moment_is_checked_for_a_time_that_is_not_finite(symlink_host, field):
    """The list of saved moments the load checks is the one the clock shifts (clock.py): a
    `changed_at` of "nan" (when `current` last changed: every `[$window]` counts from it) once
    passed the check and started a watcher whose windows never held."""
    host = symlink_host
    config = prepared(host)
    state_path = host.state_dir / "state.json"
    state = json.loads(state_path.read_text())
    state[field] = "nan"
    state_path.write_text(json.dumps(state))
    result = cli("status", "--config", config, timeout=30)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert f"{field}='nan'" in result.stderr and "not finite" in result.stderr


def test_second_watcher_with_another_state_dir_on_the_same_current_refuses_and_names_the_pid(symlink_host, tmp_path):
    """Issue 16: the instance lock is per watched host (the backend's identity), not per state
    dir. The second config reaches the same `current` through a symlinked directory."""
    host = symlink_host
    config = prepared(host)
    alias = tmp_path / "alias"
    alias.symlink_to(host.root)
    other = json.loads(config.read_text())
    other["state_dir"] = str(tmp_path / "other-state")
    other["backend"] = dict(other["backend"], current=str(alias / "current"), releases=str(alias / "releases"))
    other_config = tmp_path / "other.yaml"
    other_config.write_text(json.dumps(other))

    first = WatcherProcess(config, tmp_path / "first.log")
    try:
        wait_for(lambda: host.kinds().count("start") >= 2, timeout=30, what="the first watcher to start")
        second = cli("run", "--config", other_config, timeout=30)
        manual = cli("mark", "good", "r2", "--config", other_config, timeout=30)
        assert first.proc.poll() is None
    finally:
        code = first.stop()
    assert second.returncode == 78, second.stdout + second.stderr
    assert f"another watcher (PID {first.proc.pid})" in second.stderr and str(host.current) in second.stderr
    assert "Traceback" not in second.stderr
    assert manual.returncode == 1 and f"PID {first.proc.pid}" in manual.stderr
    assert code == 0
    assert not (tmp_path / "other-state" / "journal.jsonl").exists() or \
        "start" not in (tmp_path / "other-state" / "journal.jsonl").read_text()

    # The lock goes with its holder: now the second one runs.
    second_run = WatcherProcess(other_config, tmp_path / "second.log")
    try:
        wait_for(lambda: (tmp_path / "other-state" / "journal.jsonl").exists()
                 and '"start"' in (tmp_path / "other-state" / "journal.jsonl").read_text(),
                 timeout=30, what="the second watcher to start once the first stopped")
    finally:
        assert second_run.stop() == 0
