"""In-process HTTP servers on 127.0.0.1 for the scenario rigs: the ntfy-like receiver every
watcher of a scenario notifies through Apprise, and the thread that serves any such handler.

They bind port 0 themselves and read the port back: no port number is handed over, so no other
process can take it first (see support/ports.py for the servers that cannot).
"""

from __future__ import annotations

import base64
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl

from support.ports import LOOPBACK


class LoopbackServer:
    """`handler` served on 127.0.0.1:<a port the kernel picks> by a daemon thread until close()."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]):
        self.server = ThreadingHTTPServer((LOOPBACK, 0), handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class NotificationReceiver:
    """Records every message a watcher's Apprise target POSTs: `ntfy://` (JSON: topic, title,
    message, priority; the reply is the ntfy publish API's) or `json://` (version, title,
    message, type, attachments). Each message gets `received_at` (time.time()) and `x-priority`
    (the header Apprise's ntfy plugin may send instead of the JSON field). A ntfy message with
    a file (the picture of a breach) is the file POSTed to /TOPIC with the title and message
    as query parameters: recorded with those, and the file as `attachment_base64`."""

    def __init__(self, scheme: str = "ntfy", topic: str = "e2e"):
        self.messages: list[dict] = []
        self._lock = threading.Lock()
        self._http = LoopbackServer(self._handler())
        base = f"{scheme}://{LOOPBACK}:{self._http.port}/"
        self.url = base + topic if scheme == "ntfy" else base

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802 - http.server's name
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                path, _, query = self.path.partition("?")
                params = dict(parse_qsl(query))
                try:
                    body = json.loads(raw) if raw else {}
                except ValueError:
                    body = {"message": raw.decode(errors="replace")}
                if "filename" in params:  # ntfy: a file, the text in the query
                    body = {"topic": path.strip("/"), "title": params.get("title", ""),
                            "message": params.get("message", ""), "filename": params["filename"],
                            "attachment_base64": base64.b64encode(raw).decode()}
                body["received_at"] = time.time()
                body["x-priority"] = self.headers.get("X-Priority")
                with receiver._lock:
                    receiver.messages.append(body)
                    count = len(receiver.messages)
                reply = json.dumps({"id": f"m{count}", "time": int(time.time()), "event": "message",
                                    "topic": body.get("topic", "")}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            do_PUT = do_POST

            def log_message(self, *args):
                pass

        return Handler

    def received(self) -> list[dict]:
        """A copy of the messages so far (the server thread appends meanwhile)."""
        with self._lock:
            return list(self.messages)

    def titles(self, host: str | None = None) -> list[str]:
        """Every title so far; with `host`, only those of messages about that host (`@host]`)."""
        titles = [str(m.get("title", "")) for m in self.received()]
        return [t for t in titles if host is None or f"@{host}]" in t]

    def close(self) -> None:
        self._http.close()
