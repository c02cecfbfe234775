"""Counters this host keeps without an exporter: the kernel's OOM kills (/proc/vmstat) and a
systemd unit's restarts (NRestarts). A rule on one sees how much it grew within its window;
signals.SignalReader reads them beside the Prometheus queries and HTTP probes.
"""

from __future__ import annotations

import math
from collections.abc import MutableSequence, Sequence
from typing import Any

from watcher.base.errors import SourceError
from watcher.base.process import run_argv
from watcher.core.rules import HostCheck, Rule, Sample


class HostSignals:
    """Counters read on this host; a rule sees how much one grew within its window.

    Readings are kept per rule as [time, value] pairs in a dict the watcher hands over with
    `keep_in` (State.host_counters): saved with the state, they survive a restart and a reload,
    so an OOM kill between the deploy and a restart is still counted against the release.
    Without `keep_in`, they live as long as this object.
    """

    def __init__(self, systemctl: tuple[str, ...] = ("systemctl",)):
        self._history: dict[str, list[Any]] = {}
        self._systemctl = systemctl

    def keep_in(self, history: dict[str, list[Any]]) -> None:
        """Keep the readings in `history` from now on (and use those it holds): a damaged
        reading (not a finite [time, value]) is dropped, never counted."""
        for name, readings in list(history.items()):
            good = [r for r in readings if _reading(r)] if isinstance(readings, list) else []
            if good:
                history[name] = good
            else:
                del history[name]
        self._history = history

    def read(self, rule: Rule, now: float, since: float | None = None) -> list[Sample]:
        """The counter's growth within the rule's `window`, and never from before `since` (when
        `current` last changed): an OOM kill of the previous release is not evidence against
        the new one. The reading of the tick before the change is the starting point."""
        check = rule.signal
        assert isinstance(check, HostCheck)
        value = self._read_counter(check)
        history = self._history.setdefault(rule.name, [])
        history.append([now, value])
        window = check.window if since is None else min(check.window, max(0.0, now - since))
        return [Sample({"host_signal": check.kind}, counter_increase(history, now, window))]

    def _read_counter(self, check: HostCheck) -> float:
        if check.kind == "oom_kills":
            return read_vmstat_counter(check.path, "oom_kill")
        if check.unit is None:  # config/rulefile.py requires it for unit_restarts
            raise SourceError("host: unit_restarts names no unit")
        result = run_argv([*self._systemctl, "show", "--property=NRestarts", "--value", check.unit], timeout=5.0)
        if not result.ok:
            raise SourceError(f"cannot read NRestarts of {check.unit}: {result.describe()}")
        try:
            return float(result.output.strip())
        except ValueError:
            raise SourceError(f"systemctl gave no restart count for {check.unit}") from None


def read_vmstat_counter(path: str, name: str) -> float:
    try:
        with open(path, encoding="ascii", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(" ")
                if key == name:
                    return float(value)
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc.strerror}") from None
    except ValueError:
        raise SourceError(f"{path}: {name} is not a number") from None
    raise SourceError(f"{path} has no {name} counter (kernel older than 4.13?)")


def _reading(r: object) -> bool:
    return (isinstance(r, (list, tuple)) and len(r) == 2
            and all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in r))


def counter_increase(history: MutableSequence[Sequence[float]], now: float, window: float) -> float:
    """How much the counter grew within `window` before `now`; drops readings older than the
    window (keeping one just before it as the starting point). A counter that went down was
    reset (a reboot): count from the reset. `history` is a list (or deque) of (time, value)."""
    while len(history) > 2 and history[1][0] <= now - window:
        del history[0]
    increase = 0.0
    for (_, a), (_, b) in zip(history, list(history)[1:], strict=False):
        increase += b - a if b >= a else b
    return increase
