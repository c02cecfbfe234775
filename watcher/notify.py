"""Delivering messages through Apprise, off the decision path (docs/design.md section 7).

Apprise is imported lazily, on the first delivery or redaction that needs it: its first use loads
211 plugins (~270 ms), and `rollback-watcher --help` must stay fast. Importing this module
never imports apprise.

Targets
    A `NotifyTarget.url` containing "://" is an Apprise URL (`ntfy://host/topic`, `slack://...`),
    except `file://PATH`; anything else (and `file://PATH`) is the path of an Apprise config
    file (TEXT or YAML, as Apprise detects), read on first use; each URL in it is delivered to
    on its own, with the target's `min_severity` and `tags`.

Filtering and routing
    A target receives a message when `message.severity.rank >= target.min_severity.rank`
    (info < success < warning < failure < critical, see messages.Severity) and
      - the target has no tags (a catch-all), or
      - the message has no `route_tags` (a general event), or
      - the two share a tag (a rule's `notify: [tag]` reaching its team).
    So a routed message goes to the matching tagged targets and to every catch-all target; it is
    never lost because no tag matched.

Severity on the wire
    severity  Apprise type  ntfy priority   ntfy tag
    info      info          2 low           information_source
    success   success       3 default       white_check_mark
    warning   warning       4 high          warning
    failure   failure       4 high          x
    critical  failure       5 max           rotating_light
    (`max`, never ntfy's alias `urgent`: Apprise 2.2 silently turns `urgent` into `default`.)
    For ntfy URLs the watcher sets `priority=` unless the URL has its own, which wins (the
    user's choice; ntfy's aliases `urgent` and 1-5 are written as Apprise's names, `urgent` as
    `max`), and appends its tag to the URL's own `tags=`.

Delivery
    `send()` returns at once: each target has its own queue, worker thread and Apprise objects,
    so a hanging endpoint delays only itself. One delivery is `1 + retries` attempts with
    exponential backoff (`backoff`, 2x, at most MAX_BACKOFF); each attempt is bounded by
    `timeout` (Apprise `cto`/`rto` socket timeouts and the notify() call deadline).
    `request_rate_per_sec` is 0 on every endpoint: Apprise would otherwise sleep 5.5 s between
    two ntfy messages of one object, and the watcher's own backoff handles refusals. A refusal
    with a 4xx status (but 408/429) or a URL Apprise does not understand is permanent: not
    retried.

    What finally failed is kept as undelivered; `retry_undelivered()` (once per service tick)
    re-sends each one attempt at a time, no sooner than `redelivery_backoff * 2**(n-1)`
    seconds after its last failure, at most `redeliveries` times, then drops it. A redelivered
    message says it is late in its first line.

    No de-duplication here: the service alone decides what is news (it sends on a state change:
    a rule's transition, an incident's new verdict, a rollback's outcome), and every message it
    sends is delivered. A second layer here dropped a second `rollback_failed`, or a
    `cannot_act` with a new reason, as repeats of the first.

Journal events (journal(kind, **fields); fields never hold a secret)
    notify_sent       id, message_kind, severity, target, attempts, elapsed_s
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
    Redaction lives in watcher/redact.py; a Notifier scrubs Apprise's own log records of its
    secrets while it delivers.

Length: over 400 lines because delivery is one responsibility with several parts that share the
Notifier's queue and thread: Apprise URLs and config-file targets, retries and the journal of
undelivered messages across restarts, redaction, and `notify-test`.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Callable, Iterable, TextIO
from urllib.parse import quote, unquote

from watcher.errors import NotifyError, WatcherError
from watcher.format import format_time
from watcher.messages import Message, MessageContext, NotifyTarget, Severity, payload, test_message
from watcher.redact import (
    ScrubFilter,
    config_path,
    expand_secrets,
    privacy_form,
    query_key,
    redact_text,
    redact_url,
    split_url,
    url_secrets,
)

__all__ = [
    "DeliveryResult",
    "Message",
    "MessageContext",
    "Notifier",
    "NotifyTarget",
    "Severity",
    "Undelivered",
    "check_targets",
    "notify_test_command",
    "redact_text",
    "redact_url",
    "undelivered_from_journal",
    "url_secrets",
]

log = logging.getLogger(__name__)

NOTIFY_TYPE = {  # Apprise NotifyType values
    Severity.INFO: "info",
    Severity.SUCCESS: "success",
    Severity.WARNING: "warning",
    Severity.FAILURE: "failure",
    Severity.CRITICAL: "failure",
}
NTFY_PRIORITY = {
    Severity.INFO: "low",
    Severity.SUCCESS: "default",
    Severity.WARNING: "high",
    Severity.FAILURE: "high",
    Severity.CRITICAL: "max",
}
NTFY_PRIORITY_NUMBER = {"min": 1, "low": 2, "default": 3, "high": 4, "max": 5}
# A priority written in the URL, as ntfy accepts it, to the name Apprise passes on unchanged.
NTFY_PRIORITY_ALIASES = {"urgent": "max", **{str(n): name for name, n in NTFY_PRIORITY_NUMBER.items()}}
NTFY_TAG = {
    Severity.INFO: "information_source",
    Severity.SUCCESS: "white_check_mark",
    Severity.WARNING: "warning",
    Severity.FAILURE: "x",
    Severity.CRITICAL: "rotating_light",
}
NTFY_SCHEMES = ("ntfy", "ntfys")

MAX_BACKOFF = 30.0
QUEUE_MAX = 1000  # per target; beyond it a message is dropped and journaled


def _apprise():
    """The apprise module, imported on first use (sys.modules keeps it: imported once)."""
    import apprise

    return apprise


# --- targets, results ------------------------------------------------------------------------


@dataclass(frozen=True)
class DeliveryResult:
    """The outcome of delivering one message to one endpoint; `target` is redacted."""

    target: str
    delivered: bool
    reason: str = ""
    attempts: int = 0
    elapsed: float = 0.0
    permanent: bool = False


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


# --- building URLs ---------------------------------------------------------------------------


def _ntfy_url(url: str, severity: Severity, rewritten: bool = False) -> str:
    """The ntfy URL with its tag appended, and the severity's priority unless the URL sets one
    (in a URL Apprise `rewritten` from a config file, `priority=default` is Apprise's, not set)."""
    parts = split_url(url)
    if parts is None or parts.scheme.lower() not in NTFY_SCHEMES:
        return url
    tags: list[str] = []
    kept: list[tuple[str, str | None]] = []
    priority = NTFY_PRIORITY[severity]
    for key, value in parts.query:
        name = query_key(key).lower()
        if name in ("tags", "xtags"):
            tags += [t for t in unquote(value or "").split(",") if t.strip()]
        elif name == "priority":
            if value and value.strip():
                given = unquote(value).strip().lower()
                given = NTFY_PRIORITY_ALIASES.get(given, given)
                if not (rewritten and given == "default"):
                    priority = given
        else:
            kept.append((key, value))
    tags.append(NTFY_TAG[severity])
    kept.append(("priority", priority))
    kept.append(("tags", quote(",".join(dict.fromkeys(t.strip() for t in tags)), safe="")))
    parts.query = kept
    return parts.join()


def _structure(endpoint: "_Endpoint", message: Message) -> None:
    """A json:// or jsons:// endpoint gets the event as data beside Apprise's title/message/type
    (messages.payload, schema rollback-watcher/1), through the JSON plugin's payload extras, the
    mechanism behind its `:key=value` URL parameters; the URL's own extras still win. Each
    lane's worker is the only user of its plugins, so setting them per message is safe."""
    plugin, own = endpoint.plugins.get(message.severity, (None, {}))
    if plugin is None or getattr(plugin, "protocol", None) != "json":  # json:// and jsons://
        return
    plugin.payload_extras = {**payload(message), **own}


def _config_urls(path: str) -> tuple[list[str], str]:
    """The notification URLs of an Apprise config file, or ([], why not)."""
    if not os.access(path, os.R_OK):
        return [], f"cannot read Apprise config {path}"
    apprise = _apprise()
    config = apprise.AppriseConfig()
    if not config.add(path):
        return [], f"cannot read Apprise config {path}"
    urls = [service.url(privacy=False) for service in config.services()]
    if not urls:
        return [], f"Apprise config {path} has no usable notification URL"
    return urls, ""


_HTTP_STATUS = re.compile(r"error=(\d{3})\d*\b")  # ntfy answers 40001: HTTP 400 + detail


def _permanent(reason: str) -> bool:
    match = _HTTP_STATUS.search(reason)
    return bool(match) and match.group(1).startswith("4") and match.group(1) not in ("408", "429")


# --- the notifier ----------------------------------------------------------------------------


@dataclass
class _Endpoint:
    url: str  # raw: never logged
    label: str  # redacted
    # From an Apprise config file, a URL is Apprise's rewrite of it, which spells out every
    # default (`priority=default`): only a priority other than the default was the user's.
    rewritten: bool = False
    plugins: dict = field(default_factory=dict)  # Severity -> (Apprise plugin, the URL's own `:key` extras)
    objects: dict = field(default_factory=dict)  # Severity -> apprise.Apprise


@dataclass
class _Pending:
    """Mutable record behind an Undelivered snapshot."""

    id: str
    message: Message
    lane: "_Lane"
    endpoint: int
    target: str
    reason: str
    attempts: int
    failed_at: float
    last_failed_at: float
    redeliveries: int = 0
    in_flight: bool = False

    def snapshot(self) -> Undelivered:
        return Undelivered(self.id, self.message, self.target, self.reason, self.attempts,
                           self.failed_at, self.redeliveries)


@dataclass
class _Job:
    id: str
    message: Message
    endpoint: int | None = None  # None: every endpoint of the target
    pending: _Pending | None = None  # set for a redelivery


class _Lane:
    """One target: its queue, its worker thread, its endpoints and their Apprise objects."""

    def __init__(self, notifier: "Notifier", index: int, target: NotifyTarget):
        self.notifier = notifier
        self.index = index
        self.target = target
        self.queue: queue.Queue[_Job | None] = queue.Queue(maxsize=QUEUE_MAX)
        self.thread: threading.Thread | None = None
        self.lock = threading.Lock()  # one delivery at a time per target
        self._endpoints: list[_Endpoint] | None = None
        self._endpoint_error = ""

    @property
    def label(self) -> str:
        """The target as it may be shown, without importing apprise (send() path)."""
        if self.target.is_config_file:
            return config_path(self.target.url)
        if self._endpoints:
            return self._endpoints[0].label
        return redact_url(self.target.url, use_apprise=False)

    def start(self) -> None:
        if self.thread is None:
            self.thread = threading.Thread(
                target=self._run, name=f"notify-{self.index}", daemon=True
            )
            self.thread.start()

    def _run(self) -> None:
        while True:
            job = self.queue.get()
            if job is None:
                return
            try:
                self.notifier._process(self, job)
            except Exception as e:  # noqa: BLE001 - the worker must outlive any one failure
                log.error("notify worker error target=%s error=%s", self.label,
                          self.notifier._scrub(f"{type(e).__name__}: {e}"))
            finally:
                self.notifier._job_done()

    def endpoints(self) -> list[_Endpoint]:
        """The target's URLs: itself, or each URL of its Apprise config file (read once)."""
        if self._endpoints is not None:
            return self._endpoints
        if not self.target.is_config_file:
            self._endpoints = [_Endpoint(self.target.url, redact_url(self.target.url))]
            return self._endpoints
        path = config_path(self.target.url)
        urls, self._endpoint_error = _config_urls(path)
        self._endpoints = [_Endpoint(u, f"{path}: {redact_url(u)}", rewritten=True) for u in urls]
        return self._endpoints

    def _apprise_for(self, endpoint: _Endpoint, severity: Severity):
        """The Apprise object (one endpoint, one severity), built once; NotifyError if
        Apprise does not understand the URL."""
        obj = endpoint.objects.get(severity)
        if obj is not None:
            return obj
        apprise = _apprise()
        plugin = apprise.Apprise.instantiate(_ntfy_url(endpoint.url, severity, endpoint.rewritten))
        if plugin is None:
            raise NotifyError(f"Apprise does not understand {endpoint.label}", permanent=True)
        timeout = self.notifier.timeout
        plugin.request_rate_per_sec = 0  # else Apprise sleeps 5.5 s between two ntfy sends
        plugin.socket_connect_timeout = timeout  # the `cto=` URL parameter
        plugin.socket_read_timeout = timeout  # the `rto=` URL parameter
        obj = apprise.Apprise()
        obj.add(plugin)
        endpoint.objects[severity] = obj
        endpoint.plugins[severity] = (plugin, dict(getattr(plugin, "payload_extras", None) or {}))
        return obj

    def attempt(self, endpoint: _Endpoint, message: Message, title: str, body: str) -> None:
        """One attempt; NotifyError with a redacted reason if it was not delivered."""
        obj = self._apprise_for(endpoint, message.severity)
        _structure(endpoint, message)
        timeout = self.notifier.timeout
        started = time.monotonic()
        try:
            result = obj.notify(
                body=body, title=title, notify_type=NOTIFY_TYPE[message.severity], timeout=timeout
            )
        except Exception as e:  # noqa: BLE001 - Apprise plugins may raise anything
            raise NotifyError(self.notifier._scrub(f"{type(e).__name__}: {e}")) from None
        if result:
            return
        entries = [e for e in result.logs() if e.level in ("WARNING", "ERROR", "CRITICAL")]
        reason = entries[-1].message if entries else ""
        if time.monotonic() - started >= 0.9 * timeout:
            reason = f"{reason} (no answer within {timeout:g}s)".strip()
        reason = self.notifier._scrub(reason or "Apprise reported a failure")
        raise NotifyError(reason, permanent=_permanent(reason))

    def deliver(self, endpoint: _Endpoint, message: Message, title: str, body: str,
                attempts: int) -> DeliveryResult:
        """Up to `attempts` attempts with backoff; never raises."""
        started = time.monotonic()
        reason, permanent, made = "", False, 0
        with self.lock:
            for n in range(1, attempts + 1):
                made = n
                try:
                    self.attempt(endpoint, message, title, body)
                    return DeliveryResult(endpoint.label, True, "", n, time.monotonic() - started)
                except NotifyError as e:
                    reason, permanent = e.reason, e.permanent
                if permanent or n == attempts:
                    break
                delay = min(MAX_BACKOFF, self.notifier.backoff * 2 ** (n - 1))
                if self.notifier._stopping.wait(delay):
                    reason += " (stopped while retrying)"
                    break
        return DeliveryResult(endpoint.label, False, reason, made, time.monotonic() - started,
                              permanent)


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
    ):
        self.targets = list(targets)
        # The config's own secrets (Prometheus credentials in a "blind" error, ...): scrub.Redactor.
        self.redact = redact
        self.timeout = float(timeout)
        self.retries = max(0, int(retries))
        self.backoff = max(0.0, float(backoff))
        self.redeliveries = max(0, int(redeliveries))
        self.redelivery_backoff = max(0.0, float(redelivery_backoff))
        self._journal_fn = journal
        self._clock = clock
        self._lanes = [_Lane(self, i, t) for i, t in enumerate(self.targets)]
        self._lock = threading.Lock()  # pending count, undelivered, journal calls
        self._idle = threading.Condition(self._lock)
        self._jobs = 0
        self._undelivered: dict[tuple[str, int, int], _Pending] = {}
        self._stopping = threading.Event()
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
                self._enqueue(lane, _Job(msg_id, message))

    def _enqueue(self, lane: _Lane, job: _Job) -> bool:
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
                results.append(DeliveryResult(lane.label, False, lane._endpoint_error, 0, 0.0, True))
            for endpoint in endpoints:
                result = lane.deliver(endpoint, message, title, body, 1 + self.retries)
                self._log_result(message, result)
                results.append(result)
        return results

    # -- undelivered --

    def undelivered(self) -> list[Undelivered]:
        with self._lock:
            return [p.snapshot() for p in self._undelivered.values()]

    def undelivered_by_target(self) -> dict[str, int]:
        """How many messages wait for redelivery per target, every target included (0 when
        none): the watcher's `rollback_watcher_undelivered_messages`. Targets as shown (redacted)."""
        counts = {lane.label: 0 for lane in self._lanes}
        with self._lock:
            for pending in self._undelivered.values():
                label = pending.lane.label
                counts[label] = counts.get(label, 0) + 1
        return counts

    def retry_undelivered(self) -> int:
        """Queue one more attempt for each undelivered message that is due (not sooner than
        redelivery_backoff * 2**(n-1) after its last failure); returns how many were queued.
        Cheap and non-blocking: call it once per tick."""
        now = self._clock()
        due: list[_Pending] = []
        with self._lock:
            for pending in self._undelivered.values():
                wait = self.redelivery_backoff * 2 ** pending.redeliveries
                if not pending.in_flight and now - pending.last_failed_at >= wait:
                    pending.in_flight = True
                    due.append(pending)
        queued = 0
        for pending in due:
            job = _Job(pending.id, pending.message, pending.endpoint, pending)
            if self._enqueue(pending.lane, job):
                queued += 1
            else:
                with self._lock:
                    pending.in_flight = False
        return queued

    def restore_undelivered(self, events: Iterable[dict]) -> int:
        """After a restart: take back the undelivered messages the journal holds (see
        undelivered_from_journal) whose target is still configured; returns how many."""
        restored = 0
        now = self._clock()
        for record in undelivered_from_journal(events):
            if record["state"] != "retrying" or not record.get("title"):
                continue
            found = self._find_endpoint(record["target"])
            if found is None:
                continue
            lane, index = found
            message = Message(
                kind=record["message_kind"], severity=Severity.parse(record["severity"]),
                title=record["title"], body=record.get("body", ""),
                route_tags=tuple(record.get("route_tags") or ()),
                release=record.get("release", ""), rules=tuple(record.get("rules") or ()),
            )
            pending = _Pending(record["id"], message, lane, index, record["target"],
                               record.get("reason", ""), int(record.get("attempts", 0)),
                               float(record.get("time", now)), now)
            with self._lock:
                self._undelivered.setdefault((pending.id, lane.index, index), pending)
            restored += 1
        return restored

    def _find_endpoint(self, label: str) -> tuple[_Lane, int] | None:
        for lane in self._lanes:
            for index, endpoint in enumerate(lane.endpoints()):
                if endpoint.label == label:
                    return lane, index
        return None

    # -- the worker's side --

    def _process(self, lane: _Lane, job: _Job) -> None:
        self._guard_apprise_logs()
        endpoints = lane.endpoints()
        message = job.message
        if not endpoints:
            reason = lane._endpoint_error
            log.warning("notify failed kind=%s target=%s reason=%s", message.kind, lane.label, reason)
            self._journal("notify_failed", **self._failure_fields(job.id, message, lane.label,
                                                                  reason, 0, True))
            return
        title, body = self._scrub(message.title), self._scrub(message.body)
        if job.pending is not None:
            pending = job.pending
            body = (f"(Late: first attempt failed at {format_time(pending.failed_at)}; "
                    f"redelivery {pending.redeliveries + 1}.)\n" + body)
            result = lane.deliver(endpoints[pending.endpoint], message, title, body, 1)
            self._after_redelivery(pending, result)
            return
        indexes = range(len(endpoints)) if job.endpoint is None else [job.endpoint]
        for index in indexes:
            result = lane.deliver(endpoints[index], message, title, body, 1 + self.retries)
            self._log_result(message, result)
            if result.delivered:
                self._journal("notify_sent", id=job.id, message_kind=message.kind,
                              severity=message.severity.value, target=result.target,
                              attempts=result.attempts, elapsed_s=round(result.elapsed, 3))
                continue
            self._journal("notify_failed", **self._failure_fields(
                job.id, message, result.target, result.reason, result.attempts, result.permanent))
            if result.permanent:
                continue
            now = self._clock()
            with self._lock:
                self._undelivered[(job.id, lane.index, index)] = _Pending(
                    job.id, message, lane, index, result.target, result.reason,
                    result.attempts, now, now)

    def _after_redelivery(self, pending: _Pending, result: DeliveryResult) -> None:
        key = (pending.id, pending.lane.index, pending.endpoint)
        message = pending.message
        with self._lock:
            pending.in_flight = False
            pending.redeliveries += 1
            pending.attempts += result.attempts
            pending.last_failed_at = self._clock()
            if result.delivered or result.permanent or pending.redeliveries >= self.redeliveries:
                self._undelivered.pop(key, None)
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

    @staticmethod
    def _failure_fields(msg_id: str, message: Message, target: str, reason: str, attempts: int,
                        permanent: bool) -> dict:
        return dict(id=msg_id, message_kind=message.kind, severity=message.severity.value,
                    target=target, reason=reason, attempts=attempts, permanent=permanent,
                    title=message.title, body=message.body, release=message.release,
                    rules=list(message.rules), route_tags=list(message.route_tags))

    def _log_result(self, message: Message, result: DeliveryResult) -> None:
        if result.delivered:
            log.info("notify sent kind=%s severity=%s target=%s attempts=%d elapsed=%.2fs",
                     message.kind, message.severity.value, result.target, result.attempts,
                     result.elapsed)
        else:
            log.warning("notify failed kind=%s severity=%s target=%s attempts=%d reason=%s",
                        message.kind, message.severity.value, result.target, result.attempts,
                        result.reason)

    def _journal(self, kind: str, **fields) -> None:
        """Append to the audit log; a failing journal is logged, never raised."""
        fields = {k: (self._scrub(v) if isinstance(v, str) and self._secrets is not None else v)
                  for k, v in fields.items()}
        with self._lock:
            try:
                self._journal_fn(kind, **fields)
            except (WatcherError, OSError, ValueError, TypeError) as e:
                log.error("journal write failed event=%s error=%s", kind, type(e).__name__)


