"""Delivering messages through Apprise, off the decision path (docs/design.md section 7).

Three modules do the parts; this one is the caller's side and what each result means:

    notify_targets.py      a target's endpoints (an Apprise URL, or each URL of an Apprise
                           config file), ntfy priorities and tags, one attempt through Apprise
    notify_lane.py         one target's queue, worker thread, and a delivery with retries
    notify_undelivered.py  what finally failed, kept and redelivered, also across restarts

Apprise is imported lazily, on the first delivery or redaction that needs it: its first use loads
211 plugins (~270 ms), and `rollback-watcher --help` must stay fast. Importing these modules
never imports apprise.

Filtering and routing
    A target receives a message when `message.severity.rank >= target.min_severity.rank`
    (info < success < warning < failure < critical, see envelope.Severity) and
      - the target has no tags (a catch-all), or
      - the message has no `route_tags` (a general event), or
      - the two share a tag (a rule's `notify: [tag]` reaching its team).
    So a routed message goes to the matching tagged targets and to every catch-all target; it is
    never lost because no tag matched.

Delivery
    `send()` returns at once: each target has its own queue, worker thread and Apprise objects,
    so a hanging endpoint delays only itself. One delivery is `1 + retries` attempts with
    exponential backoff (`backoff`, 2x, at most notify_lane.MAX_BACKOFF); each attempt is
    bounded by `timeout`.

    What finally failed is kept as undelivered; `retry_undelivered()` (once per service tick)
    re-sends each one attempt at a time, no sooner than `redelivery_backoff * 2**(n-1)`
    seconds after its last failure, at most `redeliveries` times, then drops it. A redelivered
    message says it is late in its first line.

    No de-duplication here: the service alone decides what is news (it sends on a state change:
    a rule's transition, an incident's new verdict, a rollback's outcome), and every message it
    sends is delivered. A second layer here dropped a second `rollback_failed`, or a
    `cannot_act` with a new reason, as repeats of the first.

Pictures
    A message with a `picture` (the rollback and halt messages, service/tick.py) goes with it
    as a PNG to the endpoints that take files (notify/targets.py, Attachments). It is drawn
    once per message on the PictureMaker's thread (notify/attach.py) and each lane waits for
    it at most PICTURE_WAIT_S (5 s); the tick has matplotlib imported ahead (expect_pictures). A
    picture that is late, fails, or is refused by the endpoint is logged and the message goes
    without it; `notify_sent` says whether it went with it.

Journal events (journal(kind, **fields); fields never hold a secret)
    notify_sent       id, message_kind, severity, target, attempts, elapsed_s, picture
    notify_failed     id, message_kind, severity, target, reason, attempts, permanent,
                      title, body, release, rules, route_tags
    notify_retried    id, message_kind, target, delivered, redelivery [, reason]
    notify_dropped    id, message_kind, target, reason
    `id` names the message (the same for each of its targets): (id, target) names a delivery.
    A permanent failure is journaled as notify_failed with permanent=true and never retried.
    The journal function is called from worker threads (serialised by the Notifier's own
    lock); `undelivered_from_journal()` rebuilds the open list for `status`, and
    `Notifier.restore_undelivered()` after a restart.

Secrets
    Redaction lives in watcher/base/redact.py; a Notifier scrubs Apprise's own log records of its
    secrets while it delivers.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from watcher.base.errors import WatcherError
from watcher.base.format import format_time
from watcher.base.redact import ScrubFilter, config_path, redact_text, redact_url, url_secrets
from watcher.core.envelope import Message, MessageContext, NotifyTarget, Severity
from watcher.notify.attach import PictureMaker
from watcher.notify.lanes import DeliveryResult, Job, Lane, LaneSettings
from watcher.notify.pictures import BreachPicture
from watcher.notify.targets import NTFY_PRIORITY_NUMBER, check_targets
from watcher.notify.undelivered import Pending, Redeliveries, Undelivered, undelivered_from_journal

__all__ = [
    "NTFY_PRIORITY_NUMBER",
    "DeliveryResult",
    "Message",
    "MessageContext",
    "Notifier",
    "NotifyTarget",
    "Severity",
    "Undelivered",
    "check_targets",
    "config_path",
    "redact_text",
    "redact_url",
    "undelivered_from_journal",
    "url_secrets",
]

log = logging.getLogger(__name__)


class Notifier:
    """Sends Messages to targets without ever blocking or failing the caller."""

    def __init__(
        self,
        targets: list[NotifyTarget],
        journal: Callable[..., None],
        clock: Callable[[], float] = time.time,
        timeout: float = 10.0,
        retries: int = 3,
        *,
        backoff: float = 1.0,
        redeliveries: int = 5,
        redelivery_backoff: float = 30.0,
        redact: Callable[[str], str] = str,
        pictures: PictureMaker | None = None,
    ):
        self.targets = list(targets)
        # The config's own secrets (Prometheus credentials in a "blind" error, ...): scrub.Redactor.
        self.redact = redact
        self.timeout = float(timeout)
        self.retries = max(0, int(retries))
        self.backoff = max(0.0, float(backoff))
        self._journal_fn = journal
        self._clock = clock
        self._stopping = threading.Event()
        # The pictures of the rollback and halt messages, drawn on the maker's own thread and
        # waited for at most PICTURE_WAIT_S by each lane (notify/pictures.py).
        self._pictures = pictures if pictures is not None else PictureMaker()
        settings = LaneSettings(self.timeout, self.backoff, self._stopping, self._scrub, self._picture)
        self._lanes = [Lane(i, t, settings, self._process, self._job_done) for i, t in enumerate(self.targets)]
        self._lock = threading.Lock()  # pending count, journal calls
        self._idle = threading.Condition(self._lock)
        self._jobs = 0
        self._redeliveries = Redeliveries(self._journal, clock, max(0, int(redeliveries)),
                                          max(0.0, float(redelivery_backoff)))
        self._closed = False
        self._secrets: frozenset[str] | None = None
        self._secrets_lock = threading.Lock()
        self._log_filter: ScrubFilter | None = None

    # -- secrets --

    def secrets(self) -> frozenset[str]:
        """Every secret substring of every target (computed once; imports apprise)."""
        with self._secrets_lock:
            if self._secrets is None:
                found: set[str] = set()
                for lane in self._lanes:
                    found |= url_secrets(lane.target.url)
                    if lane.target.is_config_file:
                        for endpoint in lane.endpoints():
                            found |= url_secrets(endpoint.url)
                self._secrets = frozenset(found)
            return self._secrets

    def _scrub(self, text: str) -> str:
        return redact_text(text, self.secrets())

    def _guard_apprise_logs(self) -> None:
        """Scrub Apprise's log records of our secrets from the first delivery to close()."""
        secrets = self.secrets()
        with self._lock:
            if self._log_filter is None:
                self._log_filter = ScrubFilter(secrets)
                logging.getLogger("apprise").addFilter(self._log_filter)

    def expect_pictures(self) -> None:
        """A message with a picture may follow soon (a rollback rule is pending or firing):
        matplotlib is imported now on the drawing thread, not when the message waits for it."""
        self._pictures.warm()

    def _picture(self, key: str, message: Message) -> bytes | None:
        if not isinstance(message.picture, BreachPicture):
            return None
        return self._pictures.png(key, message.picture)

    # -- the caller's side --

    def send(self, message: Message) -> None:
        """Queue `message` for every target that accepts it; returns at once, never raises."""
        try:
            self._send(message)
        except Exception as e:  # noqa: BLE001 - notifying must never break the decision
            log.error("notify send error kind=%s error=%s", message.kind, type(e).__name__)

    def _send(self, message: Message) -> None:
        if self._closed:
            log.warning("notify closed, message dropped kind=%s", message.kind)
            return
        message = replace(message, title=self.redact(message.title), body=self.redact(message.body))
        msg_id = uuid.uuid4().hex[:12]
        for lane in self._lanes:
            if lane.target.accepts(message):
                self._enqueue(lane, Job(msg_id, message))

    def _enqueue(self, lane: Lane, job: Job) -> bool:
        with self._lock:
            self._jobs += 1
        try:
            lane.queue.put_nowait(job)
        except queue.Full:
            self._job_done()
            log.warning("notify queue full, message dropped kind=%s target=%s",
                        job.message.kind, lane.label)
            self._journal("notify_dropped", id=job.id, message_kind=job.message.kind,
                          target=lane.label, reason="queue full")
            return False
        lane.start()
        return True

    def _job_done(self) -> None:
        with self._lock:
            self._jobs -= 1
            if self._jobs <= 0:
                self._idle.notify_all()

    def flush(self, timeout: float) -> bool:
        """Wait until every queued delivery is done; False if `timeout` passed first."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._jobs > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def close(self, timeout: float = 5.0) -> bool:
        """Finish what is queued (up to `timeout`), stop the workers. True if all finished."""
        deadline = time.monotonic() + timeout
        flushed = self.flush(timeout)
        self._closed = True
        self._stopping.set()
        for lane in self._lanes:
            if lane.thread is not None:
                try:
                    lane.queue.put_nowait(None)
                except queue.Full:
                    pass  # a daemon thread; it ends with the process
        for lane in self._lanes:
            if lane.thread is not None:
                lane.thread.join(max(0.0, deadline - time.monotonic()))
        self._pictures.close()
        if self._log_filter is not None:
            logging.getLogger("apprise").removeFilter(self._log_filter)
        return flushed

    def deliver_now(self, message: Message, *, ignore_filters: bool = False) -> list[DeliveryResult]:
        """Deliver synchronously to every accepting target (every target with
        `ignore_filters`), with retries; one result per endpoint. Journals nothing and keeps
        nothing undelivered: for `notify-test`."""
        results: list[DeliveryResult] = []
        self._guard_apprise_logs()
        title, body = self._scrub(message.title), self._scrub(message.body)
        for lane in self._lanes:
            if not ignore_filters and not lane.target.accepts(message):
                continue
            endpoints = lane.endpoints()
            if not endpoints:
                results.append(DeliveryResult(lane.label, False, lane.endpoint_error, 0, 0.0, True))
            for endpoint in endpoints:
                result = lane.deliver(endpoint, message, title, body, 1 + self.retries)
                self._log_result(message, result)
                results.append(result)
        return results

    # -- undelivered (notify_undelivered.Redeliveries) --

    def undelivered(self) -> list[Undelivered]:
        return self._redeliveries.snapshot()

    def undelivered_by_target(self) -> dict[str, int]:
        """How many messages wait for redelivery per target, every target included (0 when
        none): the watcher's `rollback_watcher_undelivered_messages`. Targets as shown (redacted)."""
        return self._redeliveries.by_label(lane.label for lane in self._lanes)

    def retry_undelivered(self) -> int:
        """Queue one more attempt for each undelivered message that is due (not sooner than
        redelivery_backoff * 2**(n-1) after its last failure); returns how many were queued.
        Cheap and non-blocking: call it once per tick."""
        queued = 0
        for pending in self._redeliveries.due():
            if self._enqueue(pending.lane, Job(pending.id, pending.message, pending.endpoint, pending)):
                queued += 1
            else:
                self._redeliveries.unqueued(pending)
        return queued

    def restore_undelivered(self, events: Iterable[dict[str, Any]]) -> int:
        """After a restart: take back the undelivered messages the journal holds (see
        undelivered_from_journal) whose target is still configured; returns how many."""
        return self._redeliveries.restore(events, self._find_endpoint)

    def _find_endpoint(self, label: str) -> tuple[Lane, int] | None:
        for lane in self._lanes:
            for index, endpoint in enumerate(lane.endpoints()):
                if endpoint.label == label:
                    return lane, index
        return None

    # -- the worker's side --

    def _process(self, lane: Lane, job: Job) -> None:
        self._guard_apprise_logs()
        endpoints = lane.endpoints()
        message = job.message
        if not endpoints:
            reason = lane.endpoint_error
            log.warning("notify failed kind=%s target=%s reason=%s", message.kind, lane.label, reason)
            self._journal("notify_failed", **_failure_fields(job.id, message, lane.label, reason, 0, True))
            return
        title, body = self._scrub(message.title), self._scrub(message.body)
        if isinstance(job.pending, Pending):
            pending = job.pending
            body = (f"(Late: first attempt failed at {format_time(pending.failed_at)}; "
                    f"redelivery {pending.redeliveries + 1}.)\n" + body)
            result = lane.deliver(endpoints[pending.endpoint], message, title, body, 1, key=job.id)
            self._redeliveries.after(pending, result)
            return
        indexes = range(len(endpoints)) if job.endpoint is None else [job.endpoint]
        for index in indexes:
            result = lane.deliver(endpoints[index], message, title, body, 1 + self.retries, key=job.id)
            self._log_result(message, result)
            if result.delivered:
                self._journal("notify_sent", id=job.id, message_kind=message.kind,
                              severity=message.severity.value, target=result.target,
                              attempts=result.attempts, elapsed_s=round(result.elapsed, 3),
                              picture=result.picture)
                continue
            self._journal("notify_failed", **_failure_fields(
                job.id, message, result.target, result.reason, result.attempts, result.permanent))
            if not result.permanent:
                self._redeliveries.keep(job.id, message, lane, index, result)

    def _log_result(self, message: Message, result: DeliveryResult) -> None:
        if result.delivered:
            log.info("notify sent kind=%s severity=%s target=%s attempts=%d elapsed=%.2fs",
                     message.kind, message.severity.value, result.target, result.attempts,
                     result.elapsed)
        else:
            log.warning("notify failed kind=%s severity=%s target=%s attempts=%d reason=%s",
                        message.kind, message.severity.value, result.target, result.attempts,
                        result.reason)

    def _journal(self, kind: str, **fields: Any) -> None:
        """Append to the audit log; a failing journal is logged, never raised."""
        fields = {k: (self._scrub(v) if isinstance(v, str) and self._secrets is not None else v)
                  for k, v in fields.items()}
        with self._lock:
            try:
                self._journal_fn(kind, **fields)
            except (WatcherError, OSError, ValueError, TypeError) as e:
                log.error("journal write failed event=%s error=%s", kind, type(e).__name__)


def _failure_fields(msg_id: str, message: Message, target: str, reason: str, attempts: int,
                    permanent: bool) -> dict[str, Any]:
    return dict(id=msg_id, message_kind=message.kind, severity=message.severity.value,
                target=target, reason=reason, attempts=attempts, permanent=permanent,
                title=message.title, body=message.body, release=message.release,
                rules=list(message.rules), route_tags=list(message.route_tags))
