"""A small controllable HTTP service that stands in for "the app" in tests, the demo and benchmarks.

    python -m watcher.demo.app --port P --release ID [--settings FILE] [--exit-with-parent]

It generates its own traffic: a background thread records synthetic requests at `rps` into
`http_requests_total{code}` and `http_request_duration_seconds`, without serving or sleeping
through them, so several copies run cheaply on a small machine. Real HTTP requests (probes,
scrapes, control) are NOT counted, so the ratios Prometheus sees are exactly the configured ones.

Endpoints:
    GET  /metrics   Prometheus text format
    GET  /health    "ok" with `health_status` (default 200); hangs while `health_hang` is true
    GET  /version   the release id
    GET  /control   the current settings as JSON
    POST /control   JSON object of settings to change now; answers with the new settings

Settings (the JSON of `--settings FILE`, read at start and on SIGHUP, and the body of /control):
    error_ratio    fraction of synthetic requests answered 500 (default 0.0)
    latency_s      the p95 that histogram_quantile(0.95, ...) reports (default 0.005)
    rps            synthetic requests per second (default 50)
    health_status  status code of /health (default 200)
    health_hang    /health does not answer while true (default false)
    oom_kills      add N to demo_oom_kills_total once, `oom_delay_s` after it is set (default 0)
    oom_delay_s    see above (default 3.0): Prometheus' increase() ignores the first sample of
                   a series, so a count present at the first scrape would be invisible
    crash          exit with status 3 at once (after answering /control) (default false)
    release        replaces the release id (for a SIGHUP "deploy" in place)
    warmup_s       for this many seconds after the settings are applied, warmup_error_ratio and
                   warmup_latency_s (when set) replace error_ratio and latency_s (default 0)
    flap_s         on and off: error_ratio for flap_s seconds, then none for flap_s seconds,
                   and so on from when the settings are applied (default 0: steady)

A release of the demo app is made good or bad by the settings file in its release dir.
"""

from __future__ import annotations

import argparse
import bisect
import json
import math
import os
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, fields, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

# Fine enough to tell 1 ms from 8 ms and 50 ms from 400 ms.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
QUANTILE = 0.95
TICK_S = 0.2  # how often the traffic thread wakes: 5 wake-ups a second keeps CPU near zero
CRASH_EXIT_CODE = 3


@dataclass(frozen=True)
class Settings:
    error_ratio: float = 0.0
    latency_s: float = 0.005
    rps: float = 50.0
    health_status: int = 200
    health_hang: bool = False
    oom_kills: int = 0
    oom_delay_s: float = 3.0
    crash: bool = False
    release: str | None = None
    # A warm-up: for `warmup_s` seconds after these settings are applied (a start, a SIGHUP
    # deploy), these replace error_ratio / latency_s (cold caches, pools filling).
    warmup_s: float = 0.0
    warmup_error_ratio: float | None = None
    warmup_latency_s: float | None = None
    # A release that fails on and off (a bad cache node behind it, half of a pool): error_ratio
    # for flap_s seconds, then none for flap_s seconds.
    flap_s: float = 0.0

    def updated(self, changes: dict[str, Any]) -> Settings:
        """A copy with `changes` applied; ValueError names the first bad key."""
        types = {f.name: str(f.type) for f in fields(self)}  # annotations are strings here
        clean: dict[str, Any] = {}
        for key, value in changes.items():
            if key not in types:
                raise ValueError(f"unknown setting {key!r} (known: {', '.join(types)})")
            clean[key] = _coerce(key, types[key], value)
        new = replace(self, **clean)
        if not 0.0 <= new.error_ratio <= 1.0:
            raise ValueError("error_ratio must be between 0 and 1")
        if new.latency_s <= 0 or new.rps < 0 or new.oom_kills < 0 or new.oom_delay_s < 0 or new.flap_s < 0:
            raise ValueError("latency_s must be > 0; rps, oom_kills, oom_delay_s and flap_s >= 0")
        return new


def _coerce(key: str, type_name: str, value: object) -> object:
    # JSON gives ints for floats ("rps": 50); bools are ints in Python, so refuse them for numbers.
    if type_name == "bool" and isinstance(value, bool):
        return value
    if type_name == "int" and isinstance(value, int) and not isinstance(value, bool):
        return value
    if type_name == "float" and isinstance(value, (int, float)) and not isinstance(value, bool):
        if math.isfinite(value):
            return float(value)
    if type_name == "str | None" and (value is None or isinstance(value, str)):
        return value
    if type_name == "float | None":
        if value is None:
            return None
        return _coerce(key, "float", value)
    raise ValueError(f"{key}: expected {type_name}, got {value!r}")


