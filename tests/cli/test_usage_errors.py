"""Usage errors through the real console entry point: click's usage message and exit 2, never a
traceback (typer 0.28 and 0.29 raise their vendored click's exceptions, which `cli.main` did not catch)."""

from __future__ import annotations

import re

import pytest

from support import run_cli

RULES = "rules:\n  - name: health\n    http: HEALTH_URL\n    failures: 3\n    action: rollback\n"


@pytest.mark.parametrize("args, says", [
    (["nosuch"], "No such command 'nosuch'"),
    (["explain"], "Missing argument"),
    (["history", "-n", "abc"], "Invalid value for '--limit'"),
    (["pause", "--for", "10"], "'10' is not a duration"),
    (["pause", "--for", "2 m"], "no spaces"),
    (["backtest", "--step", "-5s"], "not a duration"),
    (["status", "--jsn"], "Possible options: --json"),
    (["mark", "good", "-rc1"], "No such option: -r"),
    (["history", "-n", "-5"], "Invalid value for '--limit'"),
    (["notify-test", "--severity", "bogus"], "unknown severity 'bogus'"),
])
def test_usage_error_prints_usage_and_exits_2_without_a_traceback(args, says):
    done = run_cli(*args)
    assert done.returncode == 2, done.stderr
    assert "Usage: " in done.stderr and says in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_an_id_that_looks_like_an_option_is_told_about_the_double_dash():
    done = run_cli("mark", "good", "-rc1")
    assert "put it after `--`" in done.stderr and "mark good -- -rc1" in done.stderr


def test_an_id_starting_with_a_dash_is_accepted_after_the_double_dash(symlink_host):
    config = symlink_host.write_config(RULES)
    # A release the backend lists (marks of unknown ids are refused without --force).
    symlink_host.add_release("r1")
    symlink_host.add_release("-rc1")
    symlink_host.deploy("r1")
    done = run_cli("mark", "good", "--config", str(config), "--", "-rc1")
    assert done.returncode == 0, done.stderr
    assert "-rc1 marked good" in done.stdout


def test_bare_command_shows_help_and_exits_2_as_click_does():
    done = run_cli()
    assert done.returncode == 2
    assert "Commands:" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version_flag_prints_the_version(flag):
    from watcher import __version__

    done = run_cli(flag)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"rollback-watcher {__version__}"


def test_durations_with_a_decimal_are_accepted_on_the_command_line(symlink_host):
    config = symlink_host.write_config(RULES)
    done = run_cli("pause", "--for", "1.5m", "--config", str(config))
    assert done.returncode == 0, done.stderr
    [pause] = [e for e in symlink_host.journal() if e["kind"] == "pause"]
    assert pause["until"] - pause["time"] == pytest.approx(90, abs=1)


def test_help_renders_boolean_options_as_flags():
    done = run_cli("status", "--help", env={"COLUMNS": "100"})
    assert done.returncode == 0
    assert "<bool>" not in done.stdout
    assert re.search(r"^\s+--json\s+Print JSON", done.stdout, re.M), done.stdout


def test_help_lists_each_command_on_one_line():
    done = run_cli("--help", env={"COLUMNS": "80"})
    listing = done.stdout.split("Commands:\n", 1)[1].splitlines()
    assert listing, done.stdout
    for line in listing:
        # "  name   summary": a continuation line (hard-wrapped docstring) would start with spaces only
        assert re.match(r"^  [a-z][a-z-]+ +\S", line), line
        assert len(line) <= 80, line
