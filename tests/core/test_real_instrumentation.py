"""Issue 21: semantics that fit real instrumentation, in the pure core, with tables. A client
library creates a labelled series on its first use: a healthy app has no 5xx series, a fresh
process has no request series until its first request, a host without node_exporter answers
nothing to `oom-kills`. So silence is never a verdict:

- evidence for known-good is the release SEEN SERVING (a probe that answered, a query that
  needs requests reading a real number), not "every rollback rule saw data" (core/evidence.py);
- while a rollback is confirmed, `[$window]` runs from the switch without the `min_window`
  clamp, and the `[$window]` rules are not read before `min_window` (evaluate.watch_window,
  evaluate's `held`).

The same decisions against real processes: tests/shipped (the real prometheus_client app)."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from watcher.base.errors import ConfigError, SourceError
from watcher.config.rulefile import load_rule_file
from watcher.core import evidence
from watcher.core.evaluate import evaluate, watch_window
from watcher.core.model import ReleaseRecord
from watcher.core.rules import (
    HostCheck,
    HttpCheck,
    Observation,
    Outcome,
    Phase,
    ProbeResult,
    PromQuery,
    Rule,
    RuleState,
    Sample,
    classify,
)

REPO = Path(__file__).resolve().parents[2]


def rule(name: str, signal, **kw) -> Rule:
    return Rule(name=name, signal=signal, action=kw.pop("action", "rollback"), **kw)


RATIO = rule("http-5xx-ratio", PromQuery("(sum(rate(e[$window])) or vector(0)) / sum(rate(t[$window]))"), above=0.1)
P95 = rule("p95", PromQuery("histogram_quantile(0.95, sum by (le) (rate(b[$window])))"), above=0.5)
UP = rule("target-down", PromQuery("min(up)"), below=1.0, evidence="none")
OOM = rule("oom-kills", PromQuery("increase(node_vmstat_oom_kill[$window])"), above=0.0, evidence="none")
PROBE = rule("health", HttpCheck("http://127.0.0.1:1/health"), failures=3)
HOST_OOM = rule("host-oom", HostCheck("oom_kills"), above=0.0)
CPU = rule("cpu", PromQuery("cpu"), above=0.95, action="notify")

NO_DATA: list = []
NAN = [Sample({}, math.nan)]
ERROR = SourceError("timeout")
OK_PROBE = ProbeResult(True, "200 in 2 ms", 200, 0.002)
FAILED_PROBE = ProbeResult(False, "connect error")


def n(x: float) -> list[Sample]:
    return [Sample({}, x)]


def evaluated(results: dict[Rule, object]):
    """One tick's RuleEvaluations of hand-made results (what evidence.count_tick reads)."""
    return [SimpleNamespace(rule=r, observation=classify(r, res), after=RuleState()) for r, res in results.items()]


def window(ticks: list[dict[Rule, object]], rules: list[Rule], need: float = 0.8):
    rec = ReleaseRecord("r2")
    for t in ticks:
        evidence.count_tick(rec, evaluated(t))
    return rec, evidence.shortfall(rec, rules, need)


SHIPPED = [RATIO, P95, UP, OOM, PROBE, CPU]
WITHOUT_PROBE = [RATIO, P95, UP, OOM]

