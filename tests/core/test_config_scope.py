"""One rule table for a fleet, at load (config/bind.py): `prometheus.labels` scope every PromQL
rule but `scope: fleet` ones, `${NAME}` placeholders take values from watcher.yaml, and every way
this can go wrong is a FILE:LINE: KEY problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from watcher.base.errors import ConfigError
from watcher.config.load import load_config
from watcher.config.rulefile import load_rule_file
from watcher.core.rules import HttpCheck, PromQuery

HEAD = "service: shop\nhost: web-3\nrules: [rules.yaml]\nstate_dir: st\n"
PROM = "prometheus: {url: http://127.0.0.1:9090, labels: {instance: \"web-3:8000\"}}\n"
RATIO = ('(sum(rate(http_requests_total{code=~"5.."}[$window])) or vector(0)) '
         '/ sum(rate(http_requests_total[$window]))')


def write(tmp_path: Path, watcher_yaml: str, rules_yaml: str) -> Path:
    (tmp_path / "rules.yaml").write_text(rules_yaml)
    path = tmp_path / "watcher.yaml"
    path.write_text(watcher_yaml)
    return path


def rule(name: str, body: str) -> str:
    return f"  - name: {name}\n" + "".join(f"    {line}\n" for line in body.strip().splitlines())


def rules(*items: str) -> str:
    return "rules:\n" + "".join(items)


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        load_config(path, environ={})
    return [str(p) for p in exc.value.problems]


def test_prometheus_labels_scope_every_query_and_the_rule_keeps_what_was_written(tmp_path):
    path = write(tmp_path, HEAD + PROM, rules(rule("ratio", f"query: '{RATIO}'\nabove: 0.1\naction: rollback")))
    [r] = load_config(path, environ={}).rules
    assert r.signal.query == ('(sum(rate(http_requests_total{code=~"5..",instance="web-3:8000"}[$window])) or vector(0))'
                              ' / sum(rate(http_requests_total{instance="web-3:8000"}[$window]))')
    assert r.signal.as_written == RATIO


def test_a_fleet_rule_reads_its_query_as_written(tmp_path):
    path = write(tmp_path, HEAD + PROM, rules(rule("fleet-5xx", "query: sum(up)\nbelow: 1\nscope: fleet\naction: notify")))
    [r] = load_config(path, environ={}).rules
    assert r.signal == PromQuery("sum(up)") and r.scope == "fleet"


def test_without_prometheus_labels_queries_are_unchanged(tmp_path):
    path = write(tmp_path, HEAD + "prometheus: {url: http://127.0.0.1:9090}\n",
                 rules(rule("ratio", f"query: '{RATIO}'\nabove: 0.1\naction: rollback")))
    [r] = load_config(path, environ={}).rules
    assert r.signal == PromQuery(RATIO)


def test_placeholders_take_host_labels_and_vars(tmp_path):
    path = write(tmp_path, HEAD + PROM + "vars: {port: 8000, exporter: \"${EXPORTER_PORT}\"}\n", rules(
        rule("health", "http: http://127.0.0.1:${port}/health\nfailures: 3\naction: rollback"),
        rule("oom", 'query: increase(node_vmstat_oom_kill{instance="${host}:${exporter}"}[$window])\nabove: 0\n'
                    "scope: fleet\naction: rollback"),
        rule("mine", 'query: up{instance="${labels.instance}"}\nbelow: 1\naction: rollback')))
    health, oom, mine = load_config(path, environ={"EXPORTER_PORT": "9100"}).rules
    assert isinstance(health.signal, HttpCheck) and health.signal.url == "http://127.0.0.1:8000/health"
    assert oom.signal.query == 'increase(node_vmstat_oom_kill{instance="web-3:9100"}[$window])'
    assert oom.signal.as_written == 'increase(node_vmstat_oom_kill{instance="${host}:${exporter}"}[$window])'
    assert mine.signal.query == 'up{instance="web-3:8000"}'


def test_a_placeholder_value_is_escaped_inside_a_promql_string(tmp_path):
    path = write(tmp_path, HEAD + "prometheus: {url: http://127.0.0.1:9090}\nvars: {odd: 'a\"b'}\n",
                 rules(rule("r", 'query: up{job="${odd}"}\nbelow: 1\naction: rollback')))
    [r] = load_config(path, environ={}).rules
    assert r.signal.query == 'up{job="a\\"b"}'


def test_an_unknown_placeholder_names_file_line_key_and_the_known_ones(tmp_path):
    path = write(tmp_path, HEAD + PROM, rules(
        rule("ok", "query: up\nbelow: 1\naction: rollback"),
        rule("health", "http: http://127.0.0.1:${port}/health\naction: rollback")))
    [problem] = problems(path)
    assert problem.startswith(f"{tmp_path / 'rules.yaml'}:6: rule health: http: unknown placeholder ${{port}}")
    assert "${host}" in problem and "${labels.instance}" in problem and "vars:" in problem


def test_a_selector_that_contradicts_the_scope_is_a_problem_at_the_rules_line(tmp_path):
    path = write(tmp_path, HEAD + PROM, rules(
        rule("oom", 'query: increase(node_vmstat_oom_kill{instance="web-3:9100"}[$window])\nabove: 0\naction: rollback')))
    [problem] = problems(path)
    assert problem.startswith(f"{tmp_path / 'rules.yaml'}:2: rule oom: query: cannot scope it with prometheus.labels")
    assert "scope: fleet" in problem


@pytest.mark.parametrize("watcher_yaml,expected", [
    ("prometheus: {url: http://127.0.0.1:9090, labels: {bad-name: x}}\n", "watcher.yaml:5: prometheus.labels:"),
    ("prometheus: {url: http://127.0.0.1:9090, labels: [instance]}\n", "watcher.yaml:5: prometheus.labels:"),
    ("prometheus: {url: http://127.0.0.1:9090}\nvars: {host: x}\n", "watcher.yaml:6: vars.host: cannot be a placeholder"),
])
def test_bad_labels_and_vars_name_file_line_and_key(tmp_path, watcher_yaml, expected):
    path = write(tmp_path, HEAD + watcher_yaml, rules(rule("r", "query: up\nbelow: 1\naction: rollback")))
    assert any(p.endswith(expected) or expected in p for p in problems(path)), problems(path)


def test_scope_only_applies_to_query_rules(tmp_path):
    path = write(tmp_path, HEAD + PROM, rules(rule("h", "http: http://127.0.0.1:8000/\nscope: fleet\naction: rollback")))
    assert any("rule h: scope: only applies to `query:` and `judge:` rules" in p for p in problems(path))


def test_a_rule_file_alone_keeps_its_placeholders_for_rollback_watcher_test(tmp_path):
    (tmp_path / "r.yaml").write_text(rules(rule("r", 'query: up{instance="${host}:9100"}\nbelow: 1\naction: rollback')))
    [r] = load_rule_file(tmp_path / "r.yaml")
    assert r.signal.query == 'up{instance="${host}:9100"}'
