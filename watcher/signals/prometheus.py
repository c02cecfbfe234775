"""Prometheus as a signal source: anything that speaks its HTTP API (Prometheus, Thanos, Mimir,
VictoriaMetrics), through prometheus-api-client, with an explicit timeout and its own retries
off (docs/design.md section 10). Every failure comes out as a SourceError with a short reason
that holds no secret; the replies are parsed strictly (a malformed one is an error, never
"no data")."""

from __future__ import annotations

import datetime as dt
import math
import os
import statistics
from collections.abc import Callable
from typing import Any

import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from urllib3.util.retry import Retry

from watcher.base.errors import SourceError
from watcher.base.redact import redact_url
from watcher.config.scrub import Redactor, prometheus_secrets
from watcher.core.rules import Sample

# A range query's series: (labels, [(time, value), ...]).
Series = tuple[dict[str, str], list[tuple[float, float]]]


class PrometheusSource:
    """Anything that speaks the Prometheus HTTP API: Prometheus, Thanos, Mimir, VictoriaMetrics.

    PrometheusConnect waits forever and retries on its own by default (a closed port takes 6 s
    to fail): we always pass a timeout and turn its retries off, so that an error reaches the
    state machine at once and is counted there.
    """

    def __init__(self, url: str, timeout: float = 5.0, headers: dict[str, str] | None = None):
        self.url = url.rstrip("/")
        self.timeout = timeout
        # An auth proxy may echo the credential in a 401 body; the URL may carry userinfo. No
        # error text leaves this class with either (the edges scrub again, scrub.py).
        self._redact = Redactor.of(prometheus_secrets(self.url, headers))
        self.display_url = self._redact(redact_url(self.url, use_apprise=False))
        no_retries = Retry(total=0, connect=0, read=0, redirect=0, status=0, raise_on_status=False)
        # requests re-reads proxy settings from the environment on every request: a fifth of a
        # query's CPU at 1,000 rules a tick. Read them once here; the environment of a running
        # service does not change anyway.
        session = requests.Session()
        session.proxies = requests.utils.get_environ_proxies(self.url)
        ca_bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        if ca_bundle:
            session.verify = ca_bundle
        session.trust_env = False
        self._client = PrometheusConnect(url=self.url, headers=headers or None, retry=no_retries, timeout=timeout,
                                         session=session)

    def query(self, expr: str, at: float | None = None) -> list[Sample]:
        """An instant query at `at` (epoch seconds). Raises SourceError."""
        params: dict[str, str] = {"timeout": f"{self.timeout:g}s"}
        if at is not None:
            params["time"] = f"{at:.3f}"
        result = self._call(self._client.custom_query, query=expr, params=params)
        return parse_vector(result)

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[Series]:
        """A range query: [(labels, [(t, value), ...]), ...]. Raises SourceError."""

        result = self._call(
            self._client.custom_query_range,
            query=expr,
            start_time=dt.datetime.fromtimestamp(start, tz=dt.UTC),
            end_time=dt.datetime.fromtimestamp(end, tz=dt.UTC),
            # Plain seconds: Prometheus refuses a fractional duration such as "7.5s".
            step=f"{max(step, 0.001):g}",
            params={"timeout": f"{self.timeout:g}s"},
        )
        return parse_matrix(result)

    def samples(self, selector: str, start: float, end: float) -> list[Series]:
        """Every raw sample of a vector selector in [start, end] as scraped (no step, no
        lookback): `SELECTOR[Ns]` asked at `end`. Raises SourceError."""
        seconds = max(1, math.ceil(end - start))
        params = {"timeout": f"{self.timeout:g}s", "time": f"{end:.3f}"}
        result = self._call(self._client.custom_query, query=f"{selector}[{seconds}s]", params=params)
        return parse_matrix(result)

    def _call(self, fn: Callable[..., Any], **kwargs: Any) -> Any:

        try:
            return fn(**kwargs)
        except PrometheusApiClientException as exc:
            raise SourceError(_short(self._redact(f"Prometheus answered {exc}"))) from None
        except requests.Timeout:
            raise SourceError(f"Prometheus did not answer within {self.timeout:g}s") from None
        except requests.ConnectionError as exc:
            raise SourceError(_short(f"cannot reach Prometheus at {self.display_url}: {_root_cause(exc)}")) from None
        except requests.RequestException as exc:
            raise SourceError(_short(f"request to Prometheus failed: {type(exc).__name__}")) from None
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            # Invalid JSON or a reply without data.result: the client indexes it blindly.
            raise SourceError(_short(self._redact(f"Prometheus sent an invalid reply ({type(exc).__name__}: {exc})"))) from None

    def server_time(self) -> float:
        """Prometheus' own clock: `time()` evaluated at its now. Raises SourceError."""
        result = self._call(self._client.custom_query, query="time()", params={"timeout": f"{self.timeout:g}s"})
        try:
            return float(result[0])
        except (TypeError, ValueError, IndexError):
            raise SourceError("Prometheus sent an invalid reply to time()") from None

    def active_targets(self) -> list[dict[str, Any]]:
        """The active scrape targets (/api/v1/targets), each with its scrapeInterval. Raises
        SourceError."""
        result = self._call(self._client.get_targets, state="active")
        if isinstance(result, dict):
            result = result.get("activeTargets", [])
        return [t for t in result or [] if isinstance(t, dict)]

    def baseline(self, expr: str, end: float, window: float, step: float) -> float | None:
        """The median over [end - window, end] of the rule's value (the largest series at each
        step), or None when there was no data before `end`."""
        series = self.query_range(expr, end - window, end, step)
        return baseline_from_series(series)


