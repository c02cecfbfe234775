"""Misbehaving peers for fault tests: real sockets on 127.0.0.1, not mocks of our code.

    FakePrometheus   speaks enough of /api/v1/query to be a healthy Prometheus, or, by `mode`,
                     one that is stopped, hangs, fails, lies or floods
    BadHttpServer    a health endpoint (or notification receiver) that resets, hangs, redirects
                     in a loop, streams forever, or records what it was sent
    free_port()      a port nobody listens on (closed: connection refused)
"""

from __future__ import annotations

import json
import socket
import threading
import time

# free_port comes from support.ports, not "bind port 0 and close": a number from the ephemeral
# range may be given to another process's connection before the test uses it.
from support.ports import free_port  # noqa: F401 - re-exported for the fault tests

HUGE_BYTES = 50 * 1024 * 1024


def _read_request(conn: socket.socket, limit: float = 5.0) -> bytes:
    conn.settimeout(limit)
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        while len(rest) < length:
            chunk = conn.recv(65536)
            if not chunk:
                break
            rest += chunk
        return head + b"\r\n\r\n" + rest
    except OSError:
        return data


def _response(status: str, body: bytes, headers: dict | None = None, ctype: str = "application/json") -> bytes:
    lines = [f"HTTP/1.1 {status}", f"Content-Type: {ctype}", f"Content-Length: {len(body)}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class _Server:
    """Accepts on 127.0.0.1; each connection is handled by `self.handle` in its own thread."""

    def __init__(self, port: int = 0):
        self._stop = threading.Event()
        self._listener: socket.socket | None = None
        self.port = port
        self.requests: list[bytes] = []
        self._open()

    def _open(self) -> None:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(64)
        self.port = s.getsockname()[1]
        self._listener = s
        threading.Thread(target=self._accept, args=(s,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            request = _read_request(conn)
            self.requests.append(request)
            self.handle(conn, request)
        except OSError:
            pass
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def handle(self, conn: socket.socket, request: bytes) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def stop_listening(self) -> None:
        """The port is closed: connections are refused."""
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def start_listening(self) -> None:
        if self._listener is None:
            self._open()

    def hang(self, conn: socket.socket, seconds: float = 60.0) -> None:
        self._stop.wait(seconds)

    def close(self) -> None:
        self._stop.set()
        self.stop_listening()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def vector(value: str = "0", labels: dict | None = None) -> dict:
    return {"status": "success", "data": {"resultType": "vector",
                                          "result": [{"metric": labels or {"job": "demo"}, "value": [time.time(), value]}]}}


class FakePrometheus(_Server):
    """`mode` says how the next queries are answered:

        ok            a vector with one series, value "0" (healthy for an `above: 0.5` rule)
        breach        the same series at "1" (the control: the rule fires)
        stopped       the port is closed
        hang          accepts, reads the query, never answers
        trickle       answers 200 but sends the body one byte every 0.3 s (each read is quick)
        500           HTTP 500 with a text body
        503           HTTP 503 with Retry-After: 3600
        bad_json      200 with a body that is not JSON
        status_error  200 with {"status": "error", ...} (no data)
        matrix        200 with a range vector where an instant vector is expected
        huge          200 with a 50 MB body
        nan / inf     a vector whose value is "NaN" / "+Inf"
        string_value  a vector whose value is "banana"
        raw           `self.raw` bytes as the whole HTTP response
    """

    def __init__(self):
        self.mode = "ok"
        self.raw = b""
        super().__init__()

    def set_mode(self, mode: str) -> None:
        self.mode = mode
        if mode == "stopped":
            self.stop_listening()
        else:
            self.start_listening()

    def handle(self, conn: socket.socket, request: bytes) -> None:
        mode = self.mode
        if mode == "stopped":  # accepted just before the port closed
            return
        if mode == "hang":
            return self.hang(conn)
        if mode == "trickle":
            body = json.dumps(vector("0")).encode()
            conn.sendall(_response("200 OK", b"", {}).replace(b"Content-Length: 0", f"Content-Length: {len(body)}".encode()))
            for i in range(len(body)):
                if self._stop.wait(0.3):
                    return
                conn.sendall(body[i:i + 1])
            return
        if mode == "raw":
            conn.sendall(self.raw)
            return
        answers = {
            "ok": ("200 OK", json.dumps(vector("0")).encode(), {}),
            "500": ("500 Internal Server Error", b"internal error\n", {}),
            "503": ("503 Service Unavailable", b"overloaded\n", {"Retry-After": "3600"}),
            "bad_json": ("200 OK", b'{"status": "success", "data": {"result": [', {}),
            "status_error": ("200 OK", json.dumps({"status": "error", "errorType": "bad_data",
                                                   "error": "parse error"}).encode(), {}),
            "matrix": ("200 OK", json.dumps({"status": "success", "data": {"resultType": "matrix", "result": [
                {"metric": {"job": "demo"}, "values": [[time.time(), "5"], [time.time(), "6"]]}]}}).encode(), {}),
            "breach": ("200 OK", json.dumps(vector("1")).encode(), {}),
            "nan": ("200 OK", json.dumps(vector("NaN")).encode(), {}),
            "inf": ("200 OK", json.dumps(vector("+Inf")).encode(), {}),
            "string_value": ("200 OK", json.dumps(vector("banana")).encode(), {}),
        }
        if mode == "huge":
            # A valid-looking reply padded to 50 MB with one enormous label value.
            head = b'{"status":"success","data":{"resultType":"vector","result":[{"metric":{"pad":"'
            tail = f'"}},"value":[{time.time()},"0"]}}]}}}}'.encode()
            pad = HUGE_BYTES - len(head) - len(tail)
            conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {HUGE_BYTES}\r\n"
                         "Connection: close\r\n\r\n".encode())
            conn.sendall(head)
            block = b"a" * (1 << 20)
            sent = 0
            try:
                while sent < pad:
                    n = min(len(block), pad - sent)
                    conn.sendall(block[:n])
                    sent += n
                conn.sendall(tail)
            except OSError:
                pass
            return
        status, body, headers = answers[mode]
        conn.sendall(_response(status, body, headers))


class BadHttpServer(_Server):
    """A health endpoint (or notification receiver) that misbehaves by `mode`:

        ok        200 "ok"
        reset     reads the request, then resets the connection (RST)
        slow      answers 200 after `delay` seconds
        redirect  302 to itself, forever
        stream    200, chunked, an endless body
        hang      accepts, never answers
    """

    def __init__(self, mode: str = "ok", delay: float = 5.0):
        self.mode = mode
        self.delay = delay
        super().__init__()

    def handle(self, conn: socket.socket, request: bytes) -> None:
        mode = self.mode
        if mode == "ok":
            conn.sendall(_response("200 OK", b"ok\n", ctype="text/plain"))
        elif mode == "reset":
            import struct

            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        elif mode == "slow":
            if not self._stop.wait(self.delay):
                conn.sendall(_response("200 OK", b"ok\n", ctype="text/plain"))
        elif mode == "redirect":
            conn.sendall(_response("302 Found", b"", {"Location": "/health"}))
        elif mode == "stream":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n")
            chunk = b"x" * 65536
            framed = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
            deadline = time.monotonic() + 30
            while not self._stop.is_set() and time.monotonic() < deadline:
                conn.sendall(framed)
        elif mode == "hang":
            self.hang(conn)


class UnauthorizedPrometheus(_Server):
    """A Prometheus behind an auth proxy that refuses the credential: HTTP 401 on every query,
    with a body that echoes the request's Authorization header and its first line back (some
    proxies and gateways do). Whatever the watcher does with the error text, the credential
    is in it."""

    def handle(self, conn: socket.socket, request: bytes) -> None:
        head = request.split(b"\r\n\r\n", 1)[0].decode(errors="replace").split("\r\n")
        auth = next((line for line in head if line.lower().startswith("authorization:")), "no Authorization header")
        body = json.dumps({"status": "error", "errorType": "unauthorized",
                           "error": f"credential refused: {auth} for {head[0]}"}).encode()
        conn.sendall(_response("401 Unauthorized", body, {"WWW-Authenticate": 'Basic realm="prometheus"'}))
