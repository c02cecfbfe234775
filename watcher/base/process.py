"""Running other programs: argv only, a timeout, and the whole process group killed on timeout.

As fail2ban does for its actions: each command runs in its own session so that a timeout can
kill what it started too (a restart script that forks), TERM first, then KILL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

OUTPUT_LIMIT = 4096  # bytes of stdout/stderr kept for the journal


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    returncode: int | None  # None when it timed out
    output: str  # stdout and stderr interleaved, truncated to OUTPUT_LIMIT
    timed_out: bool = False
    # Only with run_argv(..., split_stderr=True): then `output` is stdout alone, so that a
    # program whose stdout is data (a release id) can still warn on stderr.
    stderr: str = ""

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def describe(self) -> str:
        cmd = " ".join(self.argv)
        if self.timed_out:
            return f"`{cmd}` timed out"
        if self.returncode is not None and self.returncode < 0:
            return f"`{cmd}` was killed by signal {-self.returncode}"
        return f"`{cmd}` exited {self.returncode}"


# Told when a command starts (result None) and when it ended: what a caller records so that,
# after its own crash, it can tell a command that finished from one that died with it.
Progress = Callable[[int, "CommandResult | None"], None]


def truncate(text: str, limit: int = OUTPUT_LIMIT) -> str:
    if len(text) <= limit:
        return text
    return text[: limit // 2] + f"\n... [{len(text) - limit} characters cut] ...\n" + text[-limit // 2 :]


def run_argv(
    argv: list[str] | tuple[str, ...],
    timeout: float,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    grace: float = 3.0,
    split_stderr: bool = False,
    progress: Progress | None = None,
) -> CommandResult:
    """Run `argv` (never through a shell) and return what happened; never raises for the
    command's own failure. Raises OSError only when it cannot be started at all.
    `progress(pid, None)` is called once it runs and `progress(pid, result)` once it ended."""
    argv = tuple(str(a) for a in argv)
    full_env = None
    if env is not None:
        full_env = dict(os.environ)
        full_env.update(env)
    # Output goes to a temp file, not a pipe: a restart script that leaves a daemon behind
    # holding its stdout must not make us wait for that daemon.
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err if split_stderr else subprocess.STDOUT,
            env=full_env,
            cwd=cwd,
            start_new_session=True,
        )
        if progress is not None:
            progress(proc.pid, None)
        timed_out = False
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(proc, grace)
        text, err_text = _read(out), _read(err)
    returncode = None if timed_out else proc.returncode
    result = CommandResult(argv, returncode, text, timed_out=timed_out, stderr=err_text)
    if progress is not None:
        progress(proc.pid, result)
    return result


def run_or_127(argv: list[str] | tuple[str, ...], timeout: float, split_stderr: bool = False,
               progress: Progress | None = None) -> CommandResult:
    """run_argv, with a program that cannot be started reported as a shell does (exit 127)
    instead of raised: the backends report it like any other failed command."""
    try:
        return run_argv(argv, timeout, split_stderr=split_stderr, progress=progress)
    except OSError as e:
        return CommandResult(tuple(str(a) for a in argv), 127, f"cannot start: {e}")


def transcript(results: list[CommandResult] | CommandResult) -> str:
    """What the commands said, for the journal: `$ argv` then its output, each in turn."""
    if isinstance(results, CommandResult):
        results = [results]
    parts = []
    for r in results:
        text = f"$ {' '.join(r.argv)}\n{r.output}"
        if r.stderr:
            text += f"\n[stderr]\n{r.stderr}"
        parts.append(text)
    return "\n".join(parts)


def _read(f: IO[bytes]) -> str:
    f.seek(0)
    return truncate(f.read(OUTPUT_LIMIT * 64).decode("utf-8", "replace"))


def _kill_group(proc: subprocess.Popen[bytes], grace: float) -> None:
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def identity(pid: int) -> dict[str, Any] | None:
    """What tells this process from a later one with the same pid: its start time in clock
    ticks since boot and the boot's id (/proc). None when it is gone."""
    found = _stat(pid)
    return None if found is None else {"pid": pid, "started": found[1], "boot": found[2]}


def still_running(recorded: Mapping[str, Any]) -> bool:
    """Whether the process `identity()` described still runs under its pid (not a zombie, not a
    later process that was given the same pid)."""
    pid = recorded.get("pid")
    found = _stat(pid) if isinstance(pid, int) and pid > 0 else None
    return found is not None and found[0] != "Z" and found[1:] == (recorded.get("started"), recorded.get("boot"))


def _stat(pid: int) -> tuple[str, int, str] | None:
    """(state, start time, boot id) of `pid`, or None when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces: count after its end.
    fields = stat[stat.rindex(")") + 2:].split()
    return fields[0], int(fields[19]), boot
