"""Verification after a switch: a rollback that silently fails is worse than none (seed 000).

It passes when the backend reports the target as current, and then the `verify:` URL and every
probe rule answer as expected, `successes` times in a row, within `attempts` tries `every`
seconds apart (seed 003: 20 attempts, 3 s apart).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from watcher.backends.base import Backend
from watcher.base.errors import WatcherError
from watcher.config.schema import VerifyConfig
from watcher.core.rules import HttpCheck, ProbeResult, Rule


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    detail: str
    attempts: int
    seconds: float


class Prober(Protocol):
    """What verification probes through (signals.HttpProbe, or the reader's bounded pool)."""

    def probe(self, check: HttpCheck) -> ProbeResult: ...


def verify(
    target: str,
    backend: Backend,
    config: VerifyConfig,
    probe_rules: list[Rule],
    probe: Prober,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> VerifyResult:
    start = clock()
    try:
        current = backend.current().id
    except WatcherError as exc:
        return VerifyResult(False, f"the backend cannot say which release is current: {exc}", 0, clock() - start)
    if current != target:
        return VerifyResult(False, f"the backend reports {current} as current, not {target}", 0, clock() - start)

    checks = [r.signal for r in probe_rules if isinstance(r.signal, HttpCheck)]
    if config.url:
        checks.insert(0, HttpCheck(config.url, config.expect_status, config.expect_body, config.timeout))
    if not checks:
        return VerifyResult(True, f"{target} is current (no verify url and no probe rules to ask)", 0, clock() - start)

    in_a_row = 0
    last = ""
    for attempt in range(1, config.attempts + 1):
        failed = None
        for check in checks:
            result = probe.probe(check)
            if not result.ok:
                failed = f"{check.url}: {result.detail}"
                break
        if failed is None:
            in_a_row += 1
            if in_a_row >= config.successes:
                return VerifyResult(True, f"{target} is current and healthy (attempt {attempt})", attempt, clock() - start)
        else:
            in_a_row = 0
            last = failed
        if attempt < config.attempts:
            sleep(config.every)
    return VerifyResult(False, f"not healthy after {config.attempts} attempts: {last}", config.attempts, clock() - start)
