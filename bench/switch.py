"""Switch time of the symlink, nginx-bluegreen (a real nginx on loopback) and command backends:
backend.switch() alone, alternating between two releases, no restart configured."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from common import median, p95, SymlinkHost
from watcher.backends.base import Release
from watcher.backends.command import CommandBackend
from watcher.backends.nginx import NginxBlueGreenBackend
from watcher.backends.symlink import SymlinkBackend
from watcher.sandbox import free_port

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
    host = SymlinkHost(work / "sym", serve=False)
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
    d = work / "nginx"
    (d / "temp").mkdir(parents=True)
    ups = {"blue": _upstream("r1"), "green": _upstream("r2")}
    addr = {k: f"127.0.0.1:{s.server_address[1]}" for k, s in ups.items()}
    upstream_file = d / "upstream.conf"
    upstream_file.write_text(f"server {addr['blue']}; # slot blue\n")
    port = free_port()
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf = d / "nginx.conf"
    temp = d / "temp"
    conf.write_text(f"""{user}worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {temp}/body; proxy_temp_path {temp}/proxy; fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi; scgi_temp_path {temp}/scgi;
    upstream app {{ include {upstream_file}; }}
    server {{ listen 127.0.0.1:{port}; location / {{ proxy_pass http://app; }} }}
}}
""")
    argv = (str(NGINX), "-p", str(d), "-c", str(conf), "-e", str(d / "error.log"))
    proc = subprocess.Popen([*argv, "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/", timeout=1, trust_env=False).text == "r1":
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("nginx did not start")
            time.sleep(0.05)
        b = NginxBlueGreenBackend(upstream_file, addr, nginx=argv, version_url="http://{address}/", timeout=5)
        times = []
        for i in range(n):
            target = ["r2", "r1"][i % 2]
            t = time.perf_counter()
            b.switch(Release(target), "bench")
            times.append(time.perf_counter() - t)
            # nginx reloads asynchronously: let the new workers take over before the next switch
            # (not timed: the switch is done when `nginx -s reload` returns).
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/", timeout=1, trust_env=False).text == target:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.01)
        return times
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=5)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
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
