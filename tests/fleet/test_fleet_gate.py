"""`gate`, `fleet status` and `check --online` through the real CLI against a real etcd."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from support import free_port, run_cli, wait_for
from watcher.core.fleetmodel import BAD, FleetVerdict, Member

RULES = "rules:\n  - name: health\n    http: http://127.0.0.1:1/health\n    action: rollback\n"


def write_config(tmp_path: Path, name: str, endpoints, host: str = "deployer") -> Path:
    (tmp_path / "rules.yaml").write_text(RULES)
    cfg = {"service": "shop", "host": host, "rules": ["rules.yaml"], "state_dir": "state", "telemetry": False,
           "fleet": {"etcd": list(endpoints), "name": name, "lease": "3s", "timeout": "1s", "known_good_hosts": 2}}
    path = tmp_path / "watcher.yaml"
    path.write_text(json.dumps(cfg))
    return path


def gate(path, *args, timeout=60):
    return run_cli("gate", *args, "--config", path, timeout=timeout)


def test_gate_exits_2_unknown_0_known_good_1_bad(etcd, fleet_name, link, tmp_path):
    path = write_config(tmp_path, fleet_name, etcd.endpoints)
    out = gate(path, "r2")
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stdout.startswith("unknown: r2 is not known yet: needs 2 hosts to survive its watch window "
                                 "(known_good_hosts), 0 so far"), out.stdout

    a, b = link("web-a", known_good_hosts=2), link("web-b", known_good_hosts=2)
    a.publish_survived("r2", time.time())
    wait_for(lambda: "1 so far (web-a)" in gate(path, "r2").stdout, 30, what="gate counting web-a")
    b.publish_survived("r2", time.time())
    wait_for(lambda: "r2" in a.view().verdicts, 30, what="r2 known-good fleet-wide")
    out = gate(path, "r2", "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    assert json.loads(out.stdout)["answer"] == "go"

    a.publish_verdict(FleetVerdict("r3", BAD, "web-a", time.time(), "http-5xx-ratio", 0.3, "5xx 30%"))
    wait_for(lambda: gate(path, "r3").returncode == 1, 30, what="gate refusing r3")
    out = gate(path, "r3")
    assert "r3 is bad fleet-wide: rolled back on web-a (http-5xx-ratio)" in out.stdout


def test_canary_gate_waits_for_n_hosts_and_passes(etcd, fleet_name, link, tmp_path):
    path = write_config(tmp_path, fleet_name, etcd.endpoints)
    a = link("web-a")

    def later():
        time.sleep(2)
        a.publish_survived("r5", time.time())

    t = threading.Thread(target=later)
    t.start()
    started = time.monotonic()
    out = gate(path, "r5", "--wait", "--canary", "1", "--timeout", "60s", "--every", "500ms", timeout=90)
    t.join()
    assert out.returncode == 0, out.stdout + out.stderr
    assert "survived its watch window on 1 host(s) (web-a), canary 1" in out.stdout
    assert time.monotonic() - started >= 2  # it waited for the mark


def test_canary_gate_fails_when_the_release_turns_bad_while_waiting(etcd, fleet_name, link, tmp_path):
    path = write_config(tmp_path, fleet_name, etcd.endpoints)
    a = link("web-a")
    a.publish_survived("r6", time.time())  # one of two canaries survived ...

    def later():
        time.sleep(2)  # ... then the other rolled it back
        a.publish_verdict(FleetVerdict("r6", BAD, "web-b", time.time(), "p95-latency", 2.5, "p95 x12"))

    t = threading.Thread(target=later)
    t.start()
    out = gate(path, "r6", "--wait", "--canary", "2", "--timeout", "60s", "--every", "500ms", timeout=90)
    t.join()
    assert out.returncode == 1, out.stdout + out.stderr


def test_gate_times_out_unknown_and_etcd_down_is_unknown_never_go(etcd, fleet_name, tmp_path):
    path = write_config(tmp_path, fleet_name, etcd.endpoints)
    out = gate(path, "r7", "--wait", "--canary", "1", "--timeout", "2s", "--every", "500ms")
    assert out.returncode == 2 and "not known yet" in out.stdout
    dead = tmp_path / "dead"
    dead.mkdir()
    port = free_port()
    path = write_config(dead, fleet_name, [f"http://127.0.0.1:{port}"])
    out = gate(path, "r7")
    assert out.returncode == 2 and f"etcd at http://127.0.0.1:{port} unreachable (connection refused)" in out.stdout
    status = run_cli("fleet", "status", "--config", path)
    assert status.returncode == 2
    assert f"etcd at http://127.0.0.1:{port} unreachable (connection refused)" in status.stderr
    assert "HTTPConnectionPool" not in status.stderr and "Max retries" not in status.stderr


def test_gate_with_a_broken_config_is_unknown_not_bad(tmp_path):
    path = tmp_path / "watcher.yaml"
    path.write_text("service: x\nfleet: {etcd: [nope]}\nrules: []\n")
    out = gate(path, "r2")
    assert out.returncode == 2, out.stdout + out.stderr


def test_fleet_status_prints_hosts_releases_and_verdicts(etcd, fleet_name, link, tmp_path):
    path = write_config(tmp_path, fleet_name, etcd.endpoints)
    a, b = link("web-a"), link("web-b")
    a.report(Member("web-a", "r2", "in_window", True, firing={"http-5xx-ratio": time.time()}, tick_at=time.time()))
    b.report(Member("web-b", "r1", "watching", False, known_good=True, tick_at=time.time()))
    a.publish_verdict(FleetVerdict("r2", BAD, "web-a", time.time(), "http-5xx-ratio", 0.3, "5xx 30%"))
    wait_for(lambda: a.view().members.get("web-a", Member("x", None)).release == "r2", 30, what="web-a reported")
    wait_for(lambda: "r2" in run_cli("fleet", "status", "--config", path).stdout, 30, what="status with the verdict")
    out = run_cli("fleet", "status", "--config", path)
    assert out.returncode == 0, out.stderr
    assert "2 host(s) alive" in out.stdout
    lines = out.stdout.splitlines()
    assert any(line.split()[:5] == ["web-a", "r2", "in_window", "yes", "0s"] or
               (line.split()[:4] == ["web-a", "r2", "in_window", "yes"] and "http-5xx-ratio" in line) for line in lines)
    assert any(line.split()[:3] == ["r2", "bad", "web-a"] for line in lines)
    data = json.loads(run_cli("fleet", "status", "--json", "--config", path).stdout)
    assert data["hosts"]["web-b"]["release"] == "r1" and data["verdicts"]["r2"]["rule"] == "http-5xx-ratio"


def test_check_online_reports_each_etcd_endpoint_and_its_health(etcd, fleet_name, tmp_path):
    path = write_config(tmp_path, fleet_name, etcd.endpoints)
    data = json.loads(run_cli("check", "--online", "--json", "--config", path).stdout)
    assert data["fleet_problems"] == []
    assert [row["check"] for row in data["fleet"]] == list(etcd.endpoints) + [f"read /rollback-watcher/{fleet_name}/"]
    out = run_cli("check", "--online", "--config", path)
    for endpoint in etcd.endpoints:
        assert f"fleet {fleet_name}: ok: etcd at {endpoint} healthy (" in out.stdout, out.stdout
    dead = tmp_path / "dead"
    dead.mkdir()
    port = free_port()
    path = write_config(dead, fleet_name, [etcd.endpoints[0], f"http://127.0.0.1:{port}"])
    out = run_cli("check", "--online", "--config", path)
    assert out.returncode == 1, out.stdout + out.stderr
    assert f"fleet {fleet_name}: ok: etcd at {etcd.endpoints[0]} healthy" in out.stdout
    # Readable: what happened, not urllib3's "HTTPConnectionPool(...): Max retries exceeded" cut mid-string.
    assert f"fleet {fleet_name}: FAIL: etcd at http://127.0.0.1:{port} unreachable (connection refused)" in out.stdout
    assert "HTTPConnectionPool" not in out.stdout and "Max retries" not in out.stdout


def test_status_shows_the_fleet(etcd, fleet_name, link, tmp_path):
    path = write_config(tmp_path, fleet_name, etcd.endpoints, host="web-a")
    a = link("web-a")
    a.report(Member("web-a", "r2", "in_window", True, tick_at=time.time()))
    wait_for(lambda: "web-a" in a.view().members, 30, what="web-a reported")
    data = json.loads(run_cli("status", "--json", "--config", path).stdout)
    assert data["fleet"]["hosts"]["web-a"]["release"] == "r2"
    out = run_cli("status", "--config", path)
    assert f"fleet {fleet_name}: 1 host(s) alive" in out.stdout
