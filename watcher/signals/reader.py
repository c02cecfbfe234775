"""One tick's reads: every rule's signal at once, concurrently, with a bound in time and in
how many queries Prometheus is sent at once (docs/design.md sections 3, 4 and 10). The
sources are each their own module:

    prometheus.py   PrometheusSource: instant and range queries through prometheus-api-client
    probe.py        HttpProbe: one GET with httpx: status, optional body substring, timeout
    host.py         HostSignals: counters this host keeps without an exporter
    counts.py       CountReader: the judge's counters, increases since a moment

Every failure to read comes out as a SourceError with a short reason; the rule state machine
holds its state on it. Nothing here decides anything.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from watcher.base.errors import SourceError
from watcher.config.schema import WatcherConfig
from watcher.core.rules import CounterShare, HttpCheck, ProbeResult, PromQuery, Rule, SignalResult, render_query
from watcher.signals.counts import CountReader
from watcher.signals.host import HostSignals
from watcher.signals.probe import HttpProbe
from watcher.signals.prometheus import PrometheusSource
from watcher.signals.promtime import ClockGuard

log = logging.getLogger(__name__)

# A tick waits for a signal at most its timeout plus this; host counters get HOST_READ_TIMEOUT.
READ_GRACE = 0.5
HOST_READ_TIMEOUT = 5.0


class SignalReader:
    """Reads the signals of one tick concurrently through a bounded pool, so that a slow query
    does not delay the others and Prometheus is never sent more than `max_concurrency` at once."""

    def __init__(self, prometheus: PrometheusSource | None, probe: HttpProbe | None, host: HostSignals | None,
                 max_concurrency: int = 8, clock_guard: ClockGuard | None = None):
        self.prometheus = prometheus
        # prometheus_time.ClockGuard: while the watcher's clock and Prometheus' disagree, every
        # PromQL read is an error (blind), never "no data".
        self.clock_guard = clock_guard
        self.probe = probe
        self.host = host
        self._workers = max(1, max_concurrency)
        self._pool = ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="signal")
        self._counts: CountReader | None = None  # made at the first judge rule
        # Prometheus' scrape interval (configured or learned, promtime.learn_into): a judge rule
        # starts counting one interval after the deploy (signals/counts.py).
        self.scrape_interval = 15.0

    def read_all(self, rules: list[Rule], now: float, window_s: int, at: float | None = None,
                 since: float | None = None) -> dict[str, tuple[SignalResult, float]]:
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

    def _await(self, rule: Rule, future: Future[tuple[SignalResult, float]], started: dict[str, float],
               batch_deadline: float) -> tuple[SignalResult, float]:
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
            reads = len(signal.selectors) if isinstance(signal, CounterShare) else 1
            return reads * self.prometheus.timeout + READ_GRACE
        return HOST_READ_TIMEOUT + READ_GRACE

    def _timed(self, rule: Rule, now: float, window_s: int, started: dict[str, float], at: float | None = None,
               since: float | None = None) -> tuple[SignalResult, float]:
        start = started[rule.name] = time.monotonic()
        result = self.read(rule, now, window_s, at, since)
        return result, time.monotonic() - start

    def read(self, rule: Rule, now: float, window_s: int, at: float | None = None,
             since: float | None = None) -> SignalResult:
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
                if self.probe is None:
                    raise SourceError("no HTTP probe configured")
                return self.probe.probe(signal)
            if self.host is None:
                raise SourceError("no host signals configured")
            return self.host.read(rule, now, since)
        except SourceError as exc:
            return exc

    def counts(self, rule: Rule, now: float, at: float | None = None, since: float | None = None) -> SignalResult:
        """A judge rule's counts since `since` (steady time, like `now`; asked of Prometheus in
        wall time, `at`): signals/counts.py."""
        if self.prometheus is None:
            raise SourceError("no prometheus configured")
        if self._counts is None:
            self._counts = CountReader(self.prometheus)
        wall = now if at is None else at
        deployed = None if since is None else since + (wall - now)
        return self._counts.read(rule, wall, deployed, self.scrape_interval)

    def keep_host_counters(self, history: dict[str, list[Any]]) -> None:
        """Keep the `host:` rules' readings in `history` (State.host_counters), see HostSignals."""
        if self.host is not None:
            self.host.keep_in(history)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self.probe is not None:
            self.probe.close()


def build_reader(config: WatcherConfig) -> SignalReader:
    """A SignalReader for a WatcherConfig: a Prometheus source only when a rule needs one."""
    needs_prometheus = any(r.reads_prometheus for r in config.rules)
    needs_probe = any(isinstance(r.signal, HttpCheck) for r in config.rules)
    prometheus = (
        PrometheusSource(config.prometheus.url, config.prometheus.timeout, config.prometheus.headers)
        if needs_prometheus
        else None
    )
    guard: ClockGuard | None = None
    if prometheus is not None:
        guard = ClockGuard(prometheus, config.prometheus.scrape_interval)
    reader = SignalReader(prometheus, HttpProbe() if needs_probe else None, HostSignals(),
                          config.prometheus.max_concurrency, clock_guard=guard)
    reader.scrape_interval = config.prometheus.scrape_interval
    return reader
