"""The command backend against real scripts (bash files written by the tests).

The backend itself never uses a shell: the scripts are executables run by argv.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from watcher.backends.base import Release
from watcher.backends.command import CommandBackend
from watcher.base.errors import RollbackError, UnsafeReleaseId
from watcher.base.process import OUTPUT_LIMIT


def script(path: Path, body: str) -> str:
    path.write_text("#!/bin/bash\nset -eu\n" + body)
    path.chmod(0o755)
    return str(path)


@pytest.fixture
def host(tmp_path: Path) -> Path:
    """A tiny host: `state/current` names the release, `state/releases` lists them newest first.
    The switch script records its argv (one JSON list) and environment, then moves `current`."""
    state = tmp_path / "state"
    state.mkdir()
    (state / "current").write_text("r3\n")
    (state / "releases").write_text("r3\nr2\nr1\n")
    script(tmp_path / "current.sh", f'cat "{state}/current"\n')
    script(tmp_path / "releases.sh", f'echo "listing releases" >&2\ncat "{state}/releases"\n')
    (tmp_path / "record.py").write_text(
        "import json, os, sys\n"
        "env = {k: v for k, v in os.environ.items() if k.startswith('WATCHER_')}\n"
        "json.dump({'argv': sys.argv[2:], 'env': env}, open(sys.argv[1], 'w'))\n"
    )
    script(
        tmp_path / "switch.sh",
        f"""python3 "{tmp_path}/record.py" "{state}/switch.json" "$@"
echo "$WATCHER_TARGET" > "{state}/current"
echo "switched to $WATCHER_TARGET"
""",
    )
    return tmp_path


def backend(host: Path, **options) -> CommandBackend:
    defaults = dict(
        current=(str(host / "current.sh"),),
        releases=(str(host / "releases.sh"),),
        switch=(str(host / "switch.sh"), "--to", "{target}", "--to={target}"),
    )
    defaults.update(options)
    return CommandBackend(**defaults)


def test_current_and_releases_come_from_the_scripts_stdout_only(host):
    b = backend(host)
    assert b.current().id == "r3"
    assert [r.id for r in b.releases()] == ["r3", "r2", "r1"]  # "listing releases" went to stderr


def test_switch_substitutes_target_as_one_element_and_passes_the_environment(host):
    output = backend(host).switch(Release("r1"), reason="http-5xx-ratio fired")
    recorded = json.loads((host / "state" / "switch.json").read_text())
    assert recorded["argv"] == ["--to", "r1", "--to=r1"]
    assert recorded["env"] == {
        "WATCHER_TARGET": "r1",
        "WATCHER_CURRENT": "r3",
        "WATCHER_REASON": "http-5xx-ratio fired",
    }
    assert "switched to r1" in output
    assert backend(host).current().id == "r1"


def test_an_id_with_shell_syntax_stays_one_argv_element_and_runs_nothing(host):
    # `;` and spaces are legal in an id (check_release_id refuses only what escapes a path);
    # with no shell anywhere they are just characters.
    evil = "r0; touch pwned $(touch pwned2)"
    (host / "state" / "releases").write_text(f"r3\n{evil}\n")
    backend(host).switch(Release(evil))
    recorded = json.loads((host / "state" / "switch.json").read_text())
    assert recorded["argv"] == ["--to", evil, f"--to={evil}"]
    assert recorded["env"]["WATCHER_TARGET"] == evil
    assert not list(host.rglob("pwned*"))


def test_an_id_that_would_escape_a_path_is_refused_before_any_script_runs(host):
    for bad in ("a;rm -rf /x", "../../etc", "r1\nr2"):
        with pytest.raises(UnsafeReleaseId):
            backend(host).switch(Release(bad))
    assert not (host / "state" / "switch.json").exists()


def test_unsafe_ids_printed_by_the_releases_script_are_skipped(host, caplog):
    (host / "state" / "releases").write_text("r3\n../../etc\nr\x1b[31m\nr1\n")
    assert [r.id for r in backend(host).releases()] == ["r3", "r1"]
    assert "path separator" in caplog.text and "control character" in caplog.text


def test_an_unsafe_current_id_is_refused(host):
    (host / "state" / "current").write_text("../../etc\n")
    with pytest.raises(UnsafeReleaseId, match="path separator"):
        backend(host).current()


def test_a_current_script_printing_several_lines_is_refused(host):
    (host / "state" / "current").write_text("r3\nr2\n")
    with pytest.raises(RollbackError, match="printed 2 lines"):
        backend(host).current()


def test_a_target_the_releases_script_does_not_list_is_refused(host):
    with pytest.raises(RollbackError, match="not listed"):
        backend(host).switch(Release("r9"))
    assert not (host / "state" / "switch.json").exists()


def test_a_failing_preflight_script_stops_the_switch_with_its_output(host):
    pre = script(host / "pre.sh", 'echo "release $1 has no venv"\nexit 1\n')
    with pytest.raises(RollbackError, match="cannot preflight r1") as caught:
        backend(host, preflight=(pre, "{target}")).switch(Release("r1"))
    assert "release r1 has no venv" in caught.value.output
    assert not (host / "state" / "switch.json").exists()


def test_a_passing_preflight_script_lets_the_switch_run(host):
    pre = script(host / "pre.sh", 'test "$1" = "$WATCHER_TARGET"\n')
    backend(host, preflight=(pre, "{target}")).switch(Release("r2"))
    assert backend(host).current().id == "r2"


def test_a_failing_switch_raises_with_stdout_and_stderr(host):
    sw = script(host / "bad-switch.sh", 'echo "stopping app"\necho "disk full" >&2\nexit 4\n')
    with pytest.raises(RollbackError, match="exited 4") as caught:
        backend(host, switch=(sw, "{target}")).switch(Release("r2"))
    assert "stopping app" in caught.value.output and "disk full" in caught.value.output


def test_a_hanging_switch_is_killed_at_the_timeout_with_its_children(host):
    pidfile = host / "child.pid"
    sw = script(host / "hang.sh", f'sleep 60 &\necho $! > "{pidfile}"\nwait\n')
    started = time.monotonic()
    with pytest.raises(RollbackError, match="timed out"):
        backend(host, switch=(sw,), timeout=0.5).switch(Release("r2"))
    assert time.monotonic() - started < 10
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child), "the script's child survived the timeout"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by init) is dead for our purpose.
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "zombie" not in status.read_text()


def test_a_chatty_switch_output_is_truncated(host):
    sw = script(host / "chatty.sh", 'head -c 200000 /dev/zero | tr "\\0" x\necho\necho "the end"\n')
    output = backend(host, switch=(sw,)).switch(Release("r2"))
    assert len(output) < OUTPUT_LIMIT + 200
    assert "characters cut" in output
    assert output.rstrip().endswith("the end")


def test_a_missing_script_is_a_clear_rollback_error(host):
    with pytest.raises(RollbackError, match="cannot start"):
        backend(host, current=(str(host / "nope.sh"),)).current()


def test_switch_still_runs_when_the_current_script_fails(host):
    (host / "state" / "current").unlink()
    backend(host).switch(Release("r1"))
    recorded = json.loads((host / "state" / "switch.json").read_text())
    assert recorded["env"]["WATCHER_CURRENT"] == ""
