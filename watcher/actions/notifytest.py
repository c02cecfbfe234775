"""`rollback-watcher notify-test`: one test message to every notify target, each delivered now
(with its retries) through the same Notifier the service uses, and one line per target saying
whether it arrived."""

from __future__ import annotations

import socket
import time
from typing import TextIO

from watcher.core.envelope import MessageContext, NotifyTarget, Severity
from watcher.core.messages import test_message
from watcher.notify.notifier import Notifier


def notify_test_command(
    targets: list[NotifyTarget],
    severity: Severity | str,
    out: TextIO,
    *,
    ctx: MessageContext | None = None,
    timeout: float = 10.0,
    retries: int = 1,
) -> int:
    """`rollback-watcher notify-test`: send a test message of `severity` to every target
    (ignoring min_severity and tags, but saying when they would filter it), print one line per
    target with its redacted URL, and return 0 if every target got it, else 1."""
    try:
        severity = Severity.parse(severity)
    except ValueError as e:
        out.write(f"{e}\n")
        return 1
    if not targets:
        out.write("no notify targets configured\n")
        return 1
    if ctx is None:
        ctx = MessageContext(service="rollback-watcher", host=socket.gethostname())
    message = test_message(ctx.at(time.time()) if ctx.now is None else ctx, severity)
    delivered = total = 0
    for target in targets:
        notifier = Notifier([target], journal=lambda *a, **k: None, timeout=timeout,
                            retries=retries, backoff=0.5)
        try:
            results = notifier.deliver_now(message, ignore_filters=True)
        finally:
            notifier.close(0)
        note = ""
        if not severity.at_least(target.min_severity):
            note = f" (note: its min_severity {target.min_severity.value} filters {severity.value})"
        for result in results:
            total += 1
            if result.delivered:
                delivered += 1
                out.write(f"delivered  {result.target}  ({result.elapsed:.2f}s){note}\n")
            else:
                plural = "s" if result.attempts != 1 else ""
                out.write(f"FAILED     {result.target}  {result.reason} "
                          f"({result.attempts} attempt{plural})\n")
    out.write(f"{delivered} of {total} delivered\n")
    return 0 if delivered == total else 1
