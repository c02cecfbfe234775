"""Manual commands through the real console entry point, on a sandbox symlink host whose
releases serve a real health endpoint: rollback (same path as the automatic one), releases,
mark. The service is not running, so each command takes the instance lock and acts itself."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from support import run_cli

REPO = Path(__file__).resolve().parents[2]


def cli(*args, **kwargs):
    kwargs.setdefault("cwd", REPO)
    return run_cli(*args, **kwargs)

RULES = "rules:\n  - name: health\n    http: HEALTH_URL\n    failures: 3\n    action: rollback\n"


@pytest.fixture
def host(symlink_host, tmp_path):
    for rid in ("r1", "r2", "r3"):
        symlink_host.add_release(rid)
    symlink_host.deploy("r3")
    return symlink_host


def config(host, tmp_path, restart_exit=0, **extra):
    """A config whose restart argv is a real script that records its calls."""
    script = tmp_path / "restart.sh"
    script.write_text(f"#!/bin/sh\necho restarted >> {tmp_path}/restarts\nexit {restart_exit}\n")
    script.chmod(0o755)
    backend = {"type": "symlink", "releases": str(host.releases), "current": str(host.current),
               "restart": [str(script)]}
    return host.write_config(RULES, backend=backend, **extra)


def restarts(tmp_path) -> int:
    path = tmp_path / "restarts"
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_rollback_yes_switches_to_the_previous_known_good_restarts_verifies_and_exits_0(host, tmp_path):
    cfg = config(host, tmp_path)
    cli("mark", "good", "r1", "--config", cfg, check=True)
    result = cli("rollback", "--yes", "--config", cfg)
    assert result.returncode == 0, result.stderr
    assert "plan: roll back r3 -> r1" in result.stdout and "rolled_back" in result.stdout
    assert host.current_id() == "r1" and restarts(tmp_path) == 1
    intent = next(e for e in host.journal() if e["kind"] == "rollback_intent")
    assert intent["manual"] is True and intent["target"] == "r1"
    assert "rollback_verified" in host.kinds()


def test_rollback_with_no_known_good_target_exits_1_with_one_line_and_changes_nothing(host, tmp_path):
    cfg = config(host, tmp_path)
    result = cli("rollback", "--yes", "--config", cfg)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no known-good release older than r3" in lines[0]
    assert host.current_id() == "r3" and restarts(tmp_path) == 0
    assert "rollback_intent" not in host.kinds()


@pytest.mark.parametrize("target", ["../../etc", "r1/../../etc", "/etc", "r\x01"])
def test_rollback_to_a_path_trick_is_refused_with_one_line(host, tmp_path, target):
    cfg = config(host, tmp_path)
    result = cli("rollback", "--to", target, "--yes", "--config", cfg)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: release id")
    assert host.current_id() == "r3" and restarts(tmp_path) == 0


def test_a_release_dir_named_with_a_control_character_is_never_listed_or_followed(host, tmp_path):
    (host.releases / "r9\x1b[31m").mkdir()
    cfg = config(host, tmp_path)
    out = cli("releases", "--json", "--config", cfg)
    assert out.returncode == 0, out.stderr
    assert [r["id"] for r in json.loads(out.stdout)] == ["r3", "r2", "r1"]


def test_failed_restart_leaves_a_journal_record_a_nonzero_exit_and_deletes_nothing(host, tmp_path):
    cfg = config(host, tmp_path, restart_exit=3)
    cli("mark", "good", "r1", "--config", cfg, check=True)
    result = cli("rollback", "--yes", "--config", cfg)
    assert result.returncode == 1
    failed = next(e for e in host.journal() if e["kind"] == "rollback_failed")
    assert "restart failed" in failed["reason"]
    assert sorted(p.name for p in host.releases.iterdir()) == ["r1", "r2", "r3"]


def test_failed_verification_leaves_a_journal_record_and_a_nonzero_exit(host, tmp_path):
    (host.releases / "r1" / "health_status").write_text("503")
    cfg = config(host, tmp_path, verify={"url": host.health_url, "attempts": 2, "every": "100ms"})
    cli("mark", "good", "r1", "--config", cfg, check=True)
    result = cli("rollback", "--yes", "--config", cfg)
    assert result.returncode == 1 and "verify_failed" in result.stdout
    assert "verify_failed" in host.kinds()
    assert sorted(p.name for p in host.releases.iterdir()) == ["r1", "r2", "r3"]


def test_without_yes_it_shows_the_plan_and_asks_and_no_changes_nothing(host, tmp_path):
    cfg = config(host, tmp_path)
    cli("mark", "good", "r1", "--config", cfg, check=True)
    result = subprocess.run([sys.executable, "-m", "watcher", "rollback", "--config", str(cfg)], input="n\n",
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "plan: roll back r3 -> r1" in result.stdout and "Roll back now?" in result.stdout
    assert host.current_id() == "r3" and restarts(tmp_path) == 0


def test_dry_run_checks_the_target_and_changes_nothing(host, tmp_path):
    cfg = config(host, tmp_path)
    cli("mark", "good", "r1", "--config", cfg, check=True)
    result = cli("rollback", "--dry-run", "--config", cfg)
    assert result.returncode == 0 and "dry run" in result.stdout
    assert host.current_id() == "r3" and restarts(tmp_path) == 0
    assert "rollback_intent" not in host.kinds()


def test_releases_shows_marks_and_the_current_one(host, tmp_path):
    cfg = config(host, tmp_path)
    cli("mark", "good", "r1", "--config", cfg, check=True)
    cli("mark", "bad", "r2", "--config", cfg, check=True)
    cli("mark", "barrier", "r2", "--config", cfg, check=True)
    rows = {r["id"]: r for r in json.loads(cli("releases", "--json", "--config", cfg, check=True).stdout)}
    assert rows["r3"]["current"] and rows["r1"]["mark"] == "good"
    assert rows["r2"]["mark"] == "bad" and rows["r2"]["barrier"]
    text = cli("releases", "--config", cfg, check=True).stdout
    assert "* r3" in text


def test_default_target_never_crosses_a_barrier(host, tmp_path):
    cfg = config(host, tmp_path)
    cli("mark", "good", "r1", "--config", cfg, check=True)
    cli("mark", "barrier", "r2", "--config", cfg, check=True)
    result = cli("rollback", "--yes", "--config", cfg)
    assert result.returncode == 1 and "r2 is a barrier" in result.stderr
    assert host.current_id() == "r3"


# ---------------------------------------------------------------------------------------------
# Marks are checked against the host (issue 13): a typo must not become a rollback target, and
# a deploy time that is not a finite past moment must never reach the state.


def _marks(host) -> list[dict]:
    return [e for e in host.journal() if e["kind"] == "mark"]


@pytest.mark.parametrize("mark", [("good",), ("bad",), ("barrier",)])
def test_mark_of_a_release_the_backend_does_not_list_is_refused_with_one_line(host, tmp_path, mark):
    cfg = config(host, tmp_path)
    result = cli("mark", *mark, "r4", "--config", cfg)
    assert result.returncode == 1, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "r4 is not a release this host has" in lines[0] and "--force" in lines[0]
    assert _marks(host) == []
    rows = json.loads(cli("releases", "--json", "--config", cfg, check=True).stdout)
    assert "r4" not in [r["id"] for r in rows]


def test_mark_good_with_force_records_a_release_not_deployed_yet(host, tmp_path):
    cfg = config(host, tmp_path)
    result = cli("mark", "good", "r4", "--force", "--config", cfg)
    assert result.returncode == 0, result.stderr
    assert [(e["release"], e["mark"]) for e in _marks(host)] == [("r4", "good")]


def test_mark_deployed_of_a_release_that_is_not_current_is_refused_unless_forced(host, tmp_path):
    cfg = config(host, tmp_path)
    result = cli("mark", "deployed", "r1", "--config", cfg)
    assert result.returncode == 1
    assert "r1 is not the current release (r3 is)" in result.stderr
    assert "deploy" not in host.kinds()
    forced = cli("mark", "deployed", "r1", "--force", "--config", cfg)
    assert forced.returncode == 0, forced.stderr
    assert [e["release"] for e in host.journal() if e["kind"] == "deploy"] == ["r1"]


@pytest.mark.parametrize("at", ["nan", "inf", "-inf", "0", "9999999999"])
def test_mark_deployed_at_a_time_that_is_not_a_finite_past_moment_is_refused(host, tmp_path, at):
    cfg = config(host, tmp_path)
    result = cli("mark", "deployed", "r3", "--at", at, "--force", "--config", cfg)
    assert result.returncode == 1, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: --at") and "Traceback" not in result.stderr
    assert "deploy" not in host.kinds()
    status = cli("status", "--json", "--config", cfg)
    assert status.returncode == 0, status.stderr  # the state is still readable
