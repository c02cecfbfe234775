"""A loopback exporter with many series, for the tick-cost benchmark's Prometheus:

    python bench/exporter.py --port P --pods 100

bench_http_requests_total{pod,path,code}: pods x 5 paths x 4 codes counters, and
bench_http_request_duration_seconds_bucket{pod,le}: pods x 12 buckets, growing with time.
Also GET /health (200) for the 50 probe rules."""

import argparse
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PATHS = ("/", "/api/cart", "/api/items", "/api/login", "/static")
CODES = (("200", 40.0), ("404", 1.0), ("500", 0.5), ("503", 0.2))
LES = ("0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf")


def render(pods: int, start: float) -> bytes:
    t = time.time() - start + 1000
    out = ["# TYPE bench_http_requests_total counter"]
    for p in range(pods):
        for path in PATHS:
            for code, rate in CODES:
                out.append(f'bench_http_requests_total{{pod="pod-{p}",path="{path}",code="{code}"}} {rate * t * (1 + p % 7):.1f}')
    out.append("# TYPE bench_http_request_duration_seconds histogram")
    for p in range(pods):
        for i, le in enumerate(LES):
            out.append(f'bench_http_request_duration_seconds_bucket{{pod="pod-{p}",le="{le}"}} {t * 40 * (i + 1) / len(LES):.1f}')
        out.append(f'bench_http_request_duration_seconds_sum{{pod="pod-{p}"}} {t * 2:.1f}')
        out.append(f'bench_http_request_duration_seconds_count{{pod="pod-{p}"}} {t * 40:.1f}')
    return ("\n".join(out) + "\n").encode()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pods", type=int, default=100)
    args = ap.parse_args()
    start = time.time()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):  # noqa: N802
            body = render(args.pods, start) if self.path.startswith("/metrics") else b"ok"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    ThreadingHTTPServer.request_queue_size = 256  # the default backlog of 5 drops SYNs: 1 s retransmits
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
