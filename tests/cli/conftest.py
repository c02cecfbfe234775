"""Fixtures for the CLI tests: `rollback-watcher run` as a subprocess (tests/support), stopped
after the test, also on failure."""

from __future__ import annotations

from pathlib import Path

import pytest

from support import WatcherProcess

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def start_watcher(tmp_path):
    procs: list[WatcherProcess] = []

    def start(config: Path, env: dict | None = None) -> WatcherProcess:
        w = WatcherProcess(config, tmp_path / f"watcher-{len(procs)}.log", env, cwd=REPO)
        procs.append(w)
        return w

    yield start
    for w in procs:
        w.stop(sig=9)


class JsonReceiver:
    """A loopback webhook for `json://` targets: records each POSTed JSON body."""

    def __init__(self):
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        bodies = self.bodies = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length") or 0)
                bodies.append(json.loads(self.rfile.read(length) or b"{}"))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self._server.server_address[1]}/hook"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def json_receiver():
    receiver = JsonReceiver()
    yield receiver
    receiver.close()
