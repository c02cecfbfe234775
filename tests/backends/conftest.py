"""Real servers for the backend tests: tiny HTTP upstreams in threads, and a real nginx."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

NGINX = Path("/usr/sbin/nginx")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def dead_address() -> str:
    """A loopback address where nothing listens."""
    return f"127.0.0.1:{free_port()}"


@dataclass
class Upstream:
    """One blue/green slot: answers `/` with `hello from <name>` and `/version` with `version`."""

    name: str
    version: str
    server: ThreadingHTTPServer | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"


def start_upstream(name: str, version: str) -> Upstream:
    upstream = Upstream(name, version)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = (upstream.version if self.path == "/version" else f"hello from {upstream.name}").encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    upstream.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=upstream.server.serve_forever, daemon=True).start()
    return upstream


@pytest.fixture(scope="session")
def upstreams():
    """Two slots, `blue` serving release r41 and `green` serving r42."""
    pair = {"blue": start_upstream("blue", "r41"), "green": start_upstream("green", "r42")}
    yield pair
    for upstream in pair.values():
        upstream.server.shutdown()
        upstream.server.server_close()


@dataclass
class Nginx:
    dir: Path
    port: int
    upstream_file: Path
    conf: Path
    pid_file: Path
    argv: tuple[str, ...]  # the prefix the backend appends `-t` or `-s reload` to

    def get(self, path: str = "/") -> httpx.Response:
        return httpx.get(f"http://127.0.0.1:{self.port}{path}", timeout=2, trust_env=False)

    def wait_for_body(self, body: str, timeout: float = 5.0) -> str:
        """nginx reloads asynchronously: poll until the new workers answer."""
        deadline = time.monotonic() + timeout
        seen = ""
        while time.monotonic() < deadline:
            try:
                seen = self.get().text
            except httpx.HTTPError as e:
                seen = repr(e)
            if seen == body:
                return seen
            time.sleep(0.02)
        return seen


@pytest.fixture
def nginx(tmp_path: Path, upstreams):
    """A real Debian nginx on a free loopback port, proxying to the slot the include names
    (blue at start). Everything lives in tmp_path; the process group is killed at the end."""
    if not NGINX.exists():
        # A skip would let a machine without nginx pass while the backend went untested.
        pytest.fail("nginx is not installed: run `make test`, which installs nginx-light", pytrace=False)
    port = free_port()
    temp = tmp_path / "temp"
    temp.mkdir()
    upstream_file = tmp_path / "upstream.conf"
    upstream_file.write_text(f"server {upstreams['blue'].address}; # slot blue\n")
    pid_file = tmp_path / "nginx.pid"
    # As root, nginx would run workers as `nobody`, who cannot use the temp dirs under tmp_path.
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        f"""{user}worker_processes 1;
pid {pid_file};
error_log {tmp_path}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    upstream app {{ include {upstream_file}; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{ proxy_pass http://app; }}
    }}
}}
"""
    )
    argv = (str(NGINX), "-p", str(tmp_path), "-c", str(conf), "-e", str(tmp_path / "error.log"))
    proc = subprocess.Popen(
        [*argv, "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    server = Nginx(tmp_path, port, upstream_file, conf, pid_file, argv)
    try:
        deadline = time.monotonic() + 10
        while server.wait_for_body("hello from blue", timeout=0.2) != "hello from blue":
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"nginx did not start: {proc.stderr.read().decode()}")
        yield server
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=5)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
