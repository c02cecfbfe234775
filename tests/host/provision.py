"""What an operator does on a fresh host, done inside a booted container (tests/host/machine.py).

`install_watcher` follows docs/deployment.md section 1 to the letter: copy the checkout in, run
systemd/install.sh with a wheelhouse (`PIP_ARGS=--no-index --find-links`), create the system
user, write the config, `rollback-watcher check`, `systemctl enable --now`. `install_shop_api`
builds the site it watches: the demo app (watcher/demo/app.py) as `shop-api.service`, run by
its own user from the Capistrano layout /srv/shop-api/{releases/<id>,current}, scraped by a
real Prometheus (the host's Debian binary, bound in read-only) as `prometheus.service`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from host.machine import BootedSystem

REPO = Path(__file__).resolve().parents[2]
# Where the host's files are bound read-only: the checkout's copy, the wheelhouse, Prometheus.
SRC_INSIDE, WHEELS_INSIDE, PROMETHEUS_INSIDE = "/mnt/src", "/mnt/wheels", "/mnt/prometheus"
PREFIX = "/opt/rollback-watcher"
CLI = f"{PREFIX}/bin/rollback-watcher"
CONFIG = "/etc/rollback-watcher/watcher.yaml"
APP_PORT = 8000
PROMETHEUS_PORT = 9090
TELEMETRY = "127.0.0.1:9464"
NOTIFY_SINK_PORT = 8025  # a json:// receiver inside the container (notify-sink.service)
NOTIFY_SINK_DIR = "/var/lib/notify-sink"

# Release r2 answers 50% of its requests with 500: only the Prometheus rule sees it (its /health
# stays 200), so a rollback proves that the watcher reads the real Prometheus in the container.
RELEASES = {"r1": {"release": "r1"}, "r2": {"release": "r2", "error_ratio": 0.5}}

RULES = """\
rules:
  - name: http-5xx-ratio
    query: sum(rate(http_requests_total{code=~"5.."}[$window])) / sum(rate(http_requests_total[$window]))
    above: 0.10
    for: 2s
    action: rollback
  # Host signals: notify only, the host's own OOM kills must not roll the site back.
  - name: oom-kills
    host: oom_kills
    action: notify
  - name: app-restarts
    host: unit_restarts
    unit: shop-api.service
    action: notify
"""


def watcher_config(prometheus: str = f"http://127.0.0.1:{PROMETHEUS_PORT}", restart: str = "systemctl",
                   timeout: str = "2s") -> str:
    """The site's watcher.yaml (JSON is YAML). `restart` "slow" runs /usr/local/bin/slow-reload
    (a sleep, then the same systemctl reload), the window a stop-during-rollback test needs."""
    restart_argv = ["systemctl", "reload", "shop-api.service"]
    if restart == "slow":
        restart_argv = ["/usr/local/bin/slow-reload"]
    return json.dumps({
        "service": "shop-api",
        "host": "container",
        "interval": "1s",
        "prometheus": {"url": prometheus, "timeout": timeout, "scrape_interval": "1s"},
        "rules": ["rules/*.yaml"],
        "watch_window": "10m",
        "mode": "act",
        "backend": {"type": "symlink", "releases": "/srv/shop-api/releases", "current": "/srv/shop-api/current",
                    "restart": restart_argv, "restart_fallback": ["systemctl", "restart", "shop-api.service"]},
        "verify": {"url": f"http://127.0.0.1:{APP_PORT}/health", "attempts": 20, "every": "500ms"},
        "safety": {"cooldown": "0s", "max_auto_rollbacks": 5},
        # Apprise's json:// to a receiver in the container: the messages (and the pictures the
        # notifier draws under the shipped sandbox) as on-call would get them.
        "notify": [{"url": f"json://127.0.0.1:{NOTIFY_SINK_PORT}/hook", "min_severity": "success"}],
        "state_dir": "/var/lib/rollback-watcher",
        "telemetry": {"listen": TELEMETRY},
    }, indent=1) + "\n"


def binds(workdir: Path, cache: Path, prometheus: str) -> dict[str, str]:
    """Host path -> path inside, for BootedSystem."""
    return {str(source_copy(workdir)): SRC_INSIDE, str(wheelhouse(cache)): WHEELS_INSIDE, prometheus: PROMETHEUS_INSIDE}


def source_copy(workdir: Path) -> Path:
    """The checkout's files (tracked and new, as `git ls-files` lists them) and a wheelhouse:
    the dependencies' wheels are built once per pyproject.toml into `cache` (`pip wheel`
    resolves through the machine's special index, ~50 s), the project itself is built inside
    by install.sh from the copied source, as on a real host."""
    src = workdir / "src"
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           capture_output=True, check=True).stdout.split(b"\0")
    for name in filter(None, (f.decode() for f in files)):
        origin = REPO / name
        if not os.path.lexists(origin):
            continue  # deleted in the work tree, not yet in git
        target = src / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(origin, target, follow_symlinks=False)
    return src


def wheelhouse(cache: Path) -> Path:
    digest = hashlib.sha256((REPO / "pyproject.toml").read_bytes()).hexdigest()[:12]
    wheels = cache / f"wheels-{digest}"
    if wheels.is_dir():
        return wheels
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{wheels.name}.tmp.", dir=cache))
    pip = REPO / ".venv" / "bin" / "pip"
    done = subprocess.run([str(pip), "wheel", "--quiet", "--disable-pip-version-check", "-w", str(tmp), str(REPO),
                           "setuptools"], capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise AssertionError(f"`pip wheel` of the project's dependencies failed:\n{done.stderr[-2000:]}")
    for own in tmp.glob("rollback_watcher-*.whl"):
        own.unlink()  # the project is built inside from its source, never from a stale wheel
    os.chmod(tmp, 0o755)
    try:
        tmp.rename(wheels)  # complete or absent: an interrupted build is never used
    except OSError:
        if not wheels.is_dir():
            raise
        shutil.rmtree(tmp, ignore_errors=True)  # another run built it meanwhile
    return wheels


def install_watcher(machine: BootedSystem) -> str:
    """docs/deployment.md section 1, as root on the host. Returns install.sh's output."""
    machine.run("cp", "-a", f"{SRC_INSIDE}/.", "/root/rollback-watcher")
    out = machine.sh(f'PIP_ARGS="--no-index --find-links {WHEELS_INSIDE}" sh /root/rollback-watcher/systemd/install.sh',
                     timeout=300).stdout
    machine.run("useradd", "--system", "--home-dir", "/var/lib/rollback-watcher", "--shell", "/usr/sbin/nologin",
                "rollback-watcher")
    return out