# (what the window's ticks read, the table, known-good?, words the reason must hold)
CASES = {
    # The first report: a healthy app with traffic has no 5xx series (0 thanks to
    # `or vector(0)`), no node_exporter (oom-kills: no data). Before: "saw data on 0%".
    "healthy, no 5xx series, no node_exporter": (
        [{RATIO: n(0.0), P95: n(0.01), UP: n(1), OOM: NO_DATA, PROBE: OK_PROBE}] * 10, SHIPPED, True, ()),
    "healthy, no probe in the table": (
        [{RATIO: n(0.0), P95: n(0.01), UP: n(1), OOM: NO_DATA}] * 10, WITHOUT_PROBE, True, ()),
    "quiet, its health probe passes: seen serving": (
        [{RATIO: NAN, P95: NAN, UP: n(1), OOM: n(0), PROBE: OK_PROBE}] * 10, SHIPPED, True, ()),
    "quiet, no probe: not blessed on silence (`up` and an OOM count of 0 are not serving)": (
        [{RATIO: NO_DATA, P95: NO_DATA, UP: n(1), OOM: n(0)}] * 3 + [{RATIO: NAN, P95: NAN, UP: n(1), OOM: n(0)}] * 7,
        WITHOUT_PROBE, False, ("0% of its 10 ticks", "http-5xx-ratio saw it on 0 ticks", "target-down, oom-kills cannot")),
    "crashed, no probe: its target is down, nothing reads a request": (
        [{RATIO: NO_DATA, P95: NO_DATA, UP: n(0), OOM: n(0)}] * 10, WITHOUT_PROBE, False, ("0% of its 10 ticks",)),
    "Prometheus unreachable and the probe failing: nothing seen": (
        [{RATIO: ERROR, P95: ERROR, UP: ERROR, OOM: ERROR, PROBE: FAILED_PROBE}] * 10, SHIPPED, False, ("0%",)),
    # A watcher skewed from Prometheus (every query an error) while the probe passes: a release
    # with 30% errors passes its health probe; blind is no evidence (clock-skew-vs-prometheus).
    "blind, its probe passing: not blessed": (
        [{RATIO: ERROR, P95: ERROR, UP: ERROR, OOM: ERROR, PROBE: OK_PROBE}] * 10, SHIPPED, False,
        ("0% of its 10 ticks", "health on 10", "on 10 a rollback rule could not be read (blind)")),
    "one query failing on 1 tick of 10 still leaves 90%": (
        [{RATIO: n(0.0), PROBE: OK_PROBE}] * 9 + [{RATIO: ERROR, PROBE: OK_PROBE}], [RATIO, PROBE], True, ()),
    "traffic on 7 ticks of 10 (70% < 80%)": (
        [{RATIO: n(0.0), P95: n(0.01), UP: n(1)}] * 7 + [{RATIO: NAN, P95: NAN, UP: n(1)}] * 3,
        WITHOUT_PROBE, False, ("70% of its 10 ticks", "http-5xx-ratio saw it on 7 ticks, p95 on 7")),
    "traffic on 8 ticks of 10 (80%)": (
        [{RATIO: n(0.0), P95: n(0.01), UP: n(1)}] * 8 + [{RATIO: NAN, P95: NAN, UP: n(1)}] * 2,
        WITHOUT_PROBE, True, ()),
    "a table whose rollback rules cannot show serving": (
        [{UP: n(1), OOM: n(0), HOST_OOM: n(0)}] * 10, [UP, OOM, HOST_OOM, CPU], False,
        ("no rollback rule can see it serving", "target-down, oom-kills, host-oom cannot")),
    "a table without rollback rules asks for nothing": ([{CPU: n(0.1)}] * 10, [CPU], True, ()),
}


@pytest.mark.parametrize("name", CASES)
def test_known_good_needs_the_release_seen_serving(name):
    ticks, rules, known_good, words = CASES[name]
    rec, short = window(ticks, rules)
    assert (short is None) is known_good, short
    for w in words:
        assert w in short.reason(), short.reason()


def test_a_breaching_reading_is_not_healthy_evidence_and_errors_are_not_either():
    rec, _ = window([{RATIO: n(0.4), PROBE: FAILED_PROBE}, {RATIO: ERROR, PROBE: FAILED_PROBE}], [RATIO, PROBE])
    assert (rec.watched_ticks, rec.evidence_ticks, rec.blind_ticks, rec.serving_ticks) == (2, 0, 1, {})


def test_a_tick_on_which_a_rollback_rule_fires_is_no_evidence():
    """A watcher that cannot act (halted, paused, shadow, a fleet-wide symptom) watches a
    release fail /health for 4 of its 10 ticks while its 5xx ratio reads 0: before, every tick
    was evidence (the ratio read a real number) and the release became known-good once /health
    cleared (sim seed 12001124)."""
    rec = ReleaseRecord("r2")
    for k in range(10):
        failing = 3 <= k < 7
        ticks = [SimpleNamespace(rule=RATIO, observation=classify(RATIO, n(0.0)), after=RuleState()),
                 SimpleNamespace(rule=PROBE, observation=classify(PROBE, FAILED_PROBE if failing else OK_PROBE),
                                 after=RuleState(phase=Phase.FIRING if failing else Phase.INACTIVE))]
        evidence.count_tick(rec, ticks)
    assert (rec.watched_ticks, rec.evidence_ticks, rec.firing_ticks, rec.blind_ticks) == (10, 6, 4, 0)
    short = evidence.shortfall(rec, [RATIO, PROBE], 0.8)
    assert short is not None and "on 4 a rollback rule fired" in short.reason(), short


def test_evidence_zero_turns_the_check_off():
    _, short = window([{RATIO: NO_DATA}] * 5, [RATIO], need=0.0)
    assert short is None


def test_a_new_window_starts_its_evidence_from_nothing():
    rec, _ = window([{RATIO: n(0.0)}] * 5, [RATIO])
    evidence.reset(rec)
    assert (rec.watched_ticks, rec.evidence_ticks, rec.blind_ticks, rec.serving_ticks) == (0, 0, 0, {})


@pytest.mark.parametrize("r, serving", [(RATIO, True), (P95, True), (PROBE, True), (UP, False), (OOM, False),
                                        (HOST_OOM, False),
                                        (rule("h", HostCheck("oom_kills"), above=0.0, evidence="serving"), True)])
def test_which_rules_can_show_the_release_serving(r, serving):
    assert r.shows_serving is serving


