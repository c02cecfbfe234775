"""Judge rules (`judge: sequential`) in the rule table: their keys validated with FILE:LINE: KEY,
and their counts driven tick by tick through the same classify / step as every rule (a table of
counts since the deploy per tick, the phase expected after each)."""

from __future__ import annotations

import textwrap

import pytest

from watcher.base.errors import ConfigError
from watcher.config.rulefile import load_rule_file
from watcher.core.counts import Counts
from watcher.core.envelope import Message, Severity, payload
from watcher.core.messages import fmt_finding
from watcher.core.rules import CounterShare, Outcome, Phase, Rule, RuleState, classify, finding, step

P, F, N = Phase.PENDING, Phase.FIRING, Phase.INACTIVE
ERRORS, TOTAL = 'http_requests_total{code=~"5.."}', "http_requests_total"


def load(tmp_path, body: str):
    path = tmp_path / "rules.yaml"
    path.write_text("rules:\n" + textwrap.indent(textwrap.dedent(body), "  "))
    return load_rule_file(path)


def problems(tmp_path, body: str) -> list[str]:
    with pytest.raises(ConfigError) as err:
        load(tmp_path, body)
    return [f"{p.line}: {p.key}: {p.message}" for p in err.value.problems]


# ---------------------------------------------------------------------------------------------
# Keys


def test_the_issues_rule_loads_as_written(tmp_path):
    (rule,) = load(tmp_path, f"""
        - name: http-5xx
          judge: sequential
          errors: {ERRORS}
          total: {TOTAL}
          above: 0.10
          alpha: 0.001
          warmup: 10s
          action: rollback
        """)
    assert rule.signal == CounterShare(errors=ERRORS, total=TOTAL)
    assert (rule.above, rule.alpha, rule.warmup, rule.for_, rule.value_unit) == (0.10, 0.001, 10.0, 0.0, "%")
    assert rule.condition_text() == "share > 10%, sequential at 99.9% confidence, after a 10s warm-up"


def test_the_latency_and_two_sample_forms_load(tmp_path):
    latency, two, fleet = load(tmp_path, f"""
        - {{name: p95, judge: sequential, buckets: http_request_duration_seconds_bucket, above: 5%,
            slower_than_baseline: 5, floor: 0.2, action: rollback}}
        - {{name: vs-before, judge: sequential, errors: '{ERRORS}', total: {TOTAL}, above_baseline: 2,
            floor: 1%, action: rollback}}
        - {{name: vs-fleet, judge: sequential, errors: '{ERRORS}', total: {TOTAL}, above_baseline: 2,
            baseline_errors: 'http_requests_total{{code=~"5..",release="r41"}}',
            baseline_total: 'http_requests_total{{release="r41"}}', action: notify}}
        """)
    assert latency.signal.buckets and latency.slower_than_baseline == 5 and latency.floor == 0.2
    assert "5 x the pre-deploy p95 (at least 200ms)" in latency.condition_text()
    assert two.above_baseline == 2 and two.floor == 0.01 and "before the deploy" in two.condition_text()
    assert fleet.signal.baseline_total == 'http_requests_total{release="r41"}'
    assert not two.uses_baseline  # the judge reads its own old counts: no median baseline captured


@pytest.mark.parametrize("body, expected", [
    (f"- {{name: a, judge: sequential, errors: 'sum(rate({TOTAL}[1m]))', total: {TOTAL}, above: 0.1, action: rollback}}",
     "2: rule a: errors: expected a counter selector"),
    (f"- {{name: a, judge: sequential, errors: '{ERRORS}', above: 0.1, action: rollback}}",
     "2: rule a: total: missing"),
    (f"- {{name: a, judge: sequential, errors: '{ERRORS}', total: {TOTAL}, action: rollback}}",
     "2: rule a: above: missing"),
    (f"- {{name: a, judge: sequential, errors: '{ERRORS}', total: {TOTAL}, above: 2, action: rollback}}",
     "2: rule a: above: expected a share between 0 and 1"),
    (f"- {{name: a, judge: sequential, errors: '{ERRORS}', total: {TOTAL}, above: 0.1, for: 2m, action: rollback}}",
     "2: rule a: for: does not apply to `judge:` rules"),
    (f"- {{name: a, judge: sequential, errors: '{ERRORS}', total: {TOTAL}, above: 0.1, alpha: 0.7, action: rollback}}",
     "2: rule a: alpha: expected a small probability"),
    (f"- {{name: a, judge: bayesian, errors: '{ERRORS}', total: {TOTAL}, above: 0.1, action: rollback}}",
     "2: rule a: judge: "),
    ("- {name: a, judge: sequential, buckets: b_bucket, above: 0.05, action: rollback}",
     "2: rule a: slower_than: the latency form needs one of"),
    (f"- {{name: a, judge: sequential, buckets: b_bucket, errors: '{ERRORS}', above: 0.05, slower_than: 1s, "
     "action: rollback}", "2: rule a: errors: the latency form reads `buckets` alone"),
    ("- {name: a, query: up, above: 1, warmup: 10s, action: rollback}",
     "2: rule a: warmup: only applies to `judge: sequential` rules"),
    (f"- {{name: a, judge: sequential, query: up, errors: '{ERRORS}', total: {TOTAL}, above: 0.1, action: rollback}}",
     "2: rule a: judge: a rule reads one signal"),
])
def test_a_wrong_judge_key_names_file_line_and_key(tmp_path, body, expected):
    found = problems(tmp_path, body)
    assert any(p.startswith(expected) for p in found), found


