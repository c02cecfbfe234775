"""Message templates: pure, tested without sending."""

from __future__ import annotations

import pytest

from watcher.base import format as fmt
from watcher.core import messages as m
from watcher.core.envelope import MessageContext, Severity
from watcher.core.rules import Finding

T0 = 1_714_533_120.0  # 2024-05-01T03:12:00Z
NOW = T0 + 130  # 2m10s later

CTX = MessageContext("shop-api", "web-1").at(NOW)
LONG = MessageContext(
    "shop-api-with-a-very-long-service-name-for-testing",
    "web-frontend-01.eu-west-1.internal.example.com",
).at(NOW)
LONG_FROM = "2024-05-01T03-10-00Z-release-candidate-abcdef1234567890"
LONG_TO = "2024-04-30T22-00-00Z-release-candidate-0123456789abcdef"

F_5XX = Finding("http-5xx-ratio", "rollback", "> 0.1", value=0.3021, unit="ratio", since=T0,
                labels={"instance": "web-1:8000"})
F_P95 = Finding("p95-latency-regression", "rollback", "> 5 x baseline 0.12 and > 0.2",
                value=1.234, unit="s", since=T0 + 10)
F_CPU = Finding("cpu-saturation", "notify", "> 0.95", value=0.987, unit="%", since=T0)
F_PROBE = Finding("health-endpoint", "rollback", "status 200", detail="3 consecutive failures",
                  since=T0)


def every_event(ctx, from_id="r42", to_id="r41"):
    """(name, message, expected severity) for each template."""
    findings = [F_5XX, F_P95]
    return [
        ("deploy_seen", m.deploy_seen(ctx, from_id, 1800), Severity.INFO),
        ("window_passed", m.window_passed(ctx, from_id), Severity.INFO),
        ("rule_pending", m.rule_pending(ctx, F_5XX, from_id), Severity.WARNING),
        ("rolling_back", m.rolling_back(ctx, from_id, to_id, findings), Severity.WARNING),
        ("rollback_verified", m.rollback_verified(ctx, from_id, to_id, findings, 12.4),
         Severity.SUCCESS),
        ("rollback_failed", m.rollback_failed(ctx, from_id, to_id, "`systemctl reload` exited 1"),
         Severity.CRITICAL),
        ("verify_failed", m.verify_failed(ctx, from_id, to_id, "health 503 after 20 attempts"),
         Severity.CRITICAL),
        ("cannot_act", m.cannot_act(ctx, from_id, "max_auto_rollbacks (1) reached", findings),
         Severity.CRITICAL),
        ("fired_outside_window", m.fired_outside_window(ctx, from_id, findings), Severity.FAILURE),
        ("would_roll_back", m.would_roll_back(ctx, from_id, to_id, findings, "mode: shadow"),
         Severity.WARNING),
        ("would_roll_back_no_target", m.would_roll_back(ctx, from_id, None, findings, "paused"),
         Severity.WARNING),
        ("blind", m.blind(ctx, ["http-5xx-ratio", "oom-kills"], "connect error to prometheus"),
         Severity.WARNING),
        ("recovered", m.recovered(ctx, ["http-5xx-ratio", "oom-kills"]), Severity.INFO),
        ("reload_refused", m.reload_refused(ctx, ["rules/a.yaml:3: above: not a number"]),
         Severity.WARNING),
        ("notify_only", m.notify_only(ctx, F_CPU, from_id), Severity.FAILURE),
        ("test_message", m.test_message(ctx, "critical"), Severity.CRITICAL),
    ]


@pytest.mark.parametrize("name,message,severity", every_event(CTX), ids=lambda v: v if isinstance(v, str) else "")
def test_every_template_has_prefix_severity_and_next_command(name, message, severity):
    assert message.severity is severity
    assert message.title.startswith("[shop-api@web-1] ")
    assert len(message.title) <= m.TITLE_MAX
    assert "\n" not in message.title
    assert "Next: " in message.body


@pytest.mark.parametrize("name,message,severity", every_event(LONG, LONG_FROM, LONG_TO),
                         ids=lambda v: v if isinstance(v, str) else "")
def test_long_service_host_and_release_names_keep_title_within_80_chars(name, message, severity):
    assert len(message.title) <= 80
    assert message.title.startswith("[shop-a…")
    assert "end-01] " in message.title and "example.com" not in message.title  # first DNS label
    if message.severity is Severity.CRITICAL and name != "test_message":
        assert "NEEDS HUMAN" in message.title
    if LONG_FROM in message.release:
        # the body keeps the full ids the title shortened
        assert LONG_FROM in message.body


def test_rolling_back_body_names_rules_values_thresholds_since_and_releases():
    msg = m.rolling_back(CTX, "r42", "r41", [F_5XX, F_P95])
    assert msg.title == "[shop-api@web-1] rolling back r42 → r41"
    body = msg.body
    assert "r42 → r41" in body
    assert "http-5xx-ratio: 30.21% against > 10%" in body
    assert 'instance="web-1:8000"' in body
    assert "since 2024-05-01T03:12:00Z (for 2m10s)" in body
    assert "p95-latency-regression: 1.2s against > 5 x baseline 0.12 and > 0.2" in body
    assert "Next: rollback-watcher status" in body
    assert msg.rules == ("http-5xx-ratio", "p95-latency-regression")
    assert msg.release == "r42"


