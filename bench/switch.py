"""Switch time of the symlink, nginx-bluegreen (a real nginx on loopback) and command backends:
backend.switch() alone, alternating between two releases, no restart configured."""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from common import SymlinkHost, median, p95

from support import NginxServer
from watcher.backends.base import Release
from watcher.backends.command import CommandBackend
from watcher.backends.nginx import NginxBlueGreenBackend
from watcher.backends.symlink import SymlinkBackend

NGINX = Path("/usr/sbin/nginx")


def _time_switches(backend, ids, n):
    times = []
    for i in range(n):
        target = Release(ids[i % 2])
        t = time.perf_counter()
        backend.switch(target, "bench")
        times.append(time.perf_counter() - t)
    return times


def bench_symlink(work: Path, n=200):
    host = SymlinkHost(work / "sym", releases=("r1", "r2"), serve=False)
    host.deploy("r1")
    b = SymlinkBackend(host.releases, host.current)
    return _time_switches(b, ["r2", "r1"], n)


def bench_command(work: Path, n=100):
    state = work / "cmd-current"
    state.write_text("r1\n")
    script = work / "switch.sh"
    script.write_text('#!/bin/sh\nprintf "%s\\n" "$1" > "$2.tmp" && mv "$2.tmp" "$2"\n')
    script.chmod(0o755)
    b = CommandBackend(current=("cat", str(state)), releases=("printf", "r2\\nr1\\n"),
                       switch=(str(script), "{target}", str(state)), timeout=10)
    return _time_switches(b, ["r2", "r1"], n)


def _upstream(version):
    class H(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body = version.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    s = ThreadingHTTPServer(("127.0.0.1", 0), H)
    s.daemon_threads = True
    threading.Thread(target=s.serve_forever, daemon=True).start()
    return s


def bench_nginx(work: Path, n=60):
    if not NGINX.exists():
        return None
    ups = {"blue": _upstream("r1"), "green": _upstream("r2")}
    addr = {k: f"127.0.0.1:{s.server_address[1]}" for k, s in ups.items()}
    upstream_file = work / "nginx" / "upstream.conf"
    upstream_file.parent.mkdir(parents=True)
    upstream_file.write_text(f"server {addr['blue']}; # slot blue\n")
    try:
        with NginxServer(work / "nginx", upstream_file, binary=str(NGINX)).start(expect_body="r1") as server:
            b = NginxBlueGreenBackend(upstream_file, addr, nginx=server.argv, version_url="http://{address}/", timeout=5)
            times = []
            for i in range(n):
                target = ["r2", "r1"][i % 2]
                t = time.perf_counter()
                b.switch(Release(target), "bench")
                times.append(time.perf_counter() - t)
                # nginx reloads asynchronously: let the new workers take over before the next
                # switch (not timed: the switch is done when `nginx -s reload` returns).
                server.wait_for_body(target, timeout=5)
            return times
    finally:
        for s in ups.values():
            s.shutdown()
            s.server_close()


def bench(results, log=print):
    work = Path(tempfile.mkdtemp(prefix="bench-switch-"))
    try:
        for name, fn in (("symlink", bench_symlink), ("nginx-bluegreen", bench_nginx), ("command", bench_command)):
            try:
                times = fn(work)
            except Exception as exc:  # noqa: BLE001 - reported in the table
                results.add("switch", f"{name}", f"failed: {exc}"[:40])
                continue
            if times is None:
                results.add("switch", f"{name}", "not installed")
                continue
            results.raw[f"switch_{name}"] = times
            results.add("switch", f"{name}: median / p95 of {len(times)} switches",
                        f"{median(times) * 1000:.2f} / {p95(times) * 1000:.2f} ms")
    finally:
        shutil.rmtree(work, ignore_errors=True)