def baseline_from_series(series: list[Series]) -> float | None:
    per_step: dict[float, float] = {}
    for _labels, points in series:
        for t, value in points:
            if math.isfinite(value):
                per_step[t] = max(value, per_step.get(t, -math.inf))
    if not per_step:
        return None
    return statistics.median(per_step.values())


def parse_vector(result: Any) -> list[Sample]:
    """The `result` of an instant query: a vector, or a scalar. Raises SourceError on any
    other shape (a matrix, strings, missing fields)."""
    if isinstance(result, list) and len(result) == 2 and isinstance(result[0], (int, float)) and isinstance(result[1], str):
        return [Sample({}, _number(result[1]))]  # a scalar: [time, "value"]
    if not isinstance(result, list):
        raise SourceError(f"Prometheus sent an unexpected result ({type(result).__name__}, not a vector)")
    samples = []
    for item in result:
        if not isinstance(item, dict) or "value" not in item:
            raise SourceError("Prometheus sent an unexpected result (not an instant vector)")
        metric, value = item.get("metric", {}), item["value"]
        if not isinstance(metric, dict) or not isinstance(value, list) or len(value) != 2:
            raise SourceError("Prometheus sent an unexpected result (malformed sample)")
        samples.append(Sample({str(k): str(v) for k, v in metric.items()}, _number(value[1])))
    return samples


def parse_matrix(result: Any) -> list[Series]:
    if not isinstance(result, list):
        raise SourceError("Prometheus sent an unexpected result (not a matrix)")
    out = []
    for item in result:
        if not isinstance(item, dict) or not isinstance(item.get("values"), list):
            raise SourceError("Prometheus sent an unexpected result (not a range vector)")
        points = []
        for pair in item["values"]:
            if not isinstance(pair, list) or len(pair) != 2 or not isinstance(pair[0], (int, float)):
                raise SourceError("Prometheus sent an unexpected result (malformed point)")
            points.append((float(pair[0]), _number(pair[1])))
        metric = item.get("metric", {})
        out.append(({str(k): str(v) for k, v in metric.items()} if isinstance(metric, dict) else {}, points))
    return out


def _number(raw: object) -> float:
    # Prometheus sends values as strings ("0.1", "NaN", "+Inf"); anything else is a bad reply.
    if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
        raise SourceError("Prometheus sent a sample value that is not a number")
    try:
        return float(raw)
    except (ValueError, OverflowError):
        raise SourceError(f"Prometheus sent a sample value that is not a number: {str(raw)[:40]!r}") from None


def _short(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _root_cause(exc: BaseException) -> str:
    while exc.__context__ is not None and exc.__context__ is not exc:
        exc = exc.__context__
    return type(exc).__name__ if not str(exc) else _short(f"{type(exc).__name__}", 80)


