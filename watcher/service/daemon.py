"""The service process around the ticks: the loop that runs one tick every `interval`,
SIGTERM/SIGINT (finish the tick in hand, then stop), SIGHUP (reload), systemd's sd_notify
(READY, WATCHDOG, STATUS, RELOADING, STOPPING) and the telemetry endpoint. One tick itself is
service.Watcher.tick().
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time

from watcher.backends import build_backend, identity_of
from watcher.base.errors import ConfigError, StateError
from watcher.base.sdnotify import sd_notify
from watcher.config.hostcheck import EXIT_CANNOT_START, listen_error
from watcher.config.load import load_config
from watcher.config.schema import WatcherConfig
from watcher.config.scrub import Redactor, config_secrets
from watcher.core import envelope, messages
from watcher.core.rules import Phase
from watcher.notify.notifier import Notifier, check_targets
from watcher.service.build import quiet_journal
from watcher.service.tick import Watcher
from watcher.signals.reader import build_reader
from watcher.store.locks import DeployLock, acquire_host

log = logging.getLogger(__name__)


class Daemon:
    def __init__(self, watcher: Watcher):
        self.watcher = watcher
        self._stop = threading.Event()
        self._reload = threading.Event()

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT finish the tick in hand, SIGHUP reloads. Installed before `start()`,
        so that a stop during a reconcile's verification does not kill it half-way."""
        signal.signal(signal.SIGTERM, lambda *_: self._stop.set())
        signal.signal(signal.SIGINT, lambda *_: self._stop.set())
        signal.signal(signal.SIGHUP, lambda *_: self._reload.set())

    def run(self) -> int:
        w = self.watcher
        sd_notify(f"READY=1\nSTATUS={status_line(w)}\nMAINPID={os.getpid()}")
        log.info("watching service=%s rules=%d interval=%ss mode=%s", w.config.service, len(w.config.rules),
                 w.config.interval, w.config.mode)
        next_at = w.monotonic()
        overran = 0  # ticks in a row longer than the interval: said when it starts and when it ends
        while not self._stop.is_set():
            if self._reload.is_set():
                self._reload.clear()
                reload(w)
            report = w.tick()
            sd_notify(f"WATCHDOG=1\nSTATUS={status_line(w)}")
            next_at += w.config.interval
            if w.monotonic() - next_at > 0:
                if not overran:
                    log.warning("tick overran the interval seconds=%.2f interval=%ss (said again when ticks "
                                "keep time)", report.seconds, w.config.interval)
                overran += 1
                next_at = w.monotonic()
                continue
            if overran:
                log.info("ticks keep the interval again after overrunning it %d time(s) in a row", overran)
                overran = 0
            self._stop.wait(next_at - w.monotonic())
        sd_notify("STOPPING=1")
        log.info("stopping: the tick in hand is done")
        return 0

    def stop(self) -> None:
        self._stop.set()


def serve(w: Watcher) -> int:
    """`rollback-watcher run`: the instance locks (state dir, watched host), telemetry, signals,
    start, the loop."""
    cfg = w.config
    w.store.acquire()
    try:
        host_lock = acquire_host(identity_of(cfg.backend))
    except StateError:
        w.store.release_lock()
        raise
    daemon = Daemon(w)
    try:
        if w.telemetry is not None and cfg.telemetry.listen is not None:  # built only with a listen address
            try:
                bound = w.telemetry.serve(cfg.telemetry.listen)
            except OSError as exc:
                # One line and an exit code the unit's RestartPreventExitStatus= names: a restart
                # loop would only hit the same taken port every RestartSec.
                line = listen_error(cfg.telemetry.listen, exc)
                logging.getLogger("watcher.service.telemetry").error("cannot start: %s", line)
                print(f"cannot start: {line}", file=sys.stderr)
                return EXIT_CANNOT_START
            logging.getLogger("watcher.service.telemetry").info("metrics and /healthz listen=%s", bound)
        if cfg.notify:
            for problem in check_targets(list(cfg.notify)):
                logging.getLogger("watcher.notify.notifier").error("notify target unusable: %s", problem)
        daemon.install_signal_handlers()
        if w.fleet is not None:
            w.fleet.start()  # its own threads: the first tick does not wait for etcd
        w.start()
        return daemon.run()
    finally:
        if w.fleet is not None:
            w.fleet.stop()
        if w.notifier is not None:
            w.notifier.close(timeout=5)
        if w.telemetry is not None:
            w.telemetry.close()
        if host_lock is not None:
            host_lock.release()
        w.store.release_lock()