# --- reading the journal back (for `status`) -------------------------------------------------


def undelivered_from_journal(events: Iterable[dict]) -> list[dict]:
    """The messages the journal shows as not delivered, oldest first: each notify_failed
    record (with `state`: "retrying", or "dropped" when given up / permanent) unless a later
    notify_retried with delivered=true closed it. Events are journal dicts with "kind"."""
    open_: OrderedDict[tuple[str, str], dict] = OrderedDict()
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


# --- validation and notify-test --------------------------------------------------------------


def check_targets(targets: Iterable[NotifyTarget]) -> list[str]:
    """Problems with the targets, redacted, for `check`: a config file that cannot be read or
    holds no URL, a URL Apprise does not understand. Imports apprise."""
    problems: list[str] = []
    for index, target in enumerate(targets):
        where = f"notify[{index}]"
        if target.is_config_file:
            urls, error = _config_urls(config_path(target.url))
            if error:
                problems.append(f"{where}: {error}")
            for url in urls:
                if privacy_form(url, expand_secrets(url_secrets(url))) is None:
                    problems.append(f"{where}: Apprise does not understand {redact_url(url)}")
            continue
        if privacy_form(target.url, expand_secrets(url_secrets(target.url))) is None:
            problems.append(f"{where}: Apprise does not understand {redact_url(target.url)}")
    return problems


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
        import socket

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
