"""A Prometheus on loopback with realistic series counts: three demo apps, a many-series
exporter (bench/exporter.py, 100 pods: ~3,400 series) and Prometheus' own metrics."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import httpx
from common import PY, REPO, Proc, wait_for

from support import DemoAppProcess, PrometheusServer, free_port


class Env:
    def __init__(self, pods: int = 100, apps: int = 3, scrape_s: float = 1.0):
        self.work = Path(tempfile.mkdtemp(prefix="bench-env-"))
        self.pods, self.n_apps, self.scrape_s = pods, apps, scrape_s
        self.apps: list[DemoAppProcess] = []
        self.exporter = None
        self.prom = None

    def __enter__(self) -> Env:
        try:
            for i in range(self.n_apps):
                self.apps.append(DemoAppProcess(self.work / f"app{i}", f"r{i}", settings={"error_ratio": 0.0}).start())
            self.exporter_port = free_port()
            self.exporter = Proc([PY, str(REPO / "bench" / "exporter.py"), "--port", str(self.exporter_port),
                                  "--pods", str(self.pods)], self.work / "exporter.log")
            wait_for(lambda: _ok(f"http://127.0.0.1:{self.exporter_port}/health"), 15, what="exporter")
            self.prom = PrometheusServer(self.work / "prom", targets=[a.target for a in self.apps],
                                         scrape_interval=self.scrape_s)
            self.prom.extra_config = {"scrape_configs": [
                {"job_name": "demo", "static_configs": [{"targets": [a.target for a in self.apps]}]},
                {"job_name": "bench", "static_configs": [{"targets": [f"127.0.0.1:{self.exporter_port}"]}]},
                {"job_name": "prometheus", "static_configs": [{"targets": [f"127.0.0.1:{self.prom.port}"]}]},
            ]}
            self.prom.start()
            self.prom.wait_for_series('count(up == 1) >= 3', timeout=30)
            self.prom.wait_for_series('count(bench_http_requests_total) > 0', timeout=30)
            time.sleep(3 * self.scrape_s)  # a few samples for the rates
        except BaseException:
            self.__exit__()
            raise
        return self

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.exporter_port}/health"

    def series(self) -> int:
        try:
            return int(self.prom.value("prometheus_tsdb_head_series") or 0)
        except Exception:  # noqa: BLE001 - a figure for the report only
            return 0

    def __exit__(self, *exc):
        if self.prom:
            self.prom.stop()
        if self.exporter:
            self.exporter.stop()
        for a in self.apps:
            a.stop()
        shutil.rmtree(self.work, ignore_errors=True)


def _ok(url):
    try:
        return httpx.get(url, timeout=1, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False