def test_the_evidence_key_is_read_and_a_wrong_value_names_file_line_and_key(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("rules:\n  - name: up\n    query: min(up)\n    below: 1\n    evidence: none\n    action: rollback\n"
                    "  - name: ratio\n    query: sum(rate(x[$window]))\n    above: 1\n    action: rollback\n")
    up, ratio = load_rule_file(path)
    assert (up.evidence, up.shows_serving, ratio.evidence, ratio.shows_serving) == ("none", False, None, True)
    path.write_text("rules:\n  - name: up\n    query: min(up)\n    below: 1\n    evidence: nothing\n    action: rollback\n")
    with pytest.raises(ConfigError) as exc:
        load_rule_file(path)
    assert f"{path}:5: rule up: evidence" in str(exc.value) and "serving, none" in str(exc.value)


# ---------------------------------------------------------------------------------------------
# The shipped table


def shipped() -> dict[str, dict]:
    return {r["name"]: r for r in yaml.safe_load((REPO / "rules" / "default.yaml").read_text())["rules"]}


def test_the_shipped_table_reads_an_absent_5xx_series_as_zero_and_sees_a_crash_through_up():
    table = shipped()
    assert "metrics-vanished" not in table, "a fresh process has no request series: it rolled back quiet deploys"
    assert not [r for r in table.values() if r.get("no_data") in ("vanished", "breach")], "silence must never convict"
    assert "or vector(0)" in table["http-5xx-ratio"]["query"]
    assert table["target-down"]["query"].startswith("min(up ")
    assert table["target-down"]["evidence"] == "none" and table["oom-kills"]["evidence"] == "none"


def test_the_shipped_app_queries_are_the_python_packs_whose_promql_is_tested_in_promtool():
    """rules/packs/tests/python-prometheus-client_promql_test.yaml runs these queries over series
    named as prometheus_client names them (healthy: 0, 40% 5xx, no traffic: NaN, crash)."""
    pack = {r["name"]: r for r in yaml.safe_load((REPO / "rules/packs/python-prometheus-client.yaml").read_text())["rules"]}
    for name in ("http-5xx-ratio", "p95-latency-regression", "target-down"):
        assert " ".join(shipped()[name]["query"].split()) == " ".join(pack[name]["query"].split()), name


# ---------------------------------------------------------------------------------------------
# After a switch: the restored release on its own samples


CONFIG = SimpleNamespace(min_window=45.0, max_window=60.0)


@pytest.mark.parametrize("state, now, expected", [
    # After a deploy: the time since it, clamped up to min_window.
    (dict(changed_at=1000.0, deployed_at=1000.0, window_ends=2800.0, confirming=None), 1015.0, 45),
    # While a rollback is confirmed: the time since the switch, never clamped up (the clamp read
    # the bad release's 30 s before the switch: the rule pended at 40% on the known-good release).
    (dict(changed_at=1000.0, deployed_at=None, window_ends=None, confirming={"switched_at": 1000.0}), 1015.0, 15),
    # ... rounded down: never back over the scrape before the switch.
    (dict(changed_at=1000.0, deployed_at=None, window_ends=None, confirming={"switched_at": 1000.0}), 1003.9, 3),
    (dict(changed_at=1000.0, deployed_at=None, window_ends=None, confirming={"switched_at": 1000.0}), 1000.2, 1),
    (dict(changed_at=1000.0, deployed_at=None, window_ends=None, confirming={"switched_at": 1000.0}), 1300.0, 60),
])
def test_the_window_after_a_switch_holds_only_the_restored_releases_samples(state, now, expected):
    s = SimpleNamespace(**state, in_watch_window=lambda t: state["window_ends"] is not None and t < state["window_ends"])
    assert watch_window(now, s, CONFIG) == expected


class Reader:
    """Answers every rule from a table; records which rules were read."""

    def __init__(self, answers):
        self.answers = answers
        self.read: list[str] = []

    def read_all(self, rules, now, window_s, at=None, since=None):
        self.read += [r.name for r in rules]
        return {r.name: (self.answers.get(r.name.split("[")[0], []), 0.0) for r in rules}


def test_held_rules_are_not_read_and_keep_their_state():
    pending = RuleState(phase=Phase.PENDING, breach_since=10.0, active_since=10.0, failures=1)
    reader = Reader({"http-5xx-ratio": n(0.4), "health": OK_PROBE})
    ev = evaluate([RATIO, PROBE], reader, 20.0, 5, {"http-5xx-ratio": pending}, {}, 4,
                  held={"http-5xx-ratio": "not read until 45s after the switch"})
    assert reader.read == ["health"]
    held, probe = ev.rules
    assert held.held and held.after == pending and held.transitions == ()
    assert held.observation.outcome is Outcome.NO_DATA and "45s" in held.observation.detail
    assert [e.rule.name for e in ev.rules] == ["http-5xx-ratio", "health"], "the table's order is kept"
    assert not probe.held and probe.observation.outcome is Outcome.OK


def test_nan_is_no_traffic_and_no_evidence_while_zero_under_traffic_is():
    assert not classify(RATIO, NAN).healthy
    assert classify(RATIO, n(0.0)).healthy
    assert classify(RATIO, NO_DATA).outcome is Outcome.NO_DATA
    assert Observation(Outcome.OK, value=None).healthy  # a probe's answer
