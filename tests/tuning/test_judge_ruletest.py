"""`rollback-watcher test` on judge rules (`judge: sequential`): counter values per step in,
phases and rollbacks out, counted since the deploy by the code the service counts with."""

from __future__ import annotations

import textwrap

import pytest

from watcher.actions.ruletest import load_test_file, run_file
from watcher.base.errors import ConfigError

RULE = """\
interval: 1s
rules:
  - name: http-5xx-judge
    judge: sequential
    errors: http_requests_total{code=~"5.."}
    total: http_requests_total
    above: 0.10
    action: rollback
  - name: p95
    judge: sequential
    buckets: http_request_duration_seconds_bucket
    above: 0.05
    slower_than: 500ms
    action: rollback
tests:
"""


def write(tmp_path, tests: str):
    path = tmp_path / "judge_test.yaml"
    path.write_text(RULE + textwrap.indent(textwrap.dedent(tests), "  "))
    return path


def test_a_30_percent_release_is_rolled_back_and_a_5_percent_one_is_not(tmp_path):
    path = write(tmp_path, """\
        - name: 30% at 50 req/s after a deploy at 20s
          deploys: [{at: 20s, release: r2}]
          input_series:
            - {rule: http-5xx-judge, series: total, values: 0+50x40}
            - {rule: http-5xx-judge, series: errors, values: 0x20 0+15x20}
          expect:
            - {eval_time: 21s, rule: http-5xx-judge, state: inactive}
            - {eval_time: 22s, rule: http-5xx-judge, state: pending}
            - {eval_time: 23s, rule: http-5xx-judge, state: firing}
            - {eval_time: 23s, rollback: r2}
        - name: 5% is never rolled back
          deploys: [{at: 20s, release: r2}]
          input_series:
            - {rule: http-5xx-judge, series: total, values: 0+50x60}
            - {rule: http-5xx-judge, series: errors, values: 0+2.5x60}
          expect:
            - {eval_time: 60s, rule: http-5xx-judge, state: inactive}
            - {eval_time: 60s, rollback: none}
        - name: errors before the deploy are not counted against the new release
          deploys: [{at: 10s, release: r2}]
          input_series:
            - {rule: http-5xx-judge, series: total, values: 0+50x30}
            - {rule: http-5xx-judge, series: errors, values: 0+50x10 500x20}
          expect:
            - {eval_time: 30s, rollback: none}
        - name: latency, every request slower than 500 ms after the deploy
          deploys: [{at: 5s, release: r2}]
          input_series:
            - {rule: p95, series: buckets, labels: {le: "0.5"}, values: 0+50x5 250x10}
            - {rule: p95, series: buckets, labels: {le: "+Inf"}, values: 0+50x15}
          expect:
            - {eval_time: 9s, rule: p95, state: firing}
        """)
    results = run_file(path)
    assert [r.failures for r in results] == [[], [], [], []]


def test_a_wrong_expectation_shows_the_judges_history(tmp_path):
    path = write(tmp_path, """\
        - name: expects no rollback of 30%
          deploys: [{at: 5s, release: r2}]
          input_series:
            - {rule: http-5xx-judge, series: total, values: 0+50x15}
            - {rule: http-5xx-judge, series: errors, values: 0x5 0+15x10}
          expect:
            - {eval_time: 15s, rollback: none}
        """)
    (result,) = run_file(path)
    assert result.failures and "+ got:      r2 (by http-5xx-judge" in result.failures[0]
    assert "99.9% confidence" in result.failures[0]


@pytest.mark.parametrize("series, expected", [
    ("{rule: http-5xx-judge, values: 0+1x3}", "series: a judge rule's input names the counter"),
    ("{rule: http-5xx-judge, series: latency, values: 0+1x3}", "one of errors, total"),
])
def test_a_judge_input_without_its_counter_is_a_problem_with_file_and_line(tmp_path, series, expected):
    path = write(tmp_path, f"""\
        - name: bad input
          input_series:
            - {series}
          expect:
            - {{eval_time: 1s, rollback: none}}
        """)
    with pytest.raises(ConfigError) as err:
        load_test_file(path)
    assert any(expected in p.message or expected in p.key + ": " + p.message for p in err.value.problems), \
        [str(p) for p in err.value.problems]