def install_shop_api(machine: BootedSystem) -> None:
    """The app's user and group, its releases (group-writable for the watcher, as
    docs/deployment.md section 3 says), its unit, and Prometheus scraping it."""
    machine.sh("""
        groupadd --system shop-api
        useradd --system --gid shop-api --home-dir /srv/shop-api --shell /usr/sbin/nologin shop-api
        mkdir -p /srv/shop-api/releases
    """)
    for rid, settings in RELEASES.items():
        machine.write(f"/srv/shop-api/releases/{rid}/settings.json", json.dumps(settings) + "\n")
    machine.sh("""
        ln -s releases/r1 /srv/shop-api/current
        chown -hR shop-api:shop-api /srv/shop-api
        chmod 2775 /srv/shop-api /srv/shop-api/releases
    """)
    machine.write("/etc/systemd/system/shop-api.service", f"""\
[Unit]
Description=shop-api (the demo app of rollback-watcher's tests)

[Service]
User=shop-api
ExecStart={PREFIX}/bin/python -m watcher.demo.app --port {APP_PORT} --release boot --settings /srv/shop-api/current/settings.json
# The app re-reads settings.json through `current` on SIGHUP: that is a deploy's reload.
ExecReload=/bin/kill -HUP $MAINPID

[Install]
WantedBy=multi-user.target
""")
    machine.write("/etc/prometheus-test/prometheus.yml", f"""\
global: {{scrape_interval: 1s, evaluation_interval: 1s}}
scrape_configs:
  - job_name: shop-api
    static_configs: [{{targets: ["127.0.0.1:{APP_PORT}"]}}]
""")
    machine.write("/etc/systemd/system/prometheus.service", f"""\
[Service]
DynamicUser=true
StateDirectory=prometheus-test
ExecStart={PROMETHEUS_INSIDE} --config.file=/etc/prometheus-test/prometheus.yml --storage.tsdb.path=/var/lib/prometheus-test --web.listen-address=127.0.0.1:{PROMETHEUS_PORT}

[Install]
WantedBy=multi-user.target
""")
    # A json:// receiver: each POSTed body as NOTIFY_SINK_DIR/<n>.json.
    machine.write("/usr/local/bin/notify-sink", f"""\
#!/usr/bin/python3
import itertools, os, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
count = itertools.count(1)
class Sink(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        path = os.path.join("{NOTIFY_SINK_DIR}", f"{{next(count):04d}}.json")
        with open(path + ".tmp", "wb") as out:
            out.write(body)
        os.rename(path + ".tmp", path)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
HTTPServer(("127.0.0.1", {NOTIFY_SINK_PORT}), Sink).serve_forever()
""", "0755")
    machine.write("/etc/systemd/system/notify-sink.service", """\
[Service]
StateDirectory=notify-sink
ExecStart=/usr/local/bin/notify-sink

[Install]
WantedBy=multi-user.target
""")
    # A restart that takes long enough to stop the watcher in the middle of it.
    machine.write("/usr/local/bin/slow-reload", "#!/bin/sh\nsleep 6\nexec systemctl reload shop-api.service\n", "0755")
    machine.systemctl("daemon-reload")
    machine.systemctl("enable", "--now", "shop-api.service", "prometheus.service", "notify-sink.service")


def install_polkit_rule(machine: BootedSystem) -> None:
    """docs/deployment.md section 4: the shipped rule, copied as the docs say."""
    machine.run("install", "-m", "0644", f"{PREFIX}/share/doc/50-rollback-watcher.rules",
                "/etc/polkit-1/rules.d/50-rollback-watcher.rules")


def http_get(machine: BootedSystem, url: str, timeout: float = 3.0) -> tuple[int, str]:
    """GET inside the container's network namespace (its own loopback): (status, body);
    status 0 when nothing answers."""
    script = (
        "import sys, urllib.request, urllib.error\n"
        "try:\n"
        f"    r = urllib.request.urlopen(sys.argv[1], timeout={timeout})\n"
        "    print(r.status); print(r.read().decode(), end='')\n"
        "except urllib.error.HTTPError as e:\n"
        "    print(e.code); print(e.read().decode(), end='')\n"
        "except OSError as e:\n"
        "    print(0); print(e, end='')\n"
    )
    out = machine.run("python3", "-c", script, url, timeout=timeout + 30).stdout
    status, _, body = out.partition("\n")
    return int(status), body
