"""The watcher's two clocks (docs/design.md section 4, "Time").

Durations inside a process (`for`, watch windows, cooldowns, pauses, waits) must not move when
the wall clock steps: an NTP step of +5 min during `pending` fired a rule at once; +1 day put a
bad deploy outside its window; -1 h stalled `for` for an hour. So the watcher's `now` is
STEADY time: the wall time read when the process started plus the monotonic time elapsed since.
It reads like an epoch timestamp (state.json, messages), and moves exactly as the monotonic
clock does. The WALL clock is still what PromQL's `time=` must be (Prometheus' samples carry
wall timestamps), and what people read.

A step of the wall clock against steady time larger than one interval is reported once (the
caller journals and tells it). Times saved in state.json are steady time with the offset of
the moment they were saved: a new process converts them once (`shift_state_times`), by how far
its steady time is from the saver's (`restart_shift`): in the same boot, the monotonic clock
says how much time really passed since the save, so a step of the wall clock after the last
save (the service down, or dying before its next save) is not taken for that much time passed.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ClockStep:
    seconds: float  # how far the wall clock moved against steady time (+ forward, - back)
    wall: float
    steady: float


class Timebase:
    def __init__(self, wall: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic):
        self.wall = wall
        self.monotonic = monotonic
        self._wall0 = wall()
        self._mono0 = monotonic()
        self._reported = 0.0  # the offset last reported (a step is said once)

    def now(self) -> float:
        """Steady time: epoch-like, never steps."""
        return self._wall0 + (self.monotonic() - self._mono0)

    def offset(self) -> float:
        """Wall time minus steady time: 0 until the wall clock steps."""
        return self.wall() - self.now()

    def to_wall(self, steady: float) -> float:
        return steady + self.offset()

    def step(self, tolerance: float) -> ClockStep | None:
        """A step of more than `tolerance` seconds since the last one reported, once."""
        offset = self.offset()
        moved = offset - self._reported
        if abs(moved) <= tolerance:
            return None
        self._reported = offset
        return ClockStep(moved, self.wall(), self.now())


# Times in State (and its parts) that are moments, not durations: converted on load.
# state.py checks the same lists for times that are not finite numbers when it loads.
STATE_TIMES = ("deployed_at", "window_ends", "changed_at", "paused_until", "last_rollback_at", "lock_let_go_at")
RELEASE_TIMES = ("deployed_at", "window_ends", "first_seen", "marked_at", "last_rollback_at", "last_watched")
RULE_TIMES = ("breach_since", "active_since", "fired_at", "gated_since")
# Moments kept inside the state's records: a rollback being confirmed (its bound), a wait for
# the deploy lock or the backend, the intent of a switch, the open incident and its timeline.
RECORD_TIMES = {"confirming": ("switched_at", "until"), "lock_wait": ("since", "last"), "intent": ("at",)}
INCIDENT_TIMES = ("opened_at",)


def boot_id() -> str:
    """This boot's id: the monotonic clock is comparable across processes only within one boot."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as fh:
            return fh.read().strip()
    except OSError:
        return ""


def restart_shift(state: Any, now: float, monotonic: float, boot: str) -> float:
    """How far to move the saved moments of `state` into the steady time of a process whose steady
    `now` and monotonic clock are given. In the boot that saved it: the saver's steady time at
    the save plus the monotonic time elapsed since is where the saver's clock would be now, so
    a wall step while no process looked (down, or after the last save) moves nothing. In
    another boot (or an older state file): the offset saved with it."""
    saved_at, saved_mono = getattr(state, "saved_at", None), getattr(state, "saved_monotonic", None)
    if (boot and getattr(state, "boot_id", "") == boot and isinstance(saved_at, (int, float))
            and isinstance(saved_mono, (int, float)) and _moment(saved_at) and _moment(saved_mono)
            and monotonic >= saved_mono):
        return float(now - (saved_at + (monotonic - saved_mono)))
    return float(state.clock_offset)


def shift_state_times(state: Any, by: float) -> None:
    """Move every saved moment of `state` by `by` seconds (a new process's steady time starts at
    the wall clock: the old process's steady times are moved by the offset it saved). `state` is
    a store.state.State, which this bottom floor cannot import: it is read by attribute name."""
    # A hand-edited or damaged state file must not stop the watcher: an offset that is not a
    # finite number is no offset.
    if isinstance(by, bool) or not isinstance(by, (int, float)) or not math.isfinite(by) or not by:
        state.clock_offset = 0.0
        return
    for name in STATE_TIMES:
        if isinstance(getattr(state, name, None), (int, float)):
            setattr(state, name, getattr(state, name) + by)
    for rec in state.releases.values():
        for name in RELEASE_TIMES:
            if isinstance(getattr(rec, name, None), (int, float)):
                setattr(rec, name, getattr(rec, name) + by)
    for readings in (getattr(state, "host_counters", None) or {}).values():
        for r in readings if isinstance(readings, list) else ():
            if isinstance(r, list) and r and isinstance(r[0], (int, float)) and not isinstance(r[0], bool):
                r[0] += by
    for rule, rs in list(state.rules.items()):
        moved = {n: getattr(rs, n) + by for n in RULE_TIMES if isinstance(getattr(rs, n, None), (int, float))}
        if moved:
            state.rules[rule] = dataclasses.replace(rs, **moved)
    # Left behind, a confirmation's bound was in the old frame: after a step of +3000 s and a
    # restart, "did not clear" at once; a lock wait moved the window's end by the step.
    for record, names in RECORD_TIMES.items():
        held = getattr(state, record, None)
        if not isinstance(held, dict):
            continue
        for name in names:
            if _moment(held.get(name)):
                held[name] += by
    incident = getattr(state, "incident", None)
    if incident is not None:
        for name in INCIDENT_TIMES:
            if _moment(getattr(incident, name, None)):
                setattr(incident, name, getattr(incident, name) + by)
        for line in incident.timeline if isinstance(incident.timeline, list) else ():
            if isinstance(line, dict) and _moment(line.get("time")):
                line["time"] += by
    state.clock_offset = 0.0


def _moment(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
