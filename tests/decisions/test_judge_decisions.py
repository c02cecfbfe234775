"""Issue 23: the sequential judge (`judge: sequential`) against real Prometheus (scrape 1 s), a
real demo app under its supervisor and a real symlink host, the watcher as a subprocess
(lab.py). Each scenario's rule table is one judge rule on its own app:

    judge-30pct-50rps        30% 5xx at 50 req/s: rolled back within 4 scrapes (4 s) of the onset
    judge-5pct-2rps-both     5% on both releases at 2 req/s: never rolled back
    judge-5pct-50rps         5% at 50 req/s against a 10% limit: never rolled back
    judge-flapping           0% for 5 s, 30% for 5 s, ... (15% on average): rolled back
    judge-warmup-burst       50% for 6 s after the deploy, inside a declared 10 s warm-up: not

No fakes. The demo app records errors in exact proportions (after n requests, floor(n x share)
failed), so these are the judge's decisions on known shares, not draws."""

from __future__ import annotations

import math
import threading

import pytest
from lab import Lab, assert_no_rollback, assert_rolled_back, decision, poll_until, prepare

from support import Outcome

pytestmark = pytest.mark.decisions

QUIET_S = 25.0  # a "never rolled back" scenario watches this long after the deploy
ROLLBACK_WAIT = 90.0


def judge_rule(instance: str, **extra) -> dict:
    return {"name": "http-5xx-judge", "judge": "sequential",
            "errors": f'http_requests_total{{instance="{instance}",code=~"5.."}}',
            "total": f'http_requests_total{{instance="{instance}"}}',
            "above": 0.10, "alpha": 0.001, "action": "rollback", **extra}


def judged(**extra):
    return lambda st: {"rules": [judge_rule(st.instance, **extra)]}


def switched_after(out: Outcome) -> float | None:
    intents = out.stage.events("rollback_intent")
    return intents[0]["time"] - out.onset if intents else None


def scrapes_until_switch(out: Outcome) -> int:
    """Prometheus' successful scrapes of the app from the onset to the rollback's intent: the
    judge's evidence arrives one scrape at a time, so this is its speed in the clock that
    evidence keeps. At a 1 s scrape, 4 scrapes are the issue's 4 s; on a loaded machine the
    scrapes come late and the seconds grow with them (6.2 s in one full run), the count not."""
    st = out.stage
    end = st.events("rollback_intent")[0]["time"]
    # In milliseconds: a range rounded up to whole seconds reached up to a second before the
    # onset and counted a scrape of r1 (a CI run: "switch 3.8s and 5 scrapes").
    span_ms = max(1, math.floor((end - out.onset) * 1000))
    found = st.prometheus.query(f'sum_over_time(up{{instance="{st.instance}"}}[{span_ms}ms])', at=end)
    return int(float(found[0]["value"][1])) if found else 0


@decision("judge-30pct-50rps")
def run_judge_fault(lab: Lab) -> Outcome:
    st = prepare(lab, "judge-30pct-50rps", {"r1": {"error_ratio": 0.0, "rps": 50}, "r2": {"error_ratio": 0.30, "rps": 50}},
                 configure=judged())
    onset = st.deploy("r2")
    poll_until(lambda: st.events("rollback_verified"), ROLLBACK_WAIT)
    st.watch_quietly(2)
    return Outcome(st, onset)


@pytest.mark.decision("judge-30pct-50rps")
def test_judge_rolls_back_30_percent_errors_at_50_rps_within_4_seconds(outcome):
    assert_rolled_back(outcome, "r2", "r1")
    scrapes = scrapes_until_switch(outcome)
    assert scrapes <= 4, f"switch {switched_after(outcome):.1f}s and {scrapes} scrapes after the onset"
    firing = outcome.stage.events("rule", rule="http-5xx-judge", after="firing")
    assert firing and "confidence" in firing[0]["reason"], firing


@decision("judge-5pct-2rps-both")
def run_judge_low_rate(lab: Lab) -> Outcome:
    st = prepare(lab, "judge-5pct-2rps-both", {"r1": {"error_ratio": 0.05, "rps": 2}, "r2": {"error_ratio": 0.05, "rps": 2}},
                 configure=judged())
    onset = st.deploy("r2")
    st.watch_quietly(QUIET_S, onset)
    return Outcome(st, onset)


@pytest.mark.decision("judge-5pct-2rps-both")
def test_judge_keeps_a_5_percent_release_at_2_rps(outcome):
    assert_no_rollback(outcome, "r2")


@decision("judge-5pct-50rps")
def run_judge_under_limit(lab: Lab) -> Outcome:
    st = prepare(lab, "judge-5pct-50rps", {"r1": {"error_ratio": 0.0, "rps": 50}, "r2": {"error_ratio": 0.05, "rps": 50}},
                 configure=judged())
    onset = st.deploy("r2")
    st.watch_quietly(QUIET_S, onset)
    return Outcome(st, onset)


@pytest.mark.decision("judge-5pct-50rps")
def test_judge_keeps_a_5_percent_release_against_a_10_percent_limit(outcome):
    assert_no_rollback(outcome, "r2")


@decision("judge-flapping")
def run_judge_flapping(lab: Lab) -> Outcome:
    # The healthy half first: starting with 30% would be convicted within the first burst (the
    # 30% scenario), never testing that the judge keeps the evidence of every burst. Counted
    # since the deploy, the share swings between 10% and 15%; 15% is beyond doubt after about
    # 850 requests, at the end of the second or third burst.
    st = prepare(lab, "judge-flapping", {"r1": {"error_ratio": 0.0, "rps": 50}, "r2": {"error_ratio": 0.0, "rps": 50}},
                 configure=judged())
    done = threading.Event()

    def flap():  # 0% for 5 s, 30% for 5 s, ... until the rollback (or the wait) ends it
        bad = False
        while not done.wait(5.0):
            bad = not bad
            if st.current_id() != "r2":
                return
            st.app.control(error_ratio=0.30 if bad else 0.0)

    onset = st.deploy("r2")
    flapper = threading.Thread(target=flap, name="judge-flapping", daemon=True)
    flapper.start()
    try:
        poll_until(lambda: st.events("rollback_verified"), ROLLBACK_WAIT)
    finally:
        done.set()
        flapper.join(10)
    st.watch_quietly(2)
    return Outcome(st, onset)


@pytest.mark.decision("judge-flapping")
def test_judge_rolls_back_a_release_flapping_between_30_and_0_percent(outcome):
    assert_rolled_back(outcome, "r2", "r1")


@decision("judge-warmup-burst")
def run_judge_warmup(lab: Lab) -> Outcome:
    st = prepare(lab, "judge-warmup-burst",
                 {"r1": {"error_ratio": 0.0, "rps": 50}, "r2": {"error_ratio": 0.0, "rps": 50, "warmup_s": 6,
                                                               "warmup_error_ratio": 0.50}},
                 configure=judged(warmup="10s"))
    onset = st.deploy("r2")
    st.watch_quietly(QUIET_S, onset)
    return Outcome(st, onset)


@pytest.mark.decision("judge-warmup-burst")
def test_judge_ignores_a_burst_inside_the_declared_warm_up(outcome):
    assert_no_rollback(outcome, "r2")
