"""The `fleet:` section: defaults, FILE:LINE errors, secrets from ${VAR} never shown."""

import subprocess
import sys

import pytest

from watcher.base.errors import ConfigError
from watcher.config.load import load_config

BASE = "service: shop\nhost: web-1\nrules: [r.yaml]\nstate_dir: st\n"
RULE = "rules:\n  - name: health\n    http: http://127.0.0.1:1/health\n    action: rollback\n"


def write(tmp_path, fleet: str):
    (tmp_path / "r.yaml").write_text(RULE)
    path = tmp_path / "watcher.yaml"
    path.write_text(BASE + fleet)
    return path


def problems(path, env=None) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        load_config(path, environ=env or {})
    return [str(p) for p in exc.value.problems]


def test_without_a_fleet_section_the_host_decides_alone(tmp_path):
    assert load_config(write(tmp_path, ""), environ={}).fleet is None


def test_fleet_defaults_come_from_service_and_host(tmp_path):
    cfg = load_config(write(tmp_path, "fleet:\n  etcd: [http://127.0.0.1:2379/]\n"), environ={})
    f = cfg.fleet
    assert f.endpoints == ("http://127.0.0.1:2379",)
    assert (f.name, f.host, f.prefix, f.lease, f.known_good_hosts) == ("shop", "web-1", "/rollback-watcher", 15.0, 2)
    assert f.root == "/rollback-watcher/shop/"


def test_fleet_keys_are_read_with_tls_and_credentials_from_the_environment(tmp_path):
    path = write(tmp_path, "fleet:\n  etcd: [https://e1:2379, https://e2:2379]\n  name: api\n  host: h3\n"
                           "  prefix: /rw\n  lease: 10s\n  known_good_hosts: 3\n  timeout: 1s\n  symptom_window: 2m\n"
                           "  tls: {ca: ca.pem, cert: c.pem, key: k.pem}\n"
                           "  username: watcher\n  password: ${ETCD_PASSWORD}\n")
    f = load_config(path, environ={"ETCD_PASSWORD": "s3cret-pw"}).fleet
    assert f.endpoints == ("https://e1:2379", "https://e2:2379") and f.root == "/rw/api/"
    assert (f.lease, f.known_good_hosts, f.timeout, f.symptom_window) == (10.0, 3, 1.0, 120.0)
    assert f.ca == tmp_path / "ca.pem" and f.key == tmp_path / "k.pem"
    assert f.password == "s3cret-pw"
    assert "s3cret-pw" not in repr(f)


def test_fleet_errors_name_file_line_and_key_all_at_once(tmp_path):
    path = write(tmp_path, "fleet:\n  etcd: [http://u:pw@127.0.0.1:2379, ftp://x]\n  leese: 10s\n"
                           "  lease: 1s\n  known_good_hosts: 0\n  prefix: rw\n  username: bob\n"
                           "  tls: {cert: c.pem, cafile: x}\n")
    found = problems(path)
    text = "\n".join(found)
    assert f"{path}:6: fleet.etcd[0]: must not carry a user or password" in text
    assert f"{path}:6: fleet.etcd[1]: expected an http:// or https:// URL" in text
    assert f"{path}:7: fleet.leese: unknown key (did you mean 'lease'?)" in text
    assert f"{path}:8: fleet.lease: must be at least 2s" in text
    assert f"{path}:9: fleet.known_good_hosts: must be between 1 and 1000000" in text
    assert f"{path}:10: fleet.prefix: must start with /" in text
    assert "fleet.username: username and password go together" in text
    assert "fleet.tls.cafile: unknown key" in text
    assert "fleet.tls: cert and key go together" in text
    assert "pw@" not in text


def test_fleet_without_etcd_is_an_error(tmp_path):
    assert any("fleet.etcd: is required" in p for p in problems(write(tmp_path, "fleet:\n  name: x\n")))


def test_check_never_prints_the_etcd_password(tmp_path):
    path = write(tmp_path, "fleet:\n  etcd: [http://127.0.0.1:9]\n  username: w\n  password: ${ETCD_PASSWORD}\n")
    for args in (["check"], ["check", "--json"], ["check", "--online"]):
        out = subprocess.run([sys.executable, "-m", "watcher", *args, "--config", str(path)], capture_output=True,
                             text=True, timeout=60, env={"ETCD_PASSWORD": "hunter2-etcd", "PATH": "/usr/bin"})
        assert "hunter2-etcd" not in out.stdout + out.stderr
