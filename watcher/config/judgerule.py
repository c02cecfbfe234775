"""The keys of a sequential judge rule (`judge: sequential`, core/judge.py), read for
rulefile.read_rule with the same FILE:LINE: KEY problems as every other key.

    error form       errors: SELECTOR   total: SELECTOR        above: SHARE
    two-sample form  errors, total,  above_baseline: FACTOR  [floor: SHARE]  [baseline_window]
                     (against the share before the deploy), or with baseline_errors and
                     baseline_total: against those selectors over the same span (the fleet's
                     hosts still on the known-good release)
    latency form     buckets: SELECTOR (a histogram's _bucket series)   above: SHARE (0.05 for
                     a p95), and slower_than: DURATION or slower_than_baseline: FACTOR
                     [floor: SECONDS] (x the pre-deploy quantile, at least floor)
    all              alpha (default 0.001), warmup (default 0s)

A judge fires when its evidence is conclusive, not after a time: `for`, `failures`, `trailing`
and `below` do not apply.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import promql_parser

from watcher.config import values as kinds
from watcher.config.values import FileReader
from watcher.core.rules import CounterShare

JUDGES = ("sequential",)
SELECTOR_KEYS = ("errors", "total", "buckets", "baseline_errors", "baseline_total")
KEYS = ("judge", *SELECTOR_KEYS, "alpha", "warmup", "slower_than", "slower_than_baseline")
NOT_FOR_JUDGE = {
    "for": "a judge fires when its evidence is conclusive, not after a time",
    "failures": "a judge fires when its evidence is conclusive, not after a count",
    "trailing": "a judge counts since the deploy (after `warmup`), not over a window",
    "below": "a judge tests `share > above` only",
}


def read_signal(m: Mapping[str, Any], f: FileReader, p: str) -> CounterShare | None:
    """The counters a judge rule reads, or None with its problems recorded."""
    f.read(m, "judge", kinds.choice(*JUDGES), p, required=True)
    sel = {key: f.read(m, key, selector, p) for key in SELECTOR_KEYS}
    if sel["buckets"]:
        for key in ("errors", "total", "baseline_errors", "baseline_total"):
            if sel[key]:
                f.problem(f.line_of(m, key), f"{p}{key}",
                          "the latency form reads `buckets` alone; the error form `errors` and `total`")
                return None
        return CounterShare(buckets=sel["buckets"])
    for key in ("errors", "total"):
        if not sel[key] and key not in m:
            f.problem(f.line_of(m), f"{p}{key}", "missing: a judge counts `errors` among `total` (or reads `buckets` "
                                           "for latency), each a counter selector")
    if bool(sel["baseline_errors"]) != bool(sel["baseline_total"]):
        missing = "baseline_total" if sel["baseline_errors"] else "baseline_errors"
        f.problem(f.line_of(m), f"{p}{missing}", "the two-sample form against other selectors needs both "
                                           "`baseline_errors` and `baseline_total`")
    if not (sel["errors"] and sel["total"]):
        return None
    return CounterShare(errors=sel["errors"], total=sel["total"], baseline_errors=sel["baseline_errors"],
                        baseline_total=sel["baseline_total"])


def read_params(m: Mapping[str, Any], f: FileReader, p: str, above: float | None, above_baseline: float | None) -> dict[str, Any]:
    """The judge's own values for Rule, and the problems of keys that do not fit its form."""
    for key, why in NOT_FOR_JUDGE.items():
        if key in m:
            f.problem(f.line_of(m, key), f"{p}{key}", f"does not apply to `judge:` rules ({why})")
    if m.get("no_data") in ("breach", "vanished"):
        f.problem(f.line_of(m, "no_data"), f"{p}no_data", "a judge rule takes `ok` or `keep`: no request is no evidence")
    params = {
        "alpha": f.read(m, "alpha", alpha, p, 0.001),
        "warmup": f.read(m, "warmup", kinds.duration, p, 0.0),
        "slower_than": f.read(m, "slower_than", kinds.positive_duration, p),
        "slower_than_baseline": f.read(m, "slower_than_baseline", positive_factor, p),
    }
    if "buckets" in m:
        if above_baseline is not None:
            f.problem(f.line_of(m, "above_baseline"), f"{p}above_baseline",
                      "the latency form compares with the baseline through `slower_than_baseline`")
        bounds = [k for k in ("slower_than", "slower_than_baseline") if k in m]
        if len(bounds) != 1:
            f.problem(f.line_of(m, bounds[1]) if bounds else f.line_of(m), f"{p}slower_than",
                      "the latency form needs one of `slower_than` (a duration) or `slower_than_baseline` "
                      "(x the pre-deploy quantile)")
        if "above" not in m:
            f.problem(f.line_of(m), f"{p}above", "missing: the share of requests slower than the bound that is too "
                                           "much (0.05: p95 above the bound)")
    else:
        for key in ("slower_than", "slower_than_baseline"):
            if key in m:
                f.problem(f.line_of(m, key), f"{p}{key}", "only applies to the latency form (`buckets:`)")
        if "above" not in m and "above_baseline" not in m:
            f.problem(f.line_of(m), f"{p}above", "missing: a judge needs `above` (a share) or `above_baseline` (a factor "
                                           "of the old release's share)")
        if above_baseline is not None and above_baseline <= 0:
            f.problem(f.line_of(m, "above_baseline"), f"{p}above_baseline", "must be above 0 for a judge")
        if above is not None and above >= 1:
            f.problem(f.line_of(m, "above"), f"{p}above", "a share of 1 (100%) can never be exceeded")
    if "baseline_errors" in m and above_baseline is None:
        f.problem(f.line_of(m, "baseline_errors"), f"{p}baseline_errors", "only applies with `above_baseline`")
    return params


def selector(v: Any) -> str:
    """A counter's vector selector, e.g. http_requests_total{code=~"5.."}: the judge reads its
    raw samples itself, so no function, range or operator."""
    text = kinds.string(v).strip()
    try:
        expr = promql_parser.parse(text)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"invalid PromQL: {exc}") from None
    if type(expr).__name__ != "VectorSelector":
        raise ValueError(f"expected a counter selector such as http_requests_total{{code=~\"5..\"}}, got {text!r} "
                         "(the judge counts raw samples itself: no rate(), sum() or range)")
    return text


def alpha(v: Any) -> float:
    """The chance of rolling back a release at the limit: 0.001 or 0.1%."""
    x = kinds.share(v)
    if not 0 < x < 0.5:
        raise ValueError(f"expected a small probability such as 0.001 (between 0 and 0.5), got {kinds.show(v)}")
    return x


def positive_factor(v: Any) -> float:
    x = kinds.number(v)
    if x <= 0:
        raise ValueError(f"must be above 0, got {v!r}")
    return x
