"""Real deploy tools against a sandbox host on 127.0.0.1.

    sshd          a private OpenSSH server (own host key, a free port, keys and config in tmp);
                  stopped after the test. FAILS (never skips) when openssh-server is missing.
    app_repo      a small app as a git repository reachable as a file:// URL, one commit per
                  release; `commit(version, health)` returns the commit id.
    cap_bin       the `cap` program (Debian's capistrano); FAILS when missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from support import LOOPBACK, free_port, wait_for

SSHD = "/usr/sbin/sshd"


def _need(program: str, package: str) -> str:
    path = shutil.which(program) or (program if os.path.isabs(program) and os.access(program, os.X_OK) else None)
    if path is None:
        # A skip would let a machine without the tool pass while testing nothing real.
        pytest.fail(f"`{program}` is not installed (Debian package {package}): run `make test`, which installs it",
                    pytrace=False)
    return path


@pytest.fixture(scope="session")
def cap_bin() -> str:
    _need("ruby", "ruby")
    return _need("cap", "capistrano")


@dataclass
class SshServer:
    port: int
    client_key: Path
    user: str
    process: subprocess.Popen
    log: Path


def _keygen(path: Path, kind: str = "ed25519") -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(path)], check=True, capture_output=True)


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[SshServer]:
    _need(SSHD, "openssh-server")
    _need("ssh-keygen", "openssh-client")
    d = tmp_path / "sshd"
    d.mkdir()
    _keygen(d / "host_key")
    _keygen(d / "client_key")
    (d / "authorized_keys").write_text((d / "client_key.pub").read_text())
    os.chmod(d / "authorized_keys", 0o600)
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation dir must exist
    port = free_port()
    config = d / "sshd_config"
    config.write_text(
        f"ListenAddress {LOOPBACK}\nPort {port}\nHostKey {d / 'host_key'}\n"
        f"AuthorizedKeysFile {d / 'authorized_keys'}\nPidFile {d / 'sshd.pid'}\n"
        "UsePAM no\nStrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "PermitRootLogin prohibit-password\nPubkeyAuthentication yes\n"
    )
    log = d / "sshd.log"
    with open(log, "ab") as fh:
        proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)
    server = SshServer(port, d / "client_key", os.environ.get("USER") or "root", proc, log)
    try:
        import socket

        def listening() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"sshd exited {proc.returncode}:\n{log.read_text()}")
            with socket.socket() as s:
                return s.connect_ex((LOOPBACK, port)) == 0

        wait_for(listening, timeout=15, what="sshd to listen")
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


GIT_ENV = {"GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@localhost", "GIT_COMMITTER_NAME": "test",
           "GIT_COMMITTER_EMAIL": "test@localhost", "GIT_CONFIG_NOSYSTEM": "1"}


class AppRepo:
    """The app: `health_status` (what the host's /health answers while this release is current)
    and `VERSION`. A bare repository (`url`) fed from a work tree, one commit per release."""

    def __init__(self, root: Path):
        self.bare = root / "app.git"
        self.work = root / "app-src"
        self._git("init", "-q", "--bare", "-b", "main", str(self.bare), cwd=root)
        self._git("clone", "-q", str(self.bare), str(self.work), cwd=root)
        self._git("checkout", "-q", "-b", "main")

    @property
    def url(self) -> str:
        return f"file://{self.bare}"

    def _git(self, *args: str, cwd: Path | None = None) -> str:
        env = {**os.environ, **GIT_ENV}
        return subprocess.run(["git", *args], cwd=cwd or self.work, env=env, check=True, capture_output=True,
                              text=True).stdout.strip()

    def commit(self, version: str, health: int) -> str:
        (self.work / "VERSION").write_text(f"{version}\n")
        (self.work / "health_status").write_text(f"{health}\n")
        self._git("add", "VERSION", "health_status")
        self._git("commit", "-q", "-m", f"{version}: /health answers {health}")
        self._git("push", "-q", "origin", "main")
        return self._git("rev-parse", "HEAD")


@pytest.fixture
def app_repo(tmp_path: Path) -> AppRepo:
    _need("git", "git")
    return AppRepo(tmp_path)

