"""Signals: where rules get their numbers (docs/design.md sections 3, 4 and 10).

    PrometheusSource   instant and range queries through prometheus-api-client
    HttpProbe          one GET with httpx: status, optional body substring, timeout
    HostSignals        counters this host keeps without an exporter (/proc/vmstat, systemd),
                       in hostsignals.py
    SignalReader       reads every rule's signal of one tick, concurrently, with a bound

Every failure to read comes out as a SourceError with a short reason; the rule state machine
holds its state on it. Nothing here decides anything.
"""

from __future__ import annotations

import logging
import math
import os
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from watcher.base.errors import SourceError
from watcher.core.rules import CounterShare, HttpCheck, ProbeResult, PromQuery, Rule, Sample, render_query
from watcher.signals.host import HostSignals, counter_increase, read_vmstat_counter

__all__ = ["HostSignals", "HttpProbe", "PrometheusSource", "SignalReader", "build_reader", "counter_increase",
           "parse_matrix", "parse_vector", "read_vmstat_counter"]

log = logging.getLogger(__name__)

# How much of a body a probe reads to look for `expect_body`: a health endpoint that streams a
# huge body must not hold the probe or fill memory.
PROBE_BODY_LIMIT = 64 * 1024
# A tick waits for a signal at most its timeout plus this; host counters get HOST_READ_TIMEOUT.
READ_GRACE = 0.5
HOST_READ_TIMEOUT = 5.0


class PrometheusSource:
    """Anything that speaks the Prometheus HTTP API: Prometheus, Thanos, Mimir, VictoriaMetrics.

    PrometheusConnect waits forever and retries on its own by default (a closed port takes 6 s
    to fail): we always pass a timeout and turn its retries off, so that an error reaches the
    state machine at once and is counted there.
    """

    def __init__(self, url: str, timeout: float = 5.0, headers: dict | None = None):
        import requests
        from prometheus_api_client import PrometheusConnect
        from urllib3.util.retry import Retry

        from watcher.base.redact import redact_url
        from watcher.config.scrub import Redactor, prometheus_secrets

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
        params = {"timeout": f"{self.timeout:g}s"}
        if at is not None:
            params["time"] = f"{at:.3f}"
        result = self._call(self._client.custom_query, query=expr, params=params)
        return parse_vector(result)

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[tuple[dict, list[tuple[float, float]]]]:
        """A range query: [(labels, [(t, value), ...]), ...]. Raises SourceError."""
        import datetime as dt

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

    def samples(self, selector: str, start: float, end: float) -> list[tuple[dict, list[tuple[float, float]]]]:
        """Every raw sample of a vector selector in [start, end] as scraped (no step, no
        lookback): `SELECTOR[Ns]` asked at `end`. Raises SourceError."""
        seconds = max(1, math.ceil(end - start))
        params = {"timeout": f"{self.timeout:g}s", "time": f"{end:.3f}"}
        result = self._call(self._client.custom_query, query=f"{selector}[{seconds}s]", params=params)
        return parse_matrix(result)

    def _call(self, fn: Callable, **kwargs):
        import requests
        from prometheus_api_client.exceptions import PrometheusApiClientException

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

    def active_targets(self) -> list[dict]:
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


def baseline_from_series(series: list[tuple[dict, list[tuple[float, float]]]]) -> float | None:
    per_step: dict[float, float] = {}
    for _labels, points in series:
        for t, value in points:
            if math.isfinite(value):
                per_step[t] = max(value, per_step.get(t, -math.inf))
    if not per_step:
        return None
    return statistics.median(per_step.values())


def parse_vector(result) -> list[Sample]:
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


def parse_matrix(result) -> list[tuple[dict, list[tuple[float, float]]]]:
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


def _number(raw) -> float:
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