def needs_restart(old: WatcherConfig, new: WatcherConfig) -> list[str]:
    """The changes a running process cannot apply, each saying why; a reload with any of them is
    refused as a whole (half a reload is worse than none)."""
    found = []
    if new.state_dir != old.state_dir:
        found.append(f"state_dir: {old.state_dir} -> {new.state_dir} needs a restart (the state, the journal and "
                     "the instance lock live there)")
    old_id, new_id = identity_of(old.backend), identity_of(new.backend)
    if new_id is not None and new_id != old_id:
        found.append(f"backend: it now names {new_id} (was {old_id or 'none'}); watching another host needs a "
                     "restart (the instance lock is per watched host)")
    if new.telemetry != old.telemetry:
        found.append("telemetry: the metrics endpoint is bound at start; a change needs a restart")
    if new.fleet != old.fleet:
        found.append("fleet: the etcd lease and watch are made at start; a change needs a restart")
    return found


def reload(w: Watcher) -> bool:
    """Reload config and rules: every change is applied (rules, Prometheus, backend options or
    its removal, notify targets, names, policy), or the reload is refused as a whole and the
    old config keeps running: an invalid config, or a change only a restart can make
    (needs_restart). Rule states are kept by rule name (as Prometheus' rule manager does)."""
    # Newer systemd wants the reload's monotonic time beside RELOADING=1.
    sd_notify(f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}")
    try:
        new = load_config(w.config.path)
        restart = needs_restart(w.config, new)
    except ConfigError as exc:
        problems, restart = [str(p) for p in exc.problems], []
    else:
        problems = restart
    if problems:
        w.journal("reload_refused", problems=problems, needs_restart=bool(restart))
        log.warning("reload refused, keeping the running config problems=%d first=%s", len(problems), problems[0])
        w.notify(messages.reload_refused(w.ctx, problems))
        w.tell()
        sd_notify("READY=1")
        return False
    old_reader = w.reader
    w.reader = build_reader(new)
    w.reader.keep_host_counters(w.state.host_counters)  # growth since the deploy survives the reload
    old_reader.close()
    if new.backend is None and w.backend is not None:
        # Never keep acting with a backend the new config removed.
        w.backend = None
        w.journal("backend_removed", reason="the reloaded config has no backend: the watcher no longer acts")
    elif new.backend is not None and new.backend != w.config.backend:
        w.backend = build_backend(new.backend.type, new.backend.options)
    names = {r.name for r in new.rules}
    w.state.rules = {k: v for k, v in w.state.rules.items() if k in names}
    if new.fleet != w.config.fleet:
        # The fleet link holds a lease and a watch under the old name and endpoints.
        log.warning("the fleet section changed: it takes effect at the next restart")
        w.journal("fleet_reload_ignored", reason="the fleet section changes at the next restart")
    # The old secrets too: texts written before the reload may still carry them.
    redact = Redactor.of(config_secrets(w.config) | config_secrets(new))
    w.store.redact = redact
    if w.notifier is not None and hasattr(w.notifier, "redact"):
        w.notifier.redact = redact
    if new.notify != w.config.notify:
        _replace_notifier(w, new, redact)
    w.config = new
    w._ctx = envelope.MessageContext(new.service, new.host)
    w.deploy_lock = DeployLock(new.deploy_lock)
    w.journal("config_reloaded", rules=len(new.rules))
    log.info("config reloaded rules=%d", len(new.rules))
    sd_notify("READY=1")
    return True


def _replace_notifier(w: Watcher, new: WatcherConfig, redact: Redactor) -> None:
    """New notify targets: a new Notifier; the old one delivers what it has queued, then stops."""
    old = w.notifier
    w.notifier = None
    if new.notify:
        w.notifier = Notifier(list(new.notify), journal=quiet_journal(w.store), clock=w.clock, redact=redact)
    if old is not None:
        old.close(timeout=5)


def status_line(w: Watcher) -> str:
    """systemd's STATUS=: the release, its window, what fires."""
    s = w.state
    firing = [n for n, r in s.rules.items() if r.phase is Phase.FIRING]
    pending = [n for n, r in s.rules.items() if r.phase is Phase.PENDING]
    parts = [f"release {s.current or '?'}"]
    if s.window_ends:
        parts.append(f"in window until {time.strftime('%H:%M:%S', time.gmtime(s.window_ends))}Z")
    if s.halted:
        parts.append("HALTED")
    parts.append(f"firing {','.join(firing)}" if firing else "no rule firing")
    if pending:
        parts.append(f"pending {','.join(pending)}")
    return "; ".join(parts)