def test_rollback_verified_says_how_long_it_took_in_title_and_body():
    msg = m.rollback_verified(CTX, "r42", "r41", [F_5XX], 72.0)
    assert msg.title == "[shop-api@web-1] rolled back r42 → r41 in 1m12s"
    assert "took 1m12s" in msg.body
    assert "r42 is marked bad" in msg.body


def test_verify_failed_says_the_watcher_stops_until_resolve():
    msg = m.verify_failed(CTX, "r42", "r41", "health 503")
    assert "stops acting until a human runs `rollback-watcher resolve`" in msg.body
    assert msg.title == "[shop-api@web-1] NEEDS HUMAN: r42 → r41 did not verify"


def test_cannot_act_carries_the_deciders_reason():
    msg = m.cannot_act(CTX, "r42", "barrier r40 between r42 and r39", [F_5XX])
    assert "barrier r40 between r42 and r39" in msg.body
    assert "http-5xx-ratio" in msg.body


def test_would_roll_back_offers_the_manual_rollback_command():
    msg = m.would_roll_back(CTX, "r42", "r41", [F_5XX], "mode: shadow")
    assert "Next: rollback-watcher rollback --to r41" in msg.body
    assert "mode: shadow" in msg.body


def test_probe_finding_without_value_shows_condition_and_detail():
    line = m.fmt_finding(F_PROBE, NOW)
    assert line == ("health-endpoint: status 200, since 2024-05-01T03:12:00Z (for 2m10s); "
                    "3 consecutive failures")


def test_many_findings_are_listed_compactly_with_a_count_of_the_rest():
    findings = [Finding(f"rule-{i}", "rollback", "> 1", value=2.0) for i in range(9)]
    msg = m.rolling_back(CTX, "r42", "r41", findings)
    assert msg.body.count("\n- rule-") == m.FINDINGS_SHOWN
    assert "... and 4 more: rule-5, rule-6, rule-7, rule-8" in msg.body


def test_several_rules_firing_outside_window_title_names_first_and_count():
    msg = m.fired_outside_window(CTX, "r42", [F_5XX, F_P95, F_PROBE])
    assert msg.title == "[shop-api@web-1] http-5xx-ratio +2 firing on r42 (outside window)"


def test_without_now_since_is_shown_without_duration():
    ctx = MessageContext("shop-api", "web-1")
    msg = m.rule_pending(ctx, F_5XX, "r42")
    assert "since 2024-05-01T03:12:00Z" in msg.body
    assert "(for " not in msg.body


@pytest.mark.parametrize("value,unit,text", [
    (0.3021, "%", "30.21%"),
    (0.3021, "ratio", "30.21%"),
    (0.1, "ratio", "10%"),
    (1.234, "s", "1.2s"),
    (0.25, "s", "250ms"),
    (130, "s", "2m10s"),
    (3, "", "3"),
    (0.3021, "", "0.3021"),
    (123456.0, "", "123,456"),
    (512.0, "MB", "512MB"),
    (None, "s", "n/a"),
    (float("nan"), "", "NaN"),
])
def test_values_are_formatted_readably_by_unit(value, unit, text):
    assert fmt.format_value(value, unit) == text


@pytest.mark.parametrize("seconds,text", [
    (0.4, "400ms"), (1.0, "1s"), (9.5, "9.5s"), (45, "45s"), (130, "2m10s"), (1800, "30m"),
    (3900, "1h5m"), (90000, "1d1h"),
])
def test_durations_are_short(seconds, text):
    assert fmt.format_duration(seconds) == text


def test_simple_conditions_take_the_unit_and_complex_ones_stay_as_written():
    assert fmt.format_condition("> 0.1", "ratio") == "> 10%"
    assert fmt.format_condition(">= 0.2", "s") == ">= 200ms"
    assert fmt.format_condition("> 5 x baseline 0.12", "s") == "> 5 x baseline 0.12"


def test_typical_timestamp_release_ids_fit_whole_in_critical_titles():
    msg = m.verify_failed(CTX, "20240501031000", "20240430220000", "health 503")
    assert msg.title == "[shop-api@web-1] NEEDS HUMAN: 20240501031000 → 20240430220000 did not verify"
    assert len(msg.title) <= 80


def test_shorten_cuts_in_the_middle_and_keeps_both_ends():
    assert m.shorten("abcdefghij", 7) == "abc…hij"
    assert m.shorten("short", 7) == "short"


def test_severity_order_lets_critical_through_a_failure_filter():
    order = sorted(Severity, key=lambda s: s.rank)
    assert [s.value for s in order] == ["info", "success", "warning", "failure", "critical"]
    assert Severity.CRITICAL.at_least(Severity.FAILURE)
    assert not Severity.WARNING.at_least(Severity.FAILURE)
    assert Severity.parse("CRITICAL") is Severity.CRITICAL
    with pytest.raises(ValueError, match="one of: info, success"):
        Severity.parse("urgent")