class HttpProbe:
    """Health probes through one httpx client (connection reuse across ticks)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        import httpx

        self._httpx = httpx
        # No redirects: a health endpoint that redirects (or loops) is not answering 200.
        self._client = httpx.Client(follow_redirects=False, trust_env=False)
        self._clock = clock

    def probe(self, check: HttpCheck) -> ProbeResult:
        """Never raises: every failure to get the expected answer is a failed probe."""
        httpx = self._httpx
        start = self._clock()
        deadline = start + check.timeout
        try:
            with self._client.stream("GET", check.url, timeout=httpx.Timeout(check.timeout)) as response:
                body = b""
                if check.expect_body is not None:
                    for chunk in response.iter_bytes():
                        body += chunk
                        if len(body) >= PROBE_BODY_LIMIT or check.expect_body.encode() in body or self._clock() > deadline:
                            break
                status = response.status_code
        except httpx.TimeoutException:
            return ProbeResult(False, f"timeout after {check.timeout:g}s", None, self._clock() - start)
        except httpx.ConnectError:
            return ProbeResult(False, "connect error", None, self._clock() - start)
        except httpx.HTTPError as exc:
            return ProbeResult(False, f"{type(exc).__name__}", None, self._clock() - start)
        elapsed = self._clock() - start
        if status != check.expect_status:
            return ProbeResult(False, f"status {status}", status, elapsed)
        if check.expect_body is not None and check.expect_body.encode() not in body:
            return ProbeResult(False, f"body lacks {check.expect_body!r}", status, elapsed)
        return ProbeResult(True, f"{status} in {elapsed * 1000:.0f} ms", status, elapsed)

    def close(self) -> None:
        self._client.close()


class SignalReader:
    """Reads the signals of one tick concurrently through a bounded pool, so that a slow query
    does not delay the others and Prometheus is never sent more than `max_concurrency` at once."""

    def __init__(self, prometheus: PrometheusSource | None, probe: HttpProbe | None, host: HostSignals | None,
                 max_concurrency: int = 8, clock_guard=None):
        self.prometheus = prometheus
        # prometheus_time.ClockGuard: while the watcher's clock and Prometheus' disagree, every
        # PromQL read is an error (blind), never "no data".
        self.clock_guard = clock_guard
        self.probe = probe
        self.host = host
        self._workers = max(1, max_concurrency)
        self._pool = ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="signal")
        self._counts = None  # signals/counts.CountReader, made at the first judge rule
        # Prometheus' scrape interval (configured or learned, promtime.learn_into): a judge rule
        # starts counting one interval after the deploy (signals/counts.py).
        self.scrape_interval = 15.0

    def read_all(self, rules: list[Rule], now: float, window_s: int, at: float | None = None,
                 since: float | None = None) -> dict[str, tuple[object, float]]:
        """rule name -> (list[Sample] | ProbeResult | SourceError, seconds it took), every rule.

        Bounded in time: the socket timeouts of requests and httpx apply to each read, so a peer
        that trickles its answer a byte at a time would hold a tick for minutes. A read that is
        not done by its own timeout (plus a little) after it STARTED counts as an error (a failed
        probe); its thread finishes in the background. Reads queued behind the pool are not
        charged for the wait, so a table of 1,000 rules is not "blind" for being long."""
        skewed = None
        if self.clock_guard is not None and at is not None and any(r.reads_prometheus for r in rules):
            skewed = self.clock_guard.blind_reason(self._pool.submit)
        started: dict[str, float] = {}
        read = [r for r in rules if skewed is None or not r.reads_prometheus]
        futures = {rule.name: (rule, self._pool.submit(self._timed, rule, now, window_s, started, at, since))
                   for rule in read}
        # How long the whole batch may take if every read used its full limit, pool-width at a time.
        waves = -(-len(rules) // self._workers) if rules else 0
        batch_deadline = time.monotonic() + waves * max((self._limit(r) for r in rules), default=0.0)
        results = {name: self._await(rule, future, started, batch_deadline) for name, (rule, future) in futures.items()}
        for rule in rules:
            results.setdefault(rule.name, (SourceError(skewed or "not read"), 0.0))
        return results

    def _await(self, rule: Rule, future, started: dict[str, float], batch_deadline: float) -> tuple[object, float]:
        limit = self._limit(rule)
        while True:
            begun = started.get(rule.name)
            deadline = begun + limit if begun is not None else min(batch_deadline, time.monotonic() + 0.05)
            try:
                return future.result(timeout=max(0.0, deadline - time.monotonic()))
            except FutureTimeout:
                if begun is None and time.monotonic() < batch_deadline:
                    continue  # still queued behind other reads: not its fault
                future.cancel()
                elapsed = time.monotonic() - begun if begun is not None else 0.0
                if isinstance(rule.signal, HttpCheck):
                    return ProbeResult(False, f"timeout after {rule.signal.timeout:g}s (answer too slow)", None, elapsed), elapsed
                why = f"no complete answer within {limit:g}s" if begun is not None else "not read: every reader is busy"
                return SourceError(why), elapsed

    def probe_bounded(self, check: HttpCheck) -> ProbeResult:
        """One probe outside a tick (verification), bounded the same way as in read_all."""
        future = self._pool.submit(self._probe_once, check)
        try:
            return future.result(timeout=check.timeout + READ_GRACE)
        except FutureTimeout:
            future.cancel()
            return ProbeResult(False, f"timeout after {check.timeout:g}s (answer too slow)", None, check.timeout)

    def _probe_once(self, check: HttpCheck) -> ProbeResult:
        if self.probe is None:
            self.probe = HttpProbe()
        return self.probe.probe(check)

    def _limit(self, rule: Rule) -> float:
        signal = rule.signal
        if isinstance(signal, HttpCheck):
            return signal.timeout + READ_GRACE
        if rule.reads_prometheus and self.prometheus is not None:
            # A judge rule reads its selectors one after the other (two, four with the old release's).
            reads = 1 if isinstance(signal, PromQuery) else len(signal.selectors)
            return reads * self.prometheus.timeout + READ_GRACE
        return HOST_READ_TIMEOUT + READ_GRACE

    def _timed(self, rule: Rule, now: float, window_s: int, started: dict[str, float], at: float | None = None,
               since: float | None = None) -> tuple[object, float]:
        start = started[rule.name] = time.monotonic()
        result = self.read(rule, now, window_s, at, since)
        return result, time.monotonic() - start

    def read(self, rule: Rule, now: float, window_s: int, at: float | None = None, since: float | None = None):
        """One rule's signal. PromQL is asked at `at` (wall time; default `now`)."""
        signal = rule.signal
        try:
            if isinstance(signal, PromQuery):
                if self.prometheus is None:
                    raise SourceError("no prometheus configured")
                return self.prometheus.query(render_query(signal.query, window_s), at=now if at is None else at)
            if isinstance(signal, CounterShare):
                return self.counts(rule, now, at, since)
            if isinstance(signal, HttpCheck):
                return self.probe.probe(signal)
            return self.host.read(rule, now, since)
        except SourceError as exc:
            return exc

    def counts(self, rule: Rule, now: float, at: float | None = None, since: float | None = None):
        """A judge rule's counts since `since` (steady time, like `now`; asked of Prometheus in
        wall time, `at`): signals/counts.py."""
        if self.prometheus is None:
            raise SourceError("no prometheus configured")
        if self._counts is None:
            from watcher.signals.counts import CountReader

            self._counts = CountReader(self.prometheus)
        wall = now if at is None else at
        deployed = None if since is None else since + (wall - now)
        return self._counts.read(rule, wall, deployed, self.scrape_interval)

    def keep_host_counters(self, history: dict[str, list]) -> None:
        """Keep the `host:` rules' readings in `history` (State.host_counters), see HostSignals."""
        if self.host is not None:
            self.host.keep_in(history)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self.probe is not None:
            self.probe.close()


def build_reader(config) -> SignalReader:
    """A SignalReader for a WatcherConfig: a Prometheus source only when a rule needs one."""
    needs_prometheus = any(r.reads_prometheus for r in config.rules)
    needs_probe = any(isinstance(r.signal, HttpCheck) for r in config.rules)
    prometheus = (
        PrometheusSource(config.prometheus.url, config.prometheus.timeout, config.prometheus.headers)
        if needs_prometheus
        else None
    )
    guard = None
    if prometheus is not None:
        from watcher.signals.promtime import ClockGuard

        guard = ClockGuard(prometheus, config.prometheus.scrape_interval)
    reader = SignalReader(prometheus, HttpProbe() if needs_probe else None, HostSignals(),
                          config.prometheus.max_concurrency, clock_guard=guard)
    reader.scrape_interval = config.prometheus.scrape_interval
    return reader
