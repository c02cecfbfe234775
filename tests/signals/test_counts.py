"""The sequential judge's reading (signals/counts.py) against a real Prometheus scraping a real
demo app every second: raw counter samples since the deploy, counted as core/judge.py says,
then judged through the same SignalReader and classify the service uses."""

from __future__ import annotations

import time

import pytest

from support import DemoAppProcess, PrometheusServer
from watcher.core.rules import CounterShare, Outcome, Rule, classify
from watcher.signals.prometheus import PrometheusSource
from watcher.signals.reader import SignalReader


@pytest.fixture(scope="module")
def one_stack(prometheus_bin, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("counts")
    with DemoAppProcess(workdir, "r1", settings={"rps": 50}) as app, \
            PrometheusServer(workdir, [app.target], binary=prometheus_bin) as prom:
        prom.wait_for_series('count_over_time(up{job="demo"}[1m]) >= 3', timeout=30)
        yield app, prom


@pytest.fixture
def stack(one_stack):
    """The module's app and Prometheus, the app healthy again (each test sets its own fault)."""
    app, _prom = one_stack
    app.control(error_ratio=0.0, latency_s=0.005)
    time.sleep(1.5)  # a scrape after the reset: the previous test's failures are before any "deploy"
    return one_stack


def judge_rule(instance: str, **kw) -> Rule:
    signal = CounterShare(errors=f'http_requests_total{{instance="{instance}",code=~"5.."}}',
                          total=f'http_requests_total{{instance="{instance}"}}')
    return Rule(**{"name": "judge", "signal": signal, "action": "rollback", "above": 0.10, **kw})


def read(rule: Rule, source: PrometheusSource, deployed: float, at: float | None = None):
    reader = SignalReader(source, None, None)
    reader.scrape_interval = 1.0
    try:
        at = time.time() if at is None else at
        return reader.read(rule, now=at, window_s=60, at=at, since=deployed)
    finally:
        reader.close()


def wait_scrapes(after: float, n: int = 3) -> None:
    """Until Prometheus has scraped the app about `n` times after counting starts (one scrape
    interval, 1 s, after `after`)."""
    time.sleep(max(0.0, after + 1 + n + 0.5 - time.time()))


def test_a_30_percent_release_is_counted_from_the_deploy_and_judged_conclusive(stack):
    app, prom = stack
    source = PrometheusSource(prom.url, timeout=5.0)
    deployed = time.time()
    app.control(error_ratio=0.3)
    wait_scrapes(deployed)
    counts = read(judge_rule(app.target), source, deployed)
    # Only what the new release served: about 30%, nothing of the healthy traffic before.
    assert counts.total >= 50
    assert 0.2 <= counts.bad / counts.total <= 0.35
    obs = classify(judge_rule(app.target), counts)
    assert obs.outcome is Outcome.BREACH
    assert "99.9% confidence" in obs.detail and obs.judgement.low > 0.10


def test_a_healthy_release_counts_requests_and_no_failure(stack):
    app, prom = stack
    source = PrometheusSource(prom.url, timeout=5.0)
    deployed = time.time()
    wait_scrapes(deployed)
    counts = read(judge_rule(app.target), source, deployed)
    assert counts.total >= 50 and counts.bad == 0
    assert classify(judge_rule(app.target), counts).outcome is Outcome.OK


def test_requests_served_before_the_deploy_are_never_counted(stack):
    # A rollback: the bad release failed every request until the switch; the restored one
    # fails none. Not one of the bad release's failures may be counted against it.
    app, prom = stack
    source = PrometheusSource(prom.url, timeout=5.0)
    app.control(error_ratio=1.0)
    time.sleep(2.3)
    switched = time.time()
    app.control(error_ratio=0.0)
    wait_scrapes(switched)
    counts = read(judge_rule(app.target), source, switched)
    assert counts.total >= 50 and counts.bad == 0, counts


def test_inside_the_warm_up_nothing_is_counted(stack):
    app, prom = stack
    source = PrometheusSource(prom.url, timeout=5.0)
    counts = read(judge_rule(app.target, warmup=60.0), source, deployed=time.time() - 5)
    assert counts.total == 0 and "warming up" in counts.note
    assert classify(judge_rule(app.target, warmup=60.0), counts).outcome is Outcome.NO_DATA


def test_two_sample_against_the_share_before_the_deploy(stack):
    app, prom = stack
    source = PrometheusSource(prom.url, timeout=5.0)
    time.sleep(5)  # the healthy old release: nothing failed in the baseline window
    deployed = time.time()
    app.control(error_ratio=0.30)
    wait_scrapes(deployed, 4)
    rule = judge_rule(app.target, above=None, above_baseline=1.5, baseline_window=5.0)
    counts = read(rule, source, deployed)
    assert counts.old_total > 0 and counts.old_bad == 0
    obs = classify(rule, counts)
    assert obs.outcome is Outcome.BREACH, obs.detail
    assert "before the deploy" in obs.detail


def test_latency_form_counts_requests_slower_than_the_bound(stack):
    app, prom = stack
    source = PrometheusSource(prom.url, timeout=5.0)
    deployed = time.time()
    app.control(latency_s=1.0)  # every request takes about a second
    wait_scrapes(deployed)
    rule = Rule("latency", CounterShare(buckets=f'http_request_duration_seconds_bucket{{instance="{app.target}"}}'),
                "rollback", above=0.05, slower_than=0.25)
    counts = read(rule, source, deployed)
    assert counts.total >= 50 and counts.bound is not None and counts.bound >= 0.25
    assert classify(rule, counts).outcome is Outcome.BREACH


def test_a_selector_prometheus_refuses_is_a_source_error(stack):
    _app, prom = stack
    source = PrometheusSource(prom.url, timeout=5.0)
    rule = Rule("judge", CounterShare(errors='http_requests_total{code=~"("}', total="http_requests_total"), "rollback",
                above=0.1)
    result = read(rule, source, deployed=time.time() - 5)
    assert isinstance(result, Exception)
    assert classify(rule, result).outcome is Outcome.ERROR


def test_explain_shows_the_evidence_over_time_since_the_deploy(stack, tmp_path):
    import json

    from watcher.actions.explain import explain, render_text
    from watcher.config.load import load_config
    from watcher.store.state import StateStore

    app, prom = stack
    deployed = time.time()
    app.control(error_ratio=0.3)
    wait_scrapes(deployed, 4)
    state = tmp_path / "state"
    state.mkdir()
    (state / "state.json").write_text(json.dumps({"version": 1, "current": "r2", "deployed_at": deployed,
                                                  "changed_at": deployed, "window_ends": deployed + 1800}))
    instance = app.target
    (tmp_path / "rules.yaml").write_text(
        "rules:\n  - {name: http-5xx, judge: sequential,"
        f" errors: 'http_requests_total{{instance=\"{instance}\",code=~\"5..\"}}',"
        f" total: 'http_requests_total{{instance=\"{instance}\"}}', above: 0.1, action: rollback}}\n")
    (tmp_path / "watcher.yaml").write_text(f"service: shop\nprometheus: {{url: '{prom.url}', scrape_interval: 1s}}\n"
                                           f"rules: [rules.yaml]\nstate_dir: {state}\n")
    cfg = load_config(tmp_path / "watcher.yaml")
    e = explain(cfg, StateStore(cfg.state_dir), "http-5xx")
    assert e.outcome == "breach" and "99.9% confidence" in e.detail
    assert len(e.evidence) == 12
    requests = [row.get("requests", 0) for row in e.evidence]
    assert requests == sorted(requests) and requests[-1] >= 100  # the counts grow with time
    assert e.evidence[-1]["verdict"] == "fires"
    text = render_text(e)
    assert "counts of http_requests_total" in text and "evidence since the deploy" in text
