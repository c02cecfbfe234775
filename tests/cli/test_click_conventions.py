"""The CLI as a well-kept click tool reads (issue 24): `Error: ...` on stderr without a Python
class name, metavars that say what a value is (FILE, DURATION, RELEASE), shell completion for
bash, zsh and fish, and `status`/`eval` that ask the backend which release is current when the
service is not running. Through the real console script, in subprocesses."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from support import run_cli
from watcher.core.rules import Phase, RuleState
from watcher.store.state import StateStore

RULES = "rules:\n  - name: health\n    http: HEALTH_URL\n    failures: 3\n    action: rollback\n"
SCRIPT = Path(sys.executable).parent / "rollback-watcher"  # the console script: completion keys on its name


def commands():
    """(path, click command) of every command the CLI has, groups walked."""
    from typer.main import get_command

    from watcher.cli.app import app

    todo = [((), get_command(app))]
    while todo:
        path, cmd = todo.pop()
        subs = getattr(cmd, "commands", None)
        if subs:
            todo += [((*path, name), sub) for name, sub in subs.items()]
        else:
            yield " ".join(path), cmd


def test_every_commands_help_names_its_values_as_click_tools_do():
    import typer

    found = {}
    for path, cmd in commands():
        ctx = typer.Context(cmd, info_name=path or "rollback-watcher")
        text = cmd.get_help(ctx)
        bad = re.findall(r"<[a-z][a-z ]*>|\{[A-Za-z_]+\}", text)  # typer's <str>, <int range>, {file}
        if bad:
            found[path] = bad
    assert not found, found
    assert len(list(commands())) >= 20


@pytest.mark.parametrize("args, shown", [
    (["gate", "--help"], " gate [OPTIONS] RELEASE\n"),
    (["gate", "--help"], "--timeout DURATION"),
    (["check", "--help"], "-c, --config FILE"),
    (["pause", "--help"], "--for DURATION"),
    (["rollback", "--help"], "--to RELEASE"),
    (["explain", "--help"], " explain [OPTIONS] RULE\n"),
])
def test_metavars_say_what_the_value_is(args, shown):
    done = run_cli(*args, env={"COLUMNS": "120"})
    assert done.returncode == 0 and shown in done.stdout, done.stdout


def test_an_error_says_error_and_never_a_python_class_name(symlink_host):
    host = symlink_host
    for rid in ("r1", "r2"):
        host.add_release(rid)
    host.deploy("r2")
    config = host.write_config(RULES)
    done = run_cli("rollback", "--to", "r9", "--yes", "--config", config)
    assert done.returncode == 1
    assert done.stderr.startswith("Error: ") and "r9" in done.stderr, done.stderr
    assert not re.search(r"\b[A-Z][A-Za-z]+(Error|Refused|Exception)\b", done.stderr), done.stderr
    host.current.unlink()  # `current` gone: the backend cannot say what is current
    as_json = run_cli("releases", "--json", "--config", config)
    assert as_json.returncode == 1 and as_json.stderr.startswith("Error: "), as_json.stderr
    assert json.loads(as_json.stdout)["error"] == "BrokenCurrent"  # the machine-readable name stays


def env_with_script() -> dict:
    return {**os.environ, "PATH": f"{SCRIPT.parent}{os.pathsep}{os.environ.get('PATH', '')}"}


def test_bash_completes_commands_subcommands_and_options_in_a_real_bash():
    """The script `--show-completion` prints when run from bash, sourced in a real bash, its
    completion function called as bash calls it on <Tab>."""
    driver = """
        source <(rollback-watcher --show-completion)
        complete_for() { COMP_WORDS=($1); COMP_CWORD=$2; _rollback_watcher_completion rollback-watcher;
                         echo "${COMPREPLY[*]}"; }
        complete_for "rollback-watcher ma" 1
        complete_for "rollback-watcher mark " 2
        complete_for "rollback-watcher check --c" 2
    """
    done = subprocess.run(["bash", "-c", driver], capture_output=True, text=True, env=env_with_script(), timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "mark", lines
    assert set(lines[1].split()) == {"good", "bad", "barrier", "deployed"}, lines
    assert "--config" in lines[2].split(), lines


@pytest.mark.parametrize("shell, installs", [
    ("bash", "complete -o default -F _rollback_watcher_completion rollback-watcher"),
    ("zsh", "compdef _rollback_watcher_completion rollback-watcher"),
    ("fish", "complete --command rollback-watcher"),
])
def test_completion_scripts_exist_for_bash_zsh_and_fish(shell, installs):
    # typer's own switch for naming the shell instead of detecting the one that runs us
    env = {**env_with_script(), "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}
    done = subprocess.run([str(SCRIPT), "--show-completion", shell], capture_output=True, text=True, env=env,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert installs in done.stdout


@pytest.mark.parametrize("shell, extra, expect", [
    ("zsh", {}, '"mark":"Mark a release'),
    ("fish", {"_TYPER_COMPLETE_FISH_ACTION": "get-args"}, "mark\tMark a release"),
])
def test_zsh_and_fish_get_completions_through_the_protocol_their_scripts_speak(shell, extra, expect):
    """What the zsh and fish scripts above run on <Tab> (this machine need not have either shell)."""
    env = {**env_with_script(), "_ROLLBACK_WATCHER_COMPLETE": f"complete_{shell}",
           "_TYPER_COMPLETE_ARGS": "rollback-watcher ma", **extra}
    done = subprocess.run([str(SCRIPT)], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert expect in done.stdout, done.stdout


def test_help_offers_to_install_completion():
    done = run_cli("--help")
    assert "--install-completion" in done.stdout and "--show-completion" in done.stdout


def test_status_and_eval_ask_the_backend_when_the_service_is_not_running(symlink_host):
    host = symlink_host
    for rid in ("r1", "r2"):
        host.add_release(rid)
    host.deploy("r1")
    config = host.write_config(RULES)
    status = run_cli("status", "--config", config)  # nothing saved yet: a fresh host
    assert status.returncode == 0, status.stderr
    assert status.stdout.startswith("sandbox: release r1;"), status.stdout
    assert "(read from the backend: the watcher is not running)" in status.stdout
    assert "release unknown" not in status.stdout

    store = StateStore(host.state_dir)  # a state that saw r1, then a deploy while the service was down
    store.ensure_dir()
    state = store.load()
    state.current = "r1"
    store.save(state)
    host.deploy("r2")
    status = run_cli("status", "--config", config)
    assert "release r2;" in status.stdout and "its state last saw r1" in status.stdout, status.stdout
    assert json.loads(run_cli("status", "--json", "--config", config).stdout)["release"] == "r2"
    evaluated = run_cli("eval", "--config", config)
    assert evaluated.returncode == 0, evaluated.stderr
    assert "release r2 (read from the backend: the watcher is not running; its state last saw r1)" in evaluated.stdout


def test_status_writes_a_firing_rules_value_in_its_unit_with_the_value_at_the_breach(symlink_host):
    host = symlink_host
    host.add_release("r1")
    host.deploy("r1")
    rules = ("rules:\n  - name: http-5xx-ratio\n    query: sum(rate(errors[$window]))\n    above: 0.1\n"
             "    for: 2m\n    value_unit: '%'\n    action: rollback\n")
    config = host.write_config(rules, prometheus={"url": "http://127.0.0.1:9"})
    store = StateStore(host.state_dir)
    store.ensure_dir()
    state = store.load()
    state.current = "r1"
    state.rules["http-5xx-ratio"] = RuleState(phase=Phase.FIRING, breach_since=1_800_000_000.0, breach_value=0.2712,
                                              active_since=1_800_000_000.0, fired_at=1_800_000_120.0,
                                              last_value=0.4028605482717521)
    store.save(state)
    status = run_cli("status", "--config", config)
    assert "http-5xx-ratio" in status.stdout
    assert "40.29% against > 10% for 2m; 27.12% at the breach" in status.stdout, status.stdout
    assert "0.4028" not in status.stdout
