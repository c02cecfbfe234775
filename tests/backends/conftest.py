"""Real servers for the backend tests: tiny HTTP upstreams in threads, and a real nginx."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from support import NginxServer, free_port


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


@pytest.fixture
def nginx(tmp_path: Path, upstreams):
    """A real Debian nginx on a free loopback port, proxying to the slot the include names
    (blue at start). Everything lives in tmp_path; the process group is killed at the end.
    A missing nginx fails (never skips): the Makefile installs it."""
    upstream_file = tmp_path / "upstream.conf"
    upstream_file.write_text(f"server {upstreams['blue'].address}; # slot blue\n")
    with NginxServer(tmp_path, upstream_file).start(expect_body="hello from blue") as server:
        yield server
