"""A real etcd cluster on loopback ports (Debian's `etcd-server`), data in a temp dir.

    with EtcdCluster(tmp_path, members=3) as etcd:
        etcd.endpoints            ["http://127.0.0.1:PORT", ...]  (client URLs)
        etcd.kill(1)              SIGKILL one member (the others keep quorum)
        etcd.stop_all()           every member down (SIGTERM, then SIGKILL after `grace`)
        etcd.start_all()          back, same data dirs, same ports

A member left without quorum may ignore SIGTERM for a long time (measured on this machine),
hence SIGTERM then SIGKILL after a timeout.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx

from support.ports import LOOPBACK, free_port
from watcher.demo.rig import SandboxError, tail


class Certificates:
    """A throwaway CA, a server certificate for 127.0.0.1 and a client certificate (openssl)."""

    def __init__(self, workdir: Path):
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ca, ca_key = self.dir / "ca.pem", self.dir / "ca-key.pem"
        self.server_cert, self.server_key = self.dir / "server.pem", self.dir / "server-key.pem"
        self.client_cert, self.client_key = self.dir / "client.pem", self.dir / "client-key.pem"
        openssl = shutil.which("openssl")
        if openssl is None:
            raise SandboxError("openssl is not installed: apt-get install openssl")

        def run(*args: str) -> None:
            subprocess.run([openssl, *args], check=True, capture_output=True, timeout=60)

        run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=rw-test-ca",
            "-keyout", str(ca_key), "-out", str(self.ca))
        ext = self.dir / "san.cnf"
        ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n")
        for cert, key, cn in ((self.server_cert, self.server_key, "etcd"), (self.client_cert, self.client_key, "watcher")):
            csr = self.dir / f"{cn}.csr"
            run("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={cn}", "-keyout", str(key), "-out", str(csr))
            run("x509", "-req", "-in", str(csr), "-CA", str(self.ca), "-CAkey", str(ca_key), "-CAcreateserial",
                "-days", "2", "-extfile", str(ext), "-out", str(cert))


def stable_port() -> int:
    """A loopback port for a member, reserved for this process (support/ports.py): a stopped
    member is started again on the same ports, which no other test process or bind to port 0
    takes meanwhile."""
    return free_port()


def etcd_binary() -> str:
    path = shutil.which("etcd") or ("/usr/bin/etcd" if Path("/usr/bin/etcd").exists() else None)
    if path is None:
        raise SandboxError("the `etcd` binary is not installed: run `make deps`, which installs etcd-server")
    return path


class EtcdMember:
    def __init__(self, name: str, workdir: Path, binary: str, tls: Certificates | None = None):
        self.name = name
        self.dir = workdir / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.binary = binary
        self.client_port = stable_port()
        self.peer_port = stable_port()
        self.proc: subprocess.Popen | None = None
        self.log = self.dir / "etcd.log"
        self.tls = tls

    @property
    def client_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{LOOPBACK}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://{LOOPBACK}:{self.peer_port}"

    def start(self, initial_cluster: str, token: str, state: str = "new") -> None:
        argv = [self.binary, "--name", self.name, "--data-dir", str(self.dir / "data"),
                "--listen-client-urls", self.client_url, "--advertise-client-urls", self.client_url,
                "--listen-peer-urls", self.peer_url, "--initial-advertise-peer-urls", self.peer_url,
                "--initial-cluster", initial_cluster, "--initial-cluster-state", state,
                "--initial-cluster-token", token,
                # short elections: a lost member is noticed within a second on a busy machine
                "--heartbeat-interval", "100", "--election-timeout", "1000",
                "--logger", "zap", "--log-level", "warn"]
        if self.tls is not None:
            argv += ["--cert-file", str(self.tls.server_cert), "--key-file", str(self.tls.server_key),
                     "--trusted-ca-file", str(self.tls.ca), "--client-cert-auth"]
        with open(self.log, "ab") as fh:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT,
                                         start_new_session=True)

    def healthy(self) -> bool:
        try:
            if self.tls is not None:
                import ssl

                ctx = ssl.create_default_context(cafile=str(self.tls.ca))
                ctx.load_cert_chain(str(self.tls.client_cert), str(self.tls.client_key))
                r = httpx.get(self.client_url + "/health", timeout=1.0, trust_env=False, verify=ctx)
            else:
                r = httpx.get(self.client_url + "/health", timeout=1.0, trust_env=False)
            return r.status_code == 200 and r.json().get("health") in ("true", True)
        except (httpx.HTTPError, ValueError):
            return False

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, grace: float = 5.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class EtcdCluster:
    def __init__(self, workdir: Path, members: int = 3, binary: str | None = None, tls: bool = False):
        self.dir = Path(workdir)
        binary = binary or etcd_binary()
        self.tls = Certificates(self.dir / "tls") if tls else None
        self.members = [EtcdMember(f"m{i}", self.dir, binary, self.tls) for i in range(members)]
        self.initial_cluster = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        self.token = f"rw-test-{os.getpid()}-{id(self)}"  # one per cluster: its members must agree
        self._started_once = False

    @property
    def endpoints(self) -> list[str]:
        return [m.client_url for m in self.members]

    def start_all(self, timeout: float = 30.0) -> EtcdCluster:
        state = "existing" if self._started_once else "new"
        for m in self.members:
            if not m.running():
                m.start(self.initial_cluster, self.token, state)
        self._started_once = True
        try:
            self.wait_healthy(timeout)
        except BaseException:
            self.stop_all()  # a cluster that did not come up leaves no member behind
            raise
        return self

    def wait_healthy(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            live = [m for m in self.members if m.running()]
            if live and all(m.healthy() for m in live):
                return
            for m in self.members:
                if m.proc is not None and m.proc.poll() is not None:
                    raise SandboxError(f"etcd {m.name} exited with {m.proc.returncode}:\n{tail(m.log)}")
            time.sleep(0.1)
        raise SandboxError(f"etcd not healthy after {timeout}s:\n" + "\n".join(tail(m.log, 5) for m in self.members))

    def kill(self, index: int) -> None:
        self.members[index].stop(signal.SIGKILL)

    def restart(self, index: int, timeout: float = 30.0) -> None:
        self.members[index].start(self.initial_cluster, self.token, "existing")
        try:
            self.wait_healthy(timeout)
        except BaseException:
            self.stop_all()
            raise

    def stop_all(self, grace: float = 5.0) -> None:
        """TERM every member at once (one by one, the last ones lose quorum and linger), then
        KILL whatever is left after `grace`."""
        live = [m for m in self.members if m.running()]
        for m in live:
            m.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for m in live:
            m.stop(signal.SIGTERM, max(0.1, deadline - time.monotonic()))

    def __enter__(self) -> EtcdCluster:
        return self.start_all()

    def __exit__(self, *exc: object) -> None:
        self.stop_all()
