"""Wiring a Watcher from its config (the CLI's `service`, `rollback`, `resolve`, the demo):
backend, signals reader, notifier, state store and, with a `fleet:` section, its fleet
coordinator. tick.py keeps what one tick does; what it is built from is chosen here."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from watcher.backends import build_backend
from watcher.base.errors import StateError
from watcher.base.sdnotify import sd_notify
from watcher.config.schema import WatcherConfig
from watcher.config.scrub import redactor_for
from watcher.notify.notifier import Notifier
from watcher.service.telemetry import Telemetry
from watcher.service.tick import Watcher
from watcher.signals.reader import build_reader
from watcher.store.state import StateStore

log = logging.getLogger(__name__)


def build_watcher(config: WatcherConfig, notify: bool = True, telemetry: bool = False,
                  clock: Callable[[], float] = time.time, fleet: bool = False) -> Watcher:
    """Wire a Watcher from its config: backend, signals, notifier, state store, and (with
    `fleet` and a `fleet:` section) its fleet coordinator, not started yet."""
    redact = redactor_for(config)
    store = StateStore(config.state_dir, clock=clock, redact=redact)
    backend = build_backend(config.backend.type, config.backend.options) if config.backend else None
    notifier = None
    if notify and config.notify:
        notifier = Notifier(list(config.notify), journal=quiet_journal(store), clock=clock, redact=redact)
    tele = Telemetry(config.interval, clock=clock) if telemetry else None
    w = Watcher(config, backend, build_reader(config), notifier, store, clock=clock, sleep=_sleep_alive,
                telemetry=tele)
    if fleet and config.fleet is not None:
        # The fleet link imports etcd3gw and httpx: ~110 ms CPU and 10 MB that a watcher
        # without `fleet:` never pays.
        from watcher.fleet.link import FleetLink
        from watcher.service.coordinator import FleetCoordinator

        w.fleet = FleetCoordinator(FleetLink(config.fleet, config.state_dir, clock=clock), tele,
                                   to_wall=w.timebase.to_wall)
    return w


def _sleep_alive(seconds: float) -> None:
    """Sleep between verify attempts, telling systemd's watchdog the service is alive: a
    rollback's verification (attempts x every, 60 s by default) runs inside one tick."""
    sd_notify("WATCHDOG=1")
    time.sleep(seconds)


def quiet_journal(store: StateStore) -> Callable[..., None]:
    """The notifier journals failed deliveries from its own thread: a journal that cannot be
    written there is logged, never raised into the delivery thread."""

    def journal(kind: str, **fields: Any) -> None:
        try:
            store.journal(kind, **fields)
        except StateError as exc:
            log.error("journal write failed kind=%s reason=%s", kind, exc)

    return journal
