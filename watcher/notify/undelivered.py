"""What finally failed to reach a notify target, kept for redelivery, also across restarts.

    Redeliveries          the open list of one Notifier (watcher/notify/notifier.py): a delivery that
                          finally failed (not permanently) is kept; `due()` (once per service
                          tick) hands back each one no sooner than `redelivery_backoff *
                          2**(n-1)` seconds after its last failure, for one more attempt; after
                          `redeliveries` failed ones it is dropped
    undelivered_from_journal
                          the open list as the journal shows it: for `status`, and for
                          `Redeliveries.restore()` after a restart

`id` names a message (the same for each of its targets): (id, target) names a delivery.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from watcher.core.envelope import Message, Severity
from watcher.notify.lanes import DeliveryResult, Lane

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Undelivered:
    """A message that finally failed for one endpoint, waiting for `retry_undelivered()`."""

    id: str
    message: Message
    target: str  # redacted
    reason: str
    attempts: int
    failed_at: float  # clock() of the first failure
    redeliveries: int = 0


@dataclass
class Pending:
    """Mutable record behind an Undelivered snapshot."""

    id: str
    message: Message
    lane: Lane
    endpoint: int
    target: str
    reason: str
    attempts: int
    failed_at: float
    last_failed_at: float
    redeliveries: int = 0
    in_flight: bool = False

    @property
    def key(self) -> tuple[str, int, int]:
        return (self.id, self.lane.index, self.endpoint)

    def snapshot(self) -> Undelivered:
        return Undelivered(self.id, self.message, self.target, self.reason, self.attempts,
                           self.failed_at, self.redeliveries)


class Redeliveries:
    """The undelivered messages of one Notifier, each (message, lane, endpoint) once. The
    journal function is the Notifier's (serialised and scrubbed there)."""

    def __init__(self, journal: Callable[..., None], clock: Callable[[], float], redeliveries: int,
                 redelivery_backoff: float):
        self._journal = journal
        self._clock = clock
        self.redeliveries = redeliveries
        self.redelivery_backoff = redelivery_backoff
        self._lock = threading.Lock()
        self._open: dict[tuple[str, int, int], Pending] = {}

    def keep(self, msg_id: str, message: Message, lane: Lane, endpoint: int, result: DeliveryResult) -> None:
        """A delivery that finally failed, not permanently: kept for redelivery."""
        now = self._clock()
        pending = Pending(msg_id, message, lane, endpoint, result.target, result.reason, result.attempts, now, now)
        with self._lock:
            self._open[pending.key] = pending

    def snapshot(self) -> list[Undelivered]:
        with self._lock:
            return [p.snapshot() for p in self._open.values()]

    def by_label(self, labels: Iterable[str]) -> dict[str, int]:
        """How many wait per target, each of `labels` included (0 when none)."""
        counts = dict.fromkeys(labels, 0)
        with self._lock:
            for pending in self._open.values():
                label = pending.lane.label
                counts[label] = counts.get(label, 0) + 1
        return counts

    def due(self) -> list[Pending]:
        """The ones due for one more attempt, each then in flight until `after()` or `unqueued()`."""
        now = self._clock()
        due: list[Pending] = []
        with self._lock:
            for pending in self._open.values():
                wait = self.redelivery_backoff * 2 ** pending.redeliveries
                if not pending.in_flight and now - pending.last_failed_at >= wait:
                    pending.in_flight = True
                    due.append(pending)
        return due

    def unqueued(self, pending: Pending) -> None:
        """A due one that could not be queued (its lane's queue is full): due again later."""
        with self._lock:
            pending.in_flight = False

    def restore(self, events: Iterable[dict[str, Any]], find: Callable[[str], tuple[Lane, int] | None]) -> int:
        """After a restart: take back the undelivered messages the journal holds (see
        undelivered_from_journal) whose target `find` still knows; returns how many."""
        restored = 0
        now = self._clock()
        for record in undelivered_from_journal(events):
            if record["state"] != "retrying" or not record.get("title"):
                continue
            found = find(record["target"])
            if found is None:
                continue
            lane, index = found
            message = Message(
                kind=record["message_kind"], severity=Severity.parse(record["severity"]),
                title=record["title"], body=record.get("body", ""),
                route_tags=tuple(record.get("route_tags") or ()),
                release=record.get("release", ""), rules=tuple(record.get("rules") or ()),
            )
            pending = Pending(record["id"], message, lane, index, record["target"],
                              record.get("reason", ""), int(record.get("attempts", 0)),
                              float(record.get("time", now)), now)
            with self._lock:
                self._open.setdefault(pending.key, pending)
            restored += 1
        return restored

    def after(self, pending: Pending, result: DeliveryResult) -> None:
        """One redelivery done: delivered, failed again, or given up (journaled as such)."""
        message = pending.message
        with self._lock:
            pending.in_flight = False
            pending.redeliveries += 1
            pending.attempts += result.attempts
            pending.last_failed_at = self._clock()
            if result.delivered or result.permanent or pending.redeliveries >= self.redeliveries:
                self._open.pop(pending.key, None)
            else:
                pending.reason = result.reason
        fields = dict(id=pending.id, message_kind=message.kind, target=pending.target,
                      delivered=result.delivered, redelivery=pending.redeliveries)
        if result.delivered:
            log.info("notify redelivered kind=%s target=%s redelivery=%d", message.kind,
                     pending.target, pending.redeliveries)
            self._journal("notify_retried", **fields)
            return
        log.warning("notify redelivery failed kind=%s target=%s redelivery=%d reason=%s",
                    message.kind, pending.target, pending.redeliveries, result.reason)
        self._journal("notify_retried", **fields, reason=result.reason)
        if result.permanent or pending.redeliveries >= self.redeliveries:
            why = "permanent failure" if result.permanent else f"{pending.redeliveries} redeliveries failed"
            log.warning("notify dropped kind=%s target=%s reason=%s", message.kind, pending.target, why)
            self._journal("notify_dropped", id=pending.id, message_kind=message.kind,
                          target=pending.target, reason=f"{why}: {result.reason}")


def undelivered_from_journal(events: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages the journal shows as not delivered, oldest first: each notify_failed
    record (with `state`: "retrying", or "dropped" when given up / permanent) unless a later
    notify_retried with delivered=true closed it. Events are journal dicts with "kind"."""
    open_: OrderedDict[tuple[str, str], dict[str, Any]] = OrderedDict()
    for event in events:
        kind = event.get("kind")
        key = (str(event.get("id", "")), str(event.get("target", "")))
        if kind == "notify_failed":
            record = dict(event)
            record["state"] = "dropped" if event.get("permanent") else "retrying"
            open_[key] = record
        elif kind == "notify_retried" and key in open_:
            if event.get("delivered"):
                del open_[key]
            else:
                open_[key]["reason"] = event.get("reason", open_[key].get("reason", ""))
        elif kind == "notify_dropped" and key in open_:
            open_[key]["state"] = "dropped"
            open_[key]["reason"] = event.get("reason", "")
    return list(open_.values())