def load_settings(path: Path | None) -> Settings:
    if path is None:
        return Settings()
    data = json.loads(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return Settings().updated(data)


@dataclass(frozen=True)
class LatencyMix:
    """Where synthetic latencies go so that histogram_quantile(0.95) reports `latency_s`.

    histogram_quantile finds the bucket holding the 95th percentile and interpolates linearly
    inside it. A fixed observed value would be reported anywhere in its bucket (8 ms reads as
    9.75 ms, 150 ms as 242 ms), which blurs "3x" and "5x" regressions. So a fraction `below` is
    observed under the bucket, `inside` at the target itself, and `above` over the bucket, in
    the proportions that make the interpolation land on the target.
    """

    below: float
    above: float
    low_value: float  # observed for the `below` share
    value: float
    high_value: float  # observed for the `above` share

    @staticmethod
    def for_p95(latency_s: float) -> LatencyMix:
        i = bisect.bisect_left(BUCKETS, latency_s)
        if i == len(BUCKETS):  # beyond the last bucket: Prometheus reports the last bound
            return LatencyMix(0.0, 0.0, latency_s, latency_s, latency_s)
        lo = BUCKETS[i - 1] if i > 0 else 0.0
        hi = BUCKETS[i]
        r = (latency_s - lo) / (hi - lo)  # where the target sits in its bucket, 0..1
        high_value = BUCKETS[i + 1] if i + 1 < len(BUCKETS) else hi * 2
        if r >= QUANTILE or lo == 0.0:
            # Nothing below the bucket: put 1 - 0.95/r above it (none in the first bucket).
            above = max(0.0, 1.0 - QUANTILE / r) if r > 0 else 0.0
            return LatencyMix(0.0, above, latency_s, latency_s, high_value)
        # Nothing above: the bucket's share is 0.05 / (1 - r), the rest lies below it.
        inside = (1.0 - QUANTILE) / (1.0 - r)
        return LatencyMix(1.0 - inside, 0.0, lo / 2, latency_s, high_value)


class Metrics:
    """The app's own registry, so that nothing global leaks into the exposition."""

    def __init__(self, release: str):
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "http_requests_total", "Synthetic requests by status code.", ["code"], registry=self.registry
        )
        self.duration = Histogram(
            "http_request_duration_seconds", "Synthetic request latency.", buckets=BUCKETS, registry=self.registry
        )
        self.oom_kills = Counter("demo_oom_kills_total", "Stands in for the kernel's OOM kills.", registry=self.registry)
        self.build_info = Gauge("app_build_info", "The running release.", ["release"], registry=self.registry)
        # Both codes exist from the first scrape: rate() needs two samples of a series, so a
        # 500 series born with the first error would hide that error.
        self.requests.labels(code="200")
        self.requests.labels(code="500")
        self.release = release
        self.build_info.labels(release=release).set(1)

    def set_release(self, release: str) -> None:
        if release != self.release:
            self.build_info.remove(self.release)
            self.build_info.labels(release=release).set(1)
            self.release = release


class Traffic:
    """Records synthetic requests in exact proportions: after n requests in total, the number
    of errors is floor(n * error_ratio), so short windows show the configured ratio too."""

    def __init__(self, metrics: Metrics):
        self.metrics = metrics
        self.total = 0
        self.carry = 0.0  # fractional requests owed from earlier ticks

    def record(self, settings: Settings, seconds: float) -> None:
        self.carry += settings.rps * seconds
        n = int(self.carry)
        self.carry -= n
        before, after = self.total, self.total + n
        self.total = after
        errors = _share(before, after, settings.error_ratio)
        self.metrics.requests.labels(code="500").inc(errors)
        self.metrics.requests.labels(code="200").inc(n - errors)
        mix = LatencyMix.for_p95(settings.latency_s)
        below = _share(before, after, mix.below)
        above = _share(before, after, mix.above)
        for value, count in ((mix.low_value, below), (mix.high_value, above), (mix.value, n - below - above)):
            for _ in range(count):
                self.metrics.duration.observe(value)


def _share(before: int, after: int, fraction: float) -> int:
    return math.floor(after * fraction + 1e-9) - math.floor(before * fraction + 1e-9)


