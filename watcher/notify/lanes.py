"""One notify target's lane: its queue, its worker thread, its endpoints, and one delivery
(`1 + retries` attempts with exponential backoff: `backoff`, 2x, at most MAX_BACKOFF). Each
target has its own lane, so a hanging endpoint delays only itself. The Notifier
(watcher/notify/notifier.py) queues jobs here and decides what a result means.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from watcher.base.errors import NotifyError
from watcher.base.redact import config_path, redact_url
from watcher.core.envelope import Message, NotifyTarget
from watcher.notify.attach import attachment
from watcher.notify.targets import Endpoint, attempt, endpoints_of, takes_attachments

log = logging.getLogger(__name__)

MAX_BACKOFF = 30.0
QUEUE_MAX = 1000  # per target; beyond it a message is dropped and journaled


@dataclass(frozen=True)
class DeliveryResult:
    """The outcome of delivering one message to one endpoint; `target` is redacted."""

    target: str
    delivered: bool
    reason: str = ""
    attempts: int = 0
    elapsed: float = 0.0
    permanent: bool = False
    picture: bool = False  # the message went with its picture attached


@dataclass
class Job:
    id: str
    message: Message
    endpoint: int | None = None  # None: every endpoint of the target
    # Set for a redelivery: the Notifier's record of it (undelivered.Pending). A lane only
    # carries it back with the result, so it is not typed here: undelivered.py builds on lanes.
    pending: object | None = None


@dataclass(frozen=True)
class LaneSettings:
    """What every lane of one Notifier shares."""

    timeout: float
    backoff: float
    stopping: threading.Event  # set by Notifier.close(): a backoff wait ends at once
    scrub: Callable[[str], str]  # removes the targets' secrets from a reason
    # The PNG of a message's picture by its id, or None (attach.PictureMaker.png: waits at
    # most its bounded time); never raises.
    picture: Callable[[str, Message], bytes | None] = lambda key, message: None


class Lane:
    """One target: its queue, its worker thread, its endpoints and their Apprise objects."""

    def __init__(self, index: int, target: NotifyTarget, settings: LaneSettings,
                 work: Callable[[Lane, Job], None], done: Callable[[], None]):
        self.index = index
        self.target = target
        self.settings = settings
        self._work = work  # runs one job on the worker thread
        self._done = done  # after each job, whatever happened
        self.queue: queue.Queue[Job | None] = queue.Queue(maxsize=QUEUE_MAX)
        self.thread: threading.Thread | None = None
        self.lock = threading.Lock()  # one delivery at a time per target
        self._endpoints: list[Endpoint] | None = None
        self.endpoint_error = ""

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
            self.thread = threading.Thread(target=self._run, name=f"notify-{self.index}", daemon=True)
            self.thread.start()

    def _run(self) -> None:
        while True:
            job = self.queue.get()
            if job is None:
                return
            try:
                self._work(self, job)
            except Exception as e:  # noqa: BLE001 - the worker must outlive any one failure
                log.error("notify worker error target=%s error=%s", self.label,
                          self.settings.scrub(f"{type(e).__name__}: {e}"))
            finally:
                self._done()

    def endpoints(self) -> list[Endpoint]:
        """The target's URLs: itself, or each URL of its Apprise config file (read once)."""
        if self._endpoints is None:
            self._endpoints, self.endpoint_error = endpoints_of(self.target)
        return self._endpoints

    def deliver(self, endpoint: Endpoint, message: Message, title: str, body: str,
                attempts: int, key: str = "") -> DeliveryResult:
        """Up to `attempts` attempts with backoff; never raises. A message with a picture (and
        its id as `key`) goes with the PNG attached where the endpoint takes files; when an
        attempt with it fails, the same attempt goes again at once without it, and so do the
        attempts after (a picture never costs a message, notify/targets.py)."""
        settings = self.settings
        started = time.monotonic()
        png = None
        if message.picture is not None and key and takes_attachments(endpoint, message.severity, settings.timeout):
            png = settings.picture(key, message)
        with self.lock, attachment(png, getattr(message.picture, "rule", "breach")) as attach:
            return self._attempts(endpoint, message, title, body, attempts, attach, started)

    def _attempts(self, endpoint: Endpoint, message: Message, title: str, body: str, attempts: int,
                  attach: list[str] | None, started: float) -> DeliveryResult:
        settings = self.settings
        reason, permanent, made = "", False, 0
        for n in range(1, attempts + 1):
            made = n
            try:
                if attach:
                    try:
                        attempt(endpoint, message, title, body, settings.timeout, settings.scrub, attach)
                        return DeliveryResult(endpoint.label, True, "", n, time.monotonic() - started, picture=True)
                    except NotifyError as e:
                        log.warning("notify picture refused, sending without it kind=%s target=%s reason=%s",
                                    message.kind, endpoint.label, e.reason)
                        attach = None
                attempt(endpoint, message, title, body, settings.timeout, settings.scrub)
                return DeliveryResult(endpoint.label, True, "", n, time.monotonic() - started)
            except NotifyError as e:
                reason, permanent = e.reason, e.permanent
            if permanent or n == attempts:
                break
            delay = min(MAX_BACKOFF, settings.backoff * 2 ** (n - 1))
            if settings.stopping.wait(delay):
                reason += " (stopped while retrying)"
                break
        return DeliveryResult(endpoint.label, False, reason, made, time.monotonic() - started, permanent)
