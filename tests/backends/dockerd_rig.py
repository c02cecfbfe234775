"""A real `dockerd` for the docker backend's tests, and images built without a registry.

    Dockerd(workdir).start()   Debian's dockerd with its own data root, exec root and socket in
                               workdir; `.docker` is the CLI argv the backend runs
                               (/usr/bin/docker -H unix://SOCK: Debian's own client, the one
                               that matches the daemon, whatever else is first on PATH)
    .image(repo, tag, health)  `docker import` of a busybox-static rootfs serving /www on 8080
                               with `busybox httpd`; /www/health exists only when `health`
    .stop()                    stops every container and dockerd by PID, then removes what
                               dockerd left on the host: docker0, its netns mount, the iptables
                               rules and chains it added, net.ipv4.ip_forward as it was

The daemon and the CLI cannot be faked usefully for what these tests prove: the engine's own
health states, port clashes and the container lifecycle of a switch.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

from support.processes import terminate_then_kill

DOCKER_CLI = "/usr/bin/docker"
BUSYBOX = "/bin/busybox"
IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")
# A HEALTHCHECK cannot be set by `docker import --change`: the run arguments carry it.
HEALTH_ARGS = ("--health-cmd", "wget -q -O /dev/null http://127.0.0.1:8080/health", "--health-interval", "1s",
               "--health-retries", "2", "--health-start-period", "0s", "--health-timeout", "2s")
# busybox as PID 1 ignores SIGTERM: without --init every `docker stop` waits its 10 s.
RUN_ARGS = ("--init", *HEALTH_ARGS)


class DockerdError(AssertionError):
    pass


def missing_prerequisites() -> list[str]:
    missing = []
    for path, package in ((shutil.which("dockerd"), "docker.io"), (shutil.which(DOCKER_CLI), "docker.io"),
                          (shutil.which("iptables-save"), "iptables")):
        if path is None:
            missing.append(f"{package} (`make test` installs it)")
    if not _is_static(BUSYBOX):
        missing.append(f"a static {BUSYBOX} (apt package busybox-static; `make test` installs it)")
    if os.geteuid() != 0:
        missing.append("root: dockerd needs it")
    return missing


def _is_static(path: str) -> bool:
    """The image has no libc: its busybox must be the static one (ldd refuses a static binary)."""
    if not os.path.exists(path):
        return False
    return subprocess.run(["ldd", path], capture_output=True).returncode != 0


class Dockerd:
    def __init__(self, workdir: Path):
        self.workdir = Path(workdir)
        self.socket = self.workdir / "docker.sock"
        self.exec_root = self.workdir / "exec"
        self.log = self.workdir / "dockerd.log"
        self.docker = (DOCKER_CLI, "--host", f"unix://{self.socket}")
        self.proc: subprocess.Popen | None = None
        self._iptables_before: dict[str, str] = {}
        self._ip_forward_before: str | None = None
        self._had_docker0 = Path("/sys/class/net/docker0").exists()

    def start(self, timeout: float = 30.0) -> Dockerd:
        if self._had_docker0:
            raise DockerdError("a docker0 bridge exists already: another dockerd runs on this host; stop it first")
        self._iptables_before = {t: _save(t) for t in ("filter", "nat")}
        self._ip_forward_before = IP_FORWARD.read_text().strip()
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                ["dockerd", "--data-root", str(self.workdir / "data"), "--exec-root", str(self.exec_root),
                 "--host", f"unix://{self.socket}", "--pidfile", str(self.workdir / "dockerd.pid")],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while self.cli("version", check=False).returncode != 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise DockerdError(f"dockerd did not start: {self.log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.2)
        return self

    def cli(self, *args: str, check: bool = True, timeout: float = 60.0) -> subprocess.CompletedProcess:
        done = subprocess.run([*self.docker, *args], capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise DockerdError(f"docker {' '.join(args)} exited {done.returncode}: {done.stderr}")
        return done

    def image(self, repository: str, tag: str, health: bool = True,
              command: tuple[str, ...] = ("/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/www")) -> str:
        """A busybox-static image that serves `tag` at / (and /health when `health`)."""
        root = self.workdir / "images" / tag
        (root / "bin").mkdir(parents=True, exist_ok=True)
        (root / "www").mkdir(exist_ok=True)
        shutil.copy2(BUSYBOX, root / "bin" / "busybox")
        for applet in ("sh", "wget"):  # the health command runs in `sh -c`
            if not (root / "bin" / applet).exists():
                os.symlink("busybox", root / "bin" / applet)
        (root / "www" / "index.html").write_text(f"{tag}\n")
        if health:
            (root / "www" / "health").write_text("ok\n")
        archive = root.with_suffix(".tar")
        with tarfile.open(archive, "w") as tar:
            tar.add(root, arcname=".")
        self.cli("import", "--change", f"CMD {json.dumps(list(command))}", str(archive), f"{repository}:{tag}")
        return f"{repository}:{tag}"

    def containers(self) -> list[str]:
        return sorted(self.cli("ps", "-a", "--format", "{{.Names}} {{.Image}} {{.State}}").stdout.splitlines())

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            ids = self.cli("ps", "-aq", check=False).stdout.split()
            if ids:
                self.cli("rm", "-f", *ids, check=False)
            terminate_then_kill(self.proc, timeout)
        self.proc = None
        self._remove_host_leftovers()

    def _remove_host_leftovers(self) -> None:
        netns = self.exec_root / "netns"
        if netns.is_dir():
            for mount in netns.iterdir():
                subprocess.run(["umount", "-l", str(mount)], capture_output=True)
        if not self._had_docker0 and Path("/sys/class/net/docker0").exists():
            subprocess.run(["ip", "link", "delete", "docker0"], capture_output=True)
        for table, before in self._iptables_before.items():
            _undo_iptables(table, before, _save(table))
        if self._ip_forward_before is not None:
            IP_FORWARD.write_text(self._ip_forward_before + "\n")


def _save(table: str) -> str:
    return subprocess.run(["iptables-save", "-t", table], capture_output=True, text=True).stdout


def _undo_iptables(table: str, before: str, after: str) -> None:
    """Delete the rules and chains that appeared between two `iptables-save` outputs and put
    the built-in chains' policies back; rules others added meanwhile are left alone."""
    old_rules = {line for line in before.splitlines() if line.startswith("-A ")}
    old_chains = {line.split()[0][1:]: line.split()[1] for line in before.splitlines() if line.startswith(":")}
    for line in after.splitlines():
        if line.startswith("-A ") and line not in old_rules:
            subprocess.run(["iptables", "-t", table, "-D", *shlex.split(line)[1:]], capture_output=True)
    for line in after.splitlines():
        if not line.startswith(":"):
            continue
        chain, policy = line.split()[0][1:], line.split()[1]
        if policy == "-" and chain not in old_chains:
            subprocess.run(["iptables", "-t", table, "-F", chain], capture_output=True)
            subprocess.run(["iptables", "-t", table, "-X", chain], capture_output=True)
        elif policy != "-" and old_chains.get(chain, "ACCEPT") != policy:
            subprocess.run(["iptables", "-t", table, "-P", chain, old_chains.get(chain, "ACCEPT")], capture_output=True)
