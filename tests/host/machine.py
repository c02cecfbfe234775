"""A Debian 12 system booted with systemd as PID 1 (`systemd-nspawn --boot`), driven with nsenter.

The rootfs is built once by the Makefile (`make rootfs`, tests/host/build_rootfs.sh) under
ROOTFS_CACHE, outside the repository, and never written to: the container boots it with
`--volatile=overlay`, so every file a test writes lands in a tmpfs that disappears with the
container. `--private-network` gives the container its own loopback (its ports never clash
with the host's); the tests reach it only through `nsenter -t <PID 1> -a`, as `machinectl`
needs a machined the host does not run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from support.processes import terminate_then_kill

# The Makefile's ROOTFS_CACHE; the suffix changes when build_rootfs.sh's package list does.
DEFAULT_ROOTFS = "/var/cache/rollback-watcher-tests/bookworm-1"
REQUIRED_TOOLS = {"systemd-nspawn": "systemd-container", "nsenter": "util-linux", "debootstrap": "debootstrap"}


class MachineError(AssertionError):
    """The container could not be booted or a command inside it failed (a test failure)."""


@dataclass(frozen=True)
class Result:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def describe(self) -> str:
        return f"`{' '.join(self.argv)}` exited {self.returncode}:\n{self.stdout}{self.stderr}"


def rootfs_path() -> Path:
    return Path(os.environ.get("ROLLBACK_WATCHER_ROOTFS", DEFAULT_ROOTFS))


def missing_prerequisites(rootfs: Path) -> list[str]:
    """What this machine lacks to boot the container, said so that a person can fix it."""
    missing = [f"`{tool}` (apt package {package}; `make test` installs it)"
               for tool, package in REQUIRED_TOOLS.items() if shutil.which(tool) is None]
    if os.geteuid() != 0:
        missing.append("root: systemd-nspawn and nsenter need it")
    if not (rootfs / ".rollback-watcher-rootfs").is_file():
        missing.append(f"the cached rootfs {rootfs} (`make rootfs` builds it once: 1-7 minutes, ~260 MB)")
    return missing


class BootedSystem:
    """One booted container. `start()` returns once `systemctl is-system-running --wait` says
    the boot is done; `stop()` (also on a failed start) terminates nspawn, which takes every
    process and mount of the container with it."""

    def __init__(self, rootfs: Path, name: str, workdir: Path, binds: dict[str, str] | None = None):
        self.rootfs = rootfs
        self.name = name
        self.workdir = workdir
        self.binds = binds or {}
        self.console = workdir / f"{name}-console.log"
        self.proc: subprocess.Popen | None = None
        self.leader: int | None = None

    def start(self, timeout: float = 120.0) -> BootedSystem:
        argv = ["systemd-nspawn", "-D", str(self.rootfs), "--volatile=overlay", "--boot", "--register=no",
                "--keep-unit", "--private-network", "--console=read-only", "-M", self.name]
        argv += [f"--bind-ro={host}:{inside}" for host, inside in self.binds.items()]
        with open(self.console, "wb") as console:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        deadline = time.monotonic() + timeout
        while self.leader is None:
            if self.proc.poll() is not None:
                raise MachineError(f"systemd-nspawn exited {self.proc.returncode}: {self.console_tail()}")
            if time.monotonic() > deadline:
                raise MachineError(f"no PID 1 under systemd-nspawn after {timeout:g}s: {self.console_tail()}")
            self.leader = self._container_init()
            if self.leader is None:
                time.sleep(0.1)
        state = ""
        while time.monotonic() < deadline:
            # is-system-running needs the container's D-Bus: the first tries may fail before it.
            state = self.run("systemctl", "is-system-running", "--wait", check=False, timeout=timeout).stdout.strip()
            if state in ("running", "degraded"):
                break
            time.sleep(0.2)
        if state == "degraded":
            failed = self.run("systemctl", "--failed", "--no-legend", check=False).stdout
            raise MachineError(f"the container booted degraded; failed units:\n{failed}")
        if state != "running":
            raise MachineError(f"the container did not finish booting (state {state!r}): {self.console_tail()}")
        return self

    def _container_init(self) -> int | None:
        """The container's PID 1: the child of systemd-nspawn that runs systemd. Its first child
        may be a helper that forks PID 1 and exits (seen under load: every nsenter into the
        helper's gone namespaces then failed until the boot timed out), or PID 1 before it
        execs systemd; neither is taken."""
        assert self.proc is not None
        children = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout.split()
        for pid in children:
            try:
                if Path(f"/proc/{pid}/comm").read_text().strip() == "systemd":
                    return int(pid)
            except OSError:
                continue  # gone meanwhile
        return None

    def console_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.console.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no console output)"

    def run(self, *argv: str, check: bool = True, timeout: float = 60.0, input: str | None = None) -> Result:
        """argv as root inside the container (all its namespaces, its root directory)."""
        if self.leader is None:
            raise MachineError("the container is not running")
        full = ["nsenter", "-t", str(self.leader), "-a", "--", *argv]
        try:
            done = subprocess.run(full, capture_output=True, text=True, timeout=timeout, input=input,
                                  env={"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                                       "LANG": "C.UTF-8", "SYSTEMD_PAGER": "", "SYSTEMD_COLORS": "0"})
        except subprocess.TimeoutExpired as exc:
            raise MachineError(f"`{' '.join(argv)}` inside {self.name} did not finish in {timeout:g}s") from exc
        result = Result(tuple(argv), done.returncode, done.stdout, done.stderr)
        if check and not result.ok:
            raise MachineError(result.describe())
        return result

    def sh(self, script: str, check: bool = True, timeout: float = 60.0) -> Result:
        return self.run("sh", "-euc", script, check=check, timeout=timeout)

    def write(self, path: str, text: str, mode: str = "0644") -> None:
        self.run("sh", "-euc", f'mkdir -p "$(dirname "$1")" && cat > "$1" && chmod {mode} "$1"', "sh", path,
                 input=text)

    def systemctl(self, *args: str, check: bool = True, timeout: float = 60.0) -> Result:
        return self.run("systemctl", *args, check=check, timeout=timeout)

    def show(self, unit: str, prop: str) -> str:
        return self.systemctl("show", f"--property={prop}", "--value", unit).stdout.strip()

    def journal(self, unit: str) -> str:
        return self.run("journalctl", "-u", unit, "-o", "cat", "--no-pager", check=False).stdout

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM to nspawn shuts the container down (~2 s); SIGKILL of its process group after
        `timeout`. Every mount nspawn made lives in its own mount namespace and goes with it."""
        if self.proc is None:
            return
        terminate_then_kill(self.proc, timeout)
        self.proc = None
        self.leader = None
