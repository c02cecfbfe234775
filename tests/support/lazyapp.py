"""A small web app instrumented the way real Python apps are: the real `prometheus_client`, its
default registry, labelled metrics whose series appear on their first use.

    python tests/support/lazyapp.py --port P [--release ID] [--settings FILE] [--exit-with-parent]

Unlike the project's own demo app (watcher/demo/app.py), nothing here is pre-created or
synthetic: `http_requests_total{method,code}` has no series until the first request is served,
no `code="500"` series while every answer is 200, and `http_request_duration_seconds{method}`
(a histogram) likewise. Every count is a real HTTP request served by this process; a crash is
the process exiting. The watcher must cope with that world, which it did not build.

Served (counted, as an app counts its own routes):
    GET  /              the app's work: sleeps `latency_s`, answers 200, or 500 for `error_ratio`
                        of requests (spread evenly: 40% is exactly 2 in every 5)
Not counted (as most apps leave their infrastructure routes out):
    GET  /health        `health_status` (default 200)
    GET  /metrics       prometheus_client's exposition of the default registry
    GET  /-/control     the settings as JSON;  POST /-/control  a JSON object of settings to change
    POST /-/crash       the process exits with status 3 at once (after answering)

Settings (the JSON of --settings FILE, read at start and on SIGHUP; or POST /-/control):
    error_ratio         share of `/` answered 500 (default 0)
    latency_s           time `/` takes (default 0.002)
    rps                 requests per second the app's own traffic generator sends to
                        `traffic_url` (default 0: no traffic; the test drives it)
    traffic_url         where the generator sends (default this app's `/`; a proxy in front of
                        it, to count the traffic there too)
    warmup_s            for this long after the process starts, `warmup_error_ratio` and
    warmup_error_ratio  `warmup_latency_s` replace error_ratio and latency_s (a start-up burst)
    warmup_latency_s
    crash_after_s       exit with status 3 this long after the process starts (0: at once,
                        before serving: a release that cannot start)
    health_status       the status of /health (default 200)
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest

CRASH_EXIT_CODE = 3

# Named as the prometheus_client docs name them; the library adds `_total` (and `_created`).
REQUESTS = Counter("http_requests", "HTTP requests served, by method and status code", ["method", "code"])
LATENCY = Histogram("http_request_duration_seconds", "Time spent serving a request", ["method"])

DEFAULTS = {
    "error_ratio": 0.0, "latency_s": 0.002, "rps": 0.0, "traffic_url": None, "warmup_s": 0.0,
    "warmup_error_ratio": None, "warmup_latency_s": None, "crash_after_s": None, "health_status": 200,
}


class App:
    def __init__(self, port: int, release: str, settings_file: Path | None):
        self.port = port
        self.release = release
        self.settings_file = settings_file
        self.started = time.monotonic()
        self.lock = threading.Lock()
        self.settings = dict(DEFAULTS)
        self.served = 0  # requests of `/`, for the even spread of errors
        self.errors = 0
        self.reload()

    def reload(self) -> None:
        if self.settings_file is not None:
            self.change(json.loads(self.settings_file.read_text()))

    def change(self, changes: dict) -> dict:
        unknown = set(changes) - set(DEFAULTS) - {"release"}
        if unknown:
            raise ValueError(f"unknown settings: {', '.join(sorted(unknown))}")
        with self.lock:
            self.release = changes.get("release", self.release)
            self.settings.update({k: v for k, v in changes.items() if k != "release"})
            return self.snapshot()

    def snapshot(self) -> dict:
        return {"release": self.release, **self.settings, "pid": os.getpid()}

    def _now_setting(self, name: str):
        s = self.settings
        warm = s.get(f"warmup_{name}")
        if warm is not None and time.monotonic() - self.started < float(s["warmup_s"] or 0):
            return warm
        return s[name]

    def work(self) -> tuple[int, float]:
        """The status and the latency of the next `/` request: errors spread evenly, so that
        a share of 0.4 is exactly 2 in every 5."""
        with self.lock:
            ratio = float(self._now_setting("error_ratio"))
            latency = float(self._now_setting("latency_s"))
            self.served += 1
            fail = self.errors < int(self.served * ratio + 1e-9)
            self.errors += fail
        return (500 if fail else 200), latency


def handler_for(app: App):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _send(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):  # noqa: N802 - http.server's name
            if self.path == "/metrics":
                return self._send(200, generate_latest(), CONTENT_TYPE_LATEST)
            if self.path == "/health":
                return self._send(int(app.settings["health_status"]), b"ok\n")
            if self.path == "/-/control":
                return self._send(200, json.dumps(app.snapshot()).encode(), "application/json")
            if self.path.split("?")[0] == "/":
                started = time.perf_counter()
                status, latency = app.work()
                time.sleep(latency)
                self._send(status, f"{app.release}\n".encode())
                # As an instrumented handler does: after the answer, labelled by what it was.
                REQUESTS.labels(method="get", code=str(status)).inc()
                LATENCY.labels(method="get").observe(time.perf_counter() - started)
                return None
            return self._send(404, b"not found\n")

        def do_POST(self):  # noqa: N802
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if self.path == "/-/control":
                try:
                    snapshot = app.change(json.loads(body or b"{}"))
                except ValueError as exc:
                    return self._send(400, f"{exc}\n".encode())
                return self._send(200, json.dumps(snapshot).encode(), "application/json")
            if self.path == "/-/crash":
                self._send(200, b"crashing\n")
                self.wfile.flush()
                os._exit(CRASH_EXIT_CODE)
            return self._send(404, b"not found\n")

        def log_message(self, *args):
            pass

    return Handler


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A proxy's health check or a client that gives up closes the connection mid-request:
        # not the app's error, and no traceback in its log.
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


def generate_traffic(app: App) -> None:
    """The app's own clients: `rps` GETs a second to `traffic_url`, paced by a schedule (a slow
    answer does not lower the rate below what the server can take), 0 rps sends nothing."""
    next_at = time.monotonic()
    while True:
        rps = float(app.settings["rps"] or 0)
        if rps <= 0:
            time.sleep(0.1)
            next_at = time.monotonic()
            continue
        next_at += 1.0 / rps
        delay = next_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        elif delay < -1.0:
            next_at = time.monotonic()  # fell behind by more than a second: do not burst to catch up
        if float(app.settings["rps"] or 0) <= 0:
            # Settings changed during the sleep (a reload to a release without traffic): the
            # request scheduled before must not be sent. Sent, it reached the restored release
            # up to a second after the switch, and a confirmation meant to see no traffic saw
            # one good request and said "verified" (the shipped quiet-after-rollback scenario).
            continue
        url = app.settings["traffic_url"] or f"http://127.0.0.1:{app.port}/"
        threading.Thread(target=_get, args=(url,), daemon=True).start()


def _get(url: str) -> None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            response.read()
    except (urllib.error.URLError, OSError):
        pass  # a 5xx, a refused connection: the server's metrics count what happened


def exit_with_parent() -> None:
    parent = os.getppid()
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--release", default="r1")
    parser.add_argument("--settings", type=Path)
    parser.add_argument("--exit-with-parent", action="store_true")
    args = parser.parse_args(argv)
    app = App(args.port, args.release, args.settings)
    crash_after = app.settings["crash_after_s"]
    if crash_after is not None:
        if float(crash_after) <= 0:
            print(f"release {app.release} cannot start (crash_after_s: {crash_after})", file=sys.stderr)
            return CRASH_EXIT_CODE
        threading.Timer(float(crash_after), os._exit, args=(CRASH_EXIT_CODE,)).start()
    signal.signal(signal.SIGHUP, lambda *_: app.reload())
    server = Server(("127.0.0.1", args.port), handler_for(app))
    threading.Thread(target=generate_traffic, args=(app,), daemon=True).start()
    if args.exit_with_parent:
        threading.Thread(target=exit_with_parent, daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
