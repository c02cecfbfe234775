"""`init` recognising instrumentation and choosing this host's targets (actions/init.py): pure,
tables of metric names as the exporters expose them."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from watcher.actions.init import InitError, Target, choose, pack_metrics, plan, recognise

PACKS = Path(__file__).resolve().parents[2] / "rules" / "packs"
WANTED = pack_metrics(PACKS)

PYTHON_FRESH = {"python_info", "process_start_time_seconds", "python_gc_objects_collected_total"}
PYTHON_SERVING = PYTHON_FRESH | {"http_requests_total", "http_requests_created", "http_request_duration_seconds_bucket"}
GO_SERVING = {"go_info", "go_goroutines", "promhttp_metric_handler_requests_total", "http_requests_total",
              "http_request_duration_seconds_bucket"}
NODE = {"go_info", "node_exporter_build_info", "node_vmstat_oom_kill", "node_cpu_seconds_total"}
PROMETHEUS = {"go_info", "prometheus_build_info", "prometheus_tsdb_head_series"}


def t(instance: str, names: set[str], job: str = "app") -> Target:
    return Target(job, instance, "up", frozenset(names))


@pytest.mark.parametrize("names,pack", [
    (PYTHON_FRESH, "python-prometheus-client"),
    (PYTHON_SERVING, "python-prometheus-client"),
    (GO_SERVING, "go-client-golang"),
    ({"go_info", "go_goroutines"}, "go-client-golang"),
    (PYTHON_FRESH | {"flask_exporter_info", "flask_http_request_total"}, "python-flask-exporter"),
    (PYTHON_FRESH | {"django_http_requests_before_middlewares_total"}, "python-django-prometheus"),
    ({"jvm_threads_live_threads", "http_server_requests_seconds_count"}, "micrometer-spring-boot"),
    ({"nodejs_version_info", "http_request_duration_seconds_count", "http_request_duration_seconds_bucket"},
     "node-prom-client"),
    ({"haproxy_backend_http_responses_total", "haproxy_backend_active_servers"}, "haproxy"),
    ({"envoy_cluster_upstream_rq_xx", "envoy_cluster_upstream_rq_total"}, "envoy"),
    (NODE, "node-exporter"),
    ({"container_oom_events_total", "cadvisor_version_info"}, "cadvisor"),
])
def test_instrumentation_is_recognised_by_its_names(names, pack):
    assert recognise(t("127.0.0.1:8000", names), WANTED).pack.name == pack


@pytest.mark.parametrize("names", [PROMETHEUS, {"something_else_total"}, set()])
def test_prometheus_itself_and_unknown_targets_are_not_an_app(names):
    r = recognise(t("127.0.0.1:9090", names), WANTED)
    assert r is None or r.pack.kind != "app"


def test_a_fresh_python_app_is_recognised_and_the_reason_says_its_request_series_are_not_there_yet():
    r = recognise(t("127.0.0.1:8000", PYTHON_FRESH), WANTED)
    assert "python_info" in r.why() and "http_requests_total yet" in r.why() and "first use" in r.why()


LOCAL = {"127.0.0.1", "localhost", "web-3"}
TARGETS = [t("127.0.0.1:8000", PYTHON_SERVING), t("127.0.0.1:9100", NODE, job="node"),
           t("127.0.0.1:9090", PROMETHEUS, job="prometheus"), t("web-4:8000", PYTHON_SERVING)]


def test_this_hosts_app_and_its_node_exporter_are_chosen():
    app, hosts = choose(TARGETS, WANTED, None, None, LOCAL)
    assert app.target.instance == "127.0.0.1:8000"
    assert [h.target.instance for h in hosts] == ["127.0.0.1:9100"]


def test_an_instance_option_picks_another_hosts_target():
    app, hosts = choose(TARGETS, WANTED, "web-4:8000", None, LOCAL)
    assert app.target.instance == "web-4:8000" and hosts == []


@pytest.mark.parametrize("targets,instance,job,message", [
    (TARGETS, "web-9:8000", None, "no target with instance 'web-9:8000'"),
    (TARGETS, None, "shop", "no job 'shop'"),
    ([t("web-4:8000", PYTHON_SERVING)], None, None, "none of Prometheus' targets is on this host"),
    ([t("127.0.0.1:8000", PYTHON_SERVING), t("127.0.0.1:8001", GO_SERVING)], None, None, "give --instance"),
    ([t("127.0.0.1:9100", NODE, job="node")], None, None, "no target of this host exports metrics a rule pack knows"),
])
def test_when_init_cannot_choose_it_says_why_and_what_there_is(targets, instance, job, message):
    with pytest.raises(InitError, match=message):
        choose(targets, WANTED, instance, job, LOCAL)


def test_the_plan_scopes_the_app_and_pins_node_exporter_to_its_own_target():
    app, hosts = choose(TARGETS, WANTED, None, None, LOCAL)
    p = plan(app, hosts, PACKS, "http://127.0.0.1:9090", "shop", "/var/lib/rw", "/srv/shop/releases",
             "/srv/shop/current", "http://127.0.0.1:8000/health")
    watcher = yaml.safe_load(p.files["watcher.yaml"])
    assert watcher["prometheus"]["labels"] == {"instance": "127.0.0.1:8000"}
    assert watcher["vars"] == {"node_exporter": "127.0.0.1:9100"}
    assert watcher["backend"] == {"type": "symlink", "releases": "/srv/shop/releases", "current": "/srv/shop/current"}
    node = yaml.safe_load(p.files["rules/node-exporter.yaml"])["rules"]
    assert all(r["scope"] == "fleet" and 'instance="${node_exporter}"' in r["query"] for r in node)
    assert set(p.files) == {"watcher.yaml", "rules/python-prometheus-client.yaml", "rules/node-exporter.yaml",
                            "rules/health.yaml"}
    assert any("pack python-prometheus-client" in line for line in p.lines)
