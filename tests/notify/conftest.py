"""Real HTTP receivers on 127.0.0.1 for the notification tests (no mock of Apprise).

`Receiver` speaks ntfy's publish API well enough for Apprise's ntfy plugin (JSON POSTed to the
root path, priority and tags in X-Priority / X-Tags headers; answers with ntfy's message JSON)
and accepts Apprise's `json://` posts on any path. It records method, path, headers and JSON
body of every request. Modes: "ok", "hang" (accepts, reads the request, never answers until
the test ends or the mode changes), "no-attachments" (a ntfy server without
`attachment-cache-dir`: a body that is not JSON, a file, gets ntfy's 400 code 40014), or an
HTTP status code to answer with.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


@dataclass
class Request:
    method: str
    path: str
    headers: dict  # lower-case names
    body: dict | None  # parsed JSON, None if not JSON
    raw: bytes


class Receiver:
    def __init__(self, port: int = 0, mode: str | int = "ok"):
        self.mode = mode
        self.requests: list[Request] = []
        self._cond = threading.Condition()
        self._release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output quiet
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = None
                request = Request(self.command, self.path,
                                  {k.lower(): v for k, v in self.headers.items()}, body, raw)
                with receiver._cond:
                    receiver.requests.append(request)
                    receiver._cond.notify_all()
                mode = receiver.mode
                if mode == "hang":
                    receiver._release.wait(30)
                    self.close_connection = True
                    return
                if mode == "no-attachments":
                    mode = "ok" if body is not None else 400
                status = 200 if mode == "ok" else int(mode)
                if status == 400 and receiver.mode == "no-attachments":
                    reply = {"code": 40014, "http": 400, "error": "invalid request: attachments not allowed"}
                elif status == 200:
                    reply = {"id": f"m{len(receiver.requests)}", "time": int(time.time()),
                             "event": "message", "topic": (body or {}).get("topic", "")}
                else:
                    reply = {"code": status * 100 + 1, "http": status, "error": "refused by test"}
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_POST = _handle
            do_PUT = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()

    def set_mode(self, mode: str | int) -> None:
        self.mode = mode
        if mode != "hang":
            self._release.set()

    def wait_for(self, count: int, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.requests) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def ntfy_url(self, topic: str = "alerts", query: str = "") -> str:
        return f"ntfy://127.0.0.1:{self.port}/{topic}" + (f"?{query}" if query else "")

    def json_url(self, path: str = "hook", query: str = "") -> str:
        return f"json://127.0.0.1:{self.port}/{path}" + (f"?{query}" if query else "")

    def stop(self) -> None:
        self._release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers():
    """Start receivers: receivers(mode=..., port=...); all stopped at the end of the test."""
    started: list[Receiver] = []

    def start(mode: str | int = "ok", port: int = 0) -> Receiver:
        receiver = Receiver(port=port, mode=mode)
        started.append(receiver)
        return receiver

    yield start
    for receiver in started:
        receiver.stop()


@pytest.fixture
def receiver(receivers) -> Receiver:
    return receivers()


class Journal(list):
    """A journal(kind, **fields) that keeps events as dicts with "kind"."""

    def __call__(self, kind: str, **fields) -> None:
        self.append({"kind": kind, **fields})

    def kinds(self) -> list[str]:
        return [e["kind"] for e in self]


@pytest.fixture
def journal() -> Journal:
    return Journal()


@pytest.fixture
def make_notifier(journal):
    """Notifiers with test-sized timeouts, closed at the end of the test."""
    from watcher.notify.notifier import Notifier

    made = []

    def make(targets, **kwargs):
        options = dict(timeout=1.0, retries=1, backoff=0.05, redelivery_backoff=0.0)
        options.update(kwargs)
        notifier = Notifier(targets, journal, **options)
        made.append(notifier)
        return notifier

    yield make
    for notifier in made:
        notifier.close(0.5)