class DemoApp:
    def __init__(self, port: int, release: str, settings: Settings, settings_file: Path | None):
        self.metrics = Metrics(settings.release or release)
        self.traffic = Traffic(self.metrics)
        self.settings_file = settings_file
        self.lock = threading.Lock()
        self.settings = Settings()
        self.stopping = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", port), _handler_for(self))
        self.server.daemon_threads = True  # a hanging /health must not block shutdown
        self.apply(settings)

    def apply(self, settings: Settings) -> None:
        """Make `settings` current and carry out its one-shot actions."""
        with self.lock:
            self.settings = replace(settings, oom_kills=0, crash=False)
            self.applied_at = time.monotonic()
        if settings.release:
            self.metrics.set_release(settings.release)
        if settings.oom_kills:
            timer = threading.Timer(settings.oom_delay_s, self.metrics.oom_kills.inc, [settings.oom_kills])
            timer.daemon = True
            timer.start()
        if settings.crash:
            # After the response is written: a crash requested over /control should still answer.
            threading.Timer(0.05, os._exit, [CRASH_EXIT_CODE]).start()

    def current(self) -> Settings:
        with self.lock:
            s = self.settings
            if s.flap_s and int((time.monotonic() - self.applied_at) / s.flap_s) % 2 == 1:
                s = replace(s, error_ratio=0.0)  # the "off" half of a flapping release
            if s.warmup_s and time.monotonic() - self.applied_at < s.warmup_s:
                warm: dict[str, Any] = {}
                if s.warmup_error_ratio is not None:
                    warm["error_ratio"] = s.warmup_error_ratio
                if s.warmup_latency_s is not None:
                    warm["latency_s"] = s.warmup_latency_s
                return replace(s, **warm)
            return s

    def reload(self) -> None:
        """SIGHUP: read the settings file again (through a `current` symlink it is the new
        release's), keeping the old settings when it is broken."""
        try:
            self.apply(load_settings(self.settings_file))
        except (OSError, ValueError) as exc:
            print(f"demoapp: reload failed, keeping settings: {exc}", file=sys.stderr, flush=True)

    def traffic_loop(self, parent_pid: int | None) -> None:
        last = time.monotonic()
        while not self.stopping.wait(TICK_S):
            if parent_pid is not None and os.getppid() != parent_pid:
                # Our starter died without stopping us (SIGKILLed test run): do not linger.
                os._exit(0)
            now = time.monotonic()
            self.traffic.record(self.current(), now - last)
            last = now

    def serve(self, parent_pid: int | None) -> None:
        thread = threading.Thread(target=self.traffic_loop, args=(parent_pid,), daemon=True)
        thread.start()
        try:
            self.server.serve_forever(poll_interval=0.5)
        finally:
            self.stopping.set()
            self.server.server_close()


def _handler_for(app: DemoApp) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, generate_latest(app.metrics.registry), CONTENT_TYPE_LATEST)
            elif path == "/health":
                self._health()
            elif path == "/version":
                self._send(200, app.metrics.release.encode() + b"\n")
            elif path == "/control":
                self._json(200, asdict(app.current()))
            else:
                self._send(404, b"not found\n")

        def do_POST(self) -> None:
            if self.path.split("?", 1)[0] != "/control":
                self._send(404, b"not found\n")
                return
            try:
                length = int(self.headers.get("Content-Length") or 0)
                changes = json.loads(self.rfile.read(length) or b"{}")
                if not isinstance(changes, dict):
                    raise ValueError("expected a JSON object")
                new = app.current().updated(changes)
            except ValueError as exc:  # json.JSONDecodeError is a ValueError
                self._json(400, {"error": str(exc)})
                return
            app.apply(new)
            self._json(200, asdict(app.current()))

        def _health(self) -> None:
            while app.current().health_hang and not app.stopping.is_set():
                time.sleep(0.1)
            status = app.current().health_status
            self._send(status, b"ok\n" if status == 200 else b"unhealthy\n")

        def _json(self, status: int, body: dict[str, Any]) -> None:
            self._send(status, json.dumps(body).encode() + b"\n", "application/json")

        def _send(self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # scrapes every second would fill the log

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m watcher.demo.app", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--release", required=True)
    parser.add_argument("--settings", type=Path, help="JSON file of settings, read at start and on SIGHUP")
    parser.add_argument("--exit-with-parent", action="store_true", help="exit when the starting process dies")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.settings)
    except (OSError, ValueError) as exc:
        print(f"demoapp: {exc}", file=sys.stderr)
        return 2
    if settings.crash:  # a release that dies on start never becomes ready
        print("demoapp: crash requested by settings", file=sys.stderr)
        return CRASH_EXIT_CODE
    app = DemoApp(args.port, args.release, settings, args.settings)
    signal.signal(signal.SIGHUP, lambda *_: app.reload())
    # SystemExit unwinds serve_forever through its `finally`, which closes the socket.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"demoapp: release {app.metrics.release} on 127.0.0.1:{args.port}", file=sys.stderr, flush=True)
    app.serve(os.getppid() if args.exit_with_parent else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