# ---------------------------------------------------------------------------------------------
# The state machine on counts

RULE = Rule("http-5xx", CounterShare(errors=ERRORS, total=TOTAL), "rollback", above=0.10, value_unit="%")
T0 = 1_700_000_000.0


def run(rule: Rule, ticks: list) -> list[Phase]:
    state, phases = RuleState(), []
    for i, counts in enumerate(ticks):
        state, _ = step(rule, state, classify(rule, counts), T0 + i)
        phases.append(state.phase)
    return phases


@pytest.mark.parametrize("name, ticks, phases", [
    ("no request yet, then healthy", [Counts(0, 0), Counts(0, 50), Counts(1, 100)], [N, N, N]),
    ("30% at 50 req/s: pending one tick, then firing", [Counts(15, 50), Counts(30, 100)], [P, F]),
    ("4 of 4 failed: conclusive at once", [Counts(4, 4)], [F]),
    ("suspect, then the share falls under the limit", [Counts(2, 10), Counts(2, 40)], [P, N]),
    ("5% never leaves inactive", [Counts(5, 100), Counts(50, 1000), Counts(500, 10000)], [N, N, N]),
    ("exactly at the limit: never fires", [Counts(100, 1000), Counts(1000, 10000)], [N, N]),
])
def test_judge_phases(name, ticks, phases):
    assert run(RULE, ticks) == phases, name


def test_an_error_holds_the_judges_state():
    from watcher.base.errors import SourceError

    assert run(RULE, [Counts(2, 10), SourceError("timeout"), Counts(30, 100)]) == [P, P, F]


def test_warming_up_is_no_data_and_no_baseline_cannot_fire():
    warming = classify(RULE, Counts(0, 0, note="warming up: counting starts 10s after the deploy"))
    assert warming.outcome is Outcome.NO_DATA and "warming up" in warming.detail
    two = Rule("vs", CounterShare(errors=ERRORS, total=TOTAL), "rollback", above_baseline=2)
    blind = classify(two, Counts(100, 100, no_baseline=True, note="no request before the deploy"))
    assert blind.outcome is Outcome.OK and blind.no_baseline
    state, transitions = step(two, RuleState(), blind, T0)
    assert state.phase is N and [t.kind.value for t in transitions] == ["no_baseline"]


def test_the_firing_reason_finding_message_and_payload_carry_the_interval():
    state, transitions = step(RULE, RuleState(), classify(RULE, Counts(61, 212)), T0)
    assert state.phase is F
    assert transitions[-1].reason.startswith("share 29% (99.9% confidence 17-43%) against 10%, after 212 requests")
    found = finding(RULE, state)
    assert found.evidence["low"] > 0.10 and found.evidence["requests"] == 212
    line = fmt_finding(found)
    assert line.startswith("http-5xx: share 29% (99.9% confidence 17-43%) against 10%, after 212 requests, since ")
    from watcher.core.messages import _finding_facts

    message = Message("rolling_back", Severity.WARNING, "t", "b", facts=_finding_facts([found]))
    assert payload(message)["evidence"]["high"] == found.evidence["high"]


def test_the_evidence_survives_the_state_file():
    state, _ = step(RULE, RuleState(), classify(RULE, Counts(61, 212)), T0)
    again = RuleState.from_dict(state.to_dict())
    assert again.last_evidence == state.last_evidence and again.phase is F


def test_a_judge_rule_clears_on_the_restored_release_only_on_counted_healthy_requests():
    from types import SimpleNamespace

    from watcher.service.confirm import _clear

    def clear(counts) -> bool:
        return _clear(SimpleNamespace(rule=RULE, observation=classify(RULE, counts), held=False))

    assert not clear(Counts(0, 0, note="warming up"))  # nothing counted since the switch: no evidence
    assert not clear(Counts(3, 10))  # 30%: still looks too high
    assert clear(Counts(1, 100))


def test_prometheus_labels_scope_a_judges_counters_but_not_its_baseline_selectors(tmp_path):
    from watcher.config.load import load_config

    (tmp_path / "rules.yaml").write_text(textwrap.dedent(f"""\
        rules:
          - name: vs-fleet
            judge: sequential
            errors: '{ERRORS}'
            total: {TOTAL}
            above_baseline: 2
            baseline_errors: 'http_requests_total{{code=~"5..",release="${{good}}"}}'
            baseline_total: 'http_requests_total{{release="${{good}}"}}'
            action: rollback
        """))
    (tmp_path / "watcher.yaml").write_text(
        "service: shop\nhost: web-3\nrules: [rules.yaml]\nstate_dir: st\nvars: {good: r41}\n"
        "prometheus: {url: http://127.0.0.1:9090, labels: {instance: \"web-3:8000\"}}\n")
    (rule,) = load_config(tmp_path / "watcher.yaml").rules
    assert rule.signal.errors == 'http_requests_total{code=~"5..",instance="web-3:8000"}'
    assert rule.signal.total == 'http_requests_total{instance="web-3:8000"}'
    assert rule.signal.baseline_total == 'http_requests_total{release="r41"}'  # the other hosts: not scoped
