"""Label scoping (watcher/config/scoping.py): tables of query -> scoped query, the conflicts it refuses,
and every output checked by the real `promtool check rules` (Prometheus' own parser)."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from watcher.config.scoping import ScopeConflict, ScopeError, scope_query

WEB3 = {"instance": "web-3:8000"}
INST = 'instance="web-3:8000"'

SCOPED = [
    # (why, query, scoped)
    ("the shipped 5xx ratio: both selectors, the [$window] kept",
     'sum(rate(http_requests_total{code=~"5.."}[$window])) / sum(rate(http_requests_total[$window]))',
     f'sum(rate(http_requests_total{{code=~"5..",{INST}}}[$window])) / sum(rate(http_requests_total{{{INST}}}[$window]))'),
    ("an absent error series counted as zero: vector(0) has no selector",
     '(sum(rate(errors_total[$window])) or vector(0)) / sum(rate(requests_total[$window]))',
     f'(sum(rate(errors_total{{{INST}}}[$window])) or vector(0)) / sum(rate(requests_total{{{INST}}}[$window]))'),
    ("a bare metric name", "up", f"up{{{INST}}}"),
    ("up == 0: the number stays", "up == 0", f"up{{{INST}}} == 0"),
    ("scalar() and time()", "time() - scalar(process_start_time_seconds)",
     f"time() - scalar(process_start_time_seconds{{{INST}}})"),
    ("absent() is scoped too: absent for this host", 'absent(up{job="app"})', f'absent(up{{job="app",{INST}}})'),
    ("a selector by __name__ only", '{__name__="up"}', f'{{__name__="up",{INST}}}'),
    ("a histogram quantile with by (le)",
     "histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket[$window])))",
     f"histogram_quantile(0.95, sum by (le)(rate(http_request_duration_seconds_bucket{{{INST}}}[$window])))"),
    ("a subquery over [$window] with a step", "max_over_time(up[$window:1s])", f"max_over_time(up{{{INST}}}[$window:1s])"),
    ("a subquery without a step, with an offset", "max_over_time(rate(x[1m])[5m:] offset 1m)",
     f"max_over_time(rate(x{{{INST}}}[1m])[5m:] offset 1m)"),
    ("nested subqueries", "max_over_time(max_over_time(rate(a[1m])[5m:1m])[10m:])",
     f"max_over_time(max_over_time(rate(a{{{INST}}}[1m])[5m:1m])[10m:])"),
    ("sub-second ranges and offsets survive (promql-parser's printer drops them)",
     "rate(x[1500ms] offset 61500ms)", f"rate(x{{{INST}}}[1s500ms] offset 1m1s500ms)"),
    ("@ and a negative offset", "x @ 100 offset -5m", f"x{{{INST}}} @ 100.000 offset -5m"),
    ("@ start()", "x @ start()", f"x{{{INST}}} @ start()"),
    ("escapes in matchers and string literals survive (the printer drops them)",
     r'label_replace(up{a=~"\\d+"}, "b", "$1", "a", "(\\d+)")',
     r'label_replace(up{a=~"\\d+",' + INST + r'}, "b", "$1", "a", "(\\d+)")'),
    ("vector matching and bool", 'a > on (job) group_left (x) b > bool 1',
     f'a{{{INST}}} > on (job) group_left (x) b{{{INST}}} > bool 1'),
    ("count_values' string parameter", 'count_values("v", x)', f'count_values("v", x{{{INST}}})'),
    ("the same matcher already there is kept once", f'up{{{INST}}}', f"up{{{INST}}}"),
    ("a regex that matches the scope's value is implied by it", 'up{instance=~"web-3:.*"}', f"up{{{INST}}}"),
    ("!= another value is implied", 'up{instance!="web-9:8000"}', f"up{{{INST}}}"),
    ("!~ that excludes others is implied", 'up{instance!~"web-9.*"}', f"up{{{INST}}}"),
]

LITERALS = ["vector(0)", "time()", "1", "2 * 3", "NaN", "scalar(vector(1))"]

CONFLICTS = [
    ("another target on purpose (node_exporter's port)", 'node_vmstat_oom_kill{instance="web-3:9100"}'),
    ("!= the scope's value", 'up{instance!="web-3:8000"}'),
    ("a regex that cannot match it", 'up{instance=~"web-9.*"}'),
    ("a negative regex that excludes it", 'up{instance!~"web-3.*"}'),
    ("a conflict deep inside", 'sum(rate(x[5m])) / sum(rate(y{instance="db:9187"}[5m]))'),
]


@pytest.mark.parametrize("why,query,scoped", SCOPED, ids=[row[0] for row in SCOPED])
def test_every_vector_selector_gets_the_scope(why, query, scoped):
    assert scope_query(query, WEB3) == scoped


@pytest.mark.parametrize("query", LITERALS)
def test_a_query_without_selectors_is_left_alone(query):
    assert scope_query(query, WEB3).replace(" ", "") == query.replace(" ", "")


def test_no_labels_returns_the_query_byte_for_byte():
    query = 'sum(rate(x{a="1"}[$window]))   /  sum(rate(x[$window]))'
    assert scope_query(query, {}) is query


def test_each_alternative_of_an_or_selector_gets_the_scope():
    # `{a="1" or b="2"}` is newer PromQL than Debian's Prometheus reads: checked by text only.
    assert scope_query('up{a="1" or b="2"}', WEB3) == f'up{{a="1",{INST} or b="2",{INST}}}'


def test_several_labels_are_all_added_in_the_mappings_order():
    assert scope_query("up", {"instance": "web-3:8000", "job": "shop"}) == 'up{instance="web-3:8000",job="shop"}'


@pytest.mark.parametrize("why,query", CONFLICTS, ids=[row[0] for row in CONFLICTS])
def test_a_selector_that_contradicts_the_scope_is_refused(why, query):
    with pytest.raises(ScopeConflict, match="scope: fleet"):
        scope_query(query, WEB3)


def test_a_regex_python_cannot_read_keeps_both_matchers():
    # \pL is RE2 (Prometheus) but not Python's re: both matchers stay, and select what both say.
    assert scope_query(r'up{instance=~"\\pL+"}', WEB3) == r'up{instance=~"\\pL+",' + INST + "}"


@pytest.mark.parametrize("labels", [{"__name__": "x"}, {"bad-name": "x"}, {"1a": "x"}, {"instance": None},
                                    {"instance": ["a"]}])
def test_a_scope_label_prometheus_would_refuse_is_an_error(labels):
    with pytest.raises(ScopeError):
        scope_query("up", labels)


def test_a_query_that_is_not_promql_is_an_error():
    with pytest.raises(ScopeError, match="not valid PromQL"):
        scope_query("sum(rate(x[5m])", WEB3)


@settings(max_examples=60, deadline=None)
@given(st.text(min_size=0, max_size=12))
def test_any_label_value_round_trips_through_the_parser(value):
    import promql_parser

    scoped = scope_query('rate(x{a="1"}[$window])', {"instance": value})
    selector = promql_parser.parse(scoped.replace("$window", "1m")).args[0].vector_selector
    assert {m.name: m.value for m in selector.matchers.matchers} == {"a": "1", "instance": value}


def test_prometheus_itself_accepts_every_scoped_query(tmp_path):
    """The real `promtool check rules` (Prometheus' parser) reads each output; `[$window]` is
    rendered as the service renders it (a number of seconds)."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: `make deps` installs the Debian prometheus package"
    outputs = [scoped for _, _, scoped in SCOPED] + [scope_query(q, WEB3) for q in LITERALS]
    outputs.append(scope_query("up", {"instance": 'we"ird\\ \n value ü'}))
    groups = [{"name": "scoped", "rules": [{"record": f"scoped_{i}", "expr": q.replace("$window", "60s")}
                                           for i, q in enumerate(outputs)]}]
    path = tmp_path / "scoped.yml"
    path.write_text(json.dumps({"groups": groups}))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(outputs)} rules found" in result.stdout
