"""Health probes: one GET with httpx, checked for its status and (if set) a body substring,
within a timeout. Never raises: every way of not getting the expected answer is a failed
probe with a short reason ("connect error", "status 503", "timeout after 2s")."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from watcher.core.rules import HttpCheck, ProbeResult

# How much of a body a probe reads to look for `expect_body`: a health endpoint that streams a
# huge body must not hold the probe or fill memory.
PROBE_BODY_LIMIT = 64 * 1024


class HttpProbe:
    """Health probes through one httpx client (connection reuse across ticks)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        # httpx: ~85 ms CPU and 9 MB of import; only `http:` rules and verify probe (backtest,
        # explain and a table of PromQL rules never do).

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


