"""Loaded (through PYTHONPATH) only into a watcher that the decision scenarios run under
libfaketime. libfaketime 0.9.10 makes Python's time.sleep fail with EINVAL (it passes
clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME) a faked deadline), so sleeping goes through
select(), which it leaves alone. Nothing else changes: no clock is read or faked here."""

import select
import time


def _sleep(seconds: float) -> None:
    if seconds < 0:
        raise ValueError("sleep length must be non-negative")
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        select.select([], [], [], left)


time.sleep = _sleep
