"""The fleet edge: this host's membership, the verdicts it learns and owes, on etcd.

etcd is never in the path of a local rollback. The tick only hands things over and takes
what has arrived, without waiting:

    report(member)           this host's latest state; written under the membership lease
    publish_verdict(v)       a rollback here: into the outbox, written first-writer-wins
    publish_survived(r)      a window survived here: into the outbox; after known_good_hosts
                             hosts, this host also declares r known-good fleet-wide
    take_verdicts()          verdicts other hosts wrote, as the watch delivered them
    take_notices()           "fleet blind" once when etcd fails, "fleet recovered" once
    view()                   the cached fleet: memberships, verdicts, survived marks

Two threads do the talking, each a loop of rounds (`sync_once`, `watch_once`; the simulation
in tests/sim drives the rounds itself). The sync thread keeps the lease alive (every lease/3),
writes the membership, flushes the outbox, and (re)connects. The watch thread follows one watch
on the fleet's prefix from the revision of the last full read and keeps the cache
(fleet_cache.py); a stream that ends is reopened from the last revision seen, a compacted one
from a full read. Any failure of either is counted as one of etcd (blind after a lease TTL),
never left to end a thread in silence.

The outbox (fleet_outbox.py) holds what this host owes the fleet until etcd has it: a rollback
during an etcd outage, or before a restart, is published when etcd is back.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from watcher.config.schema import FleetConfig
from watcher.core.fleetmodel import (
    GOOD,
    FleetVerdict,
    FleetView,
    Keys,
    Member,
    survived_at,
    survived_value,
    verdict_wins,
)
from watcher.fleet.cache import FleetCache, FleetCounters, drain
from watcher.fleet.etcd import EtcdGateway, FleetUnavailable, WatchEnded, WatchStream
from watcher.fleet.outbox import OUTBOX, Outbox

log = logging.getLogger(__name__)

WATCH_READ_TIMEOUT = 30.0  # a quiet watch is reopened from its revision after this long
# A membership that did not change is written again this often (its `tick_at` says the host's
# ticks still run; the lease alone only says its fleet thread does).
MEMBER_REFRESH = 30.0


@dataclass(frozen=True)
class Notice:
    kind: str  # "blind" | "recovered"
    detail: str
    at: float


class FleetLink:
    def __init__(self, config: FleetConfig, state_dir: Path, clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic):
        self.config = config
        self.keys = Keys(config.root)
        self.clock = clock
        self.monotonic = monotonic
        self.counters = FleetCounters()
        self.gateway = EtcdGateway(config, on_request=self._count_request)
        self.outbox = Outbox(Path(state_dir) / OUTBOX)
        self.cache = FleetCache(self.keys, config.host, clock, self.counters, monotonic)
        self._lock = threading.Lock()  # this host's membership
        self._notices: queue.Queue[Notice] = queue.Queue()
        self._member: Member | None = None
        self._member_dirty = threading.Event()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lease: int | None = None
        self._connected = False
        self._blind = False
        self._failing_since: float | None = None
        self._watch: WatchStream | None = None
        self._watch_problem: str | None = None  # why the last watch stream failed, until one goes well
        self._beat = max(0.5, config.lease / 3)  # the sync thread's round
        self._last_beat = self._last_put = -1e18
        self._threads: list[threading.Thread] = []

    # ------------------------------------------------------------------------------------------
    # What the tick calls: never blocks on etcd

    def report(self, member: Member) -> None:
        with self._lock:
            before = self._member
            self._member = member
        # Everything a peer's symptom check reads goes out at once: a rule that became unseen
        # (or seen again) or a release that became known-good changes its answer as much as a
        # breach does, and waited up to MEMBER_REFRESH for the next rewrite.
        if before is None or (before.release, before.phase, before.firing, before.in_window, before.known_good,
                              before.unseen) != (member.release, member.phase, member.firing, member.in_window,
                                                 member.known_good, member.unseen):
            self._member_dirty.set()
            self._wake.set()  # a change others may act on (symptom check) goes out now

    def publish_verdict(self, verdict: FleetVerdict) -> None:
        self.outbox.add({"kind": "verdict", "release": verdict.release, "value": verdict.encode()})
        self.cache.own(verdict)  # this host knows its own verdict at once, even while blind
        self._wake.set()

    def publish_survived(self, release: str, at: float) -> None:
        self.outbox.add({"kind": "survived", "release": release, "host": self.config.host, "at": round(at, 3)})
        self._wake.set()

    def take_verdicts(self) -> list[tuple[FleetVerdict, float]]:
        return self.cache.take_verdicts()

    def take_notices(self) -> list[Notice]:
        return drain(self._notices)

    def view(self) -> FleetView:
        return self.cache.view()

    @property
    def blind(self) -> bool:
        return self._blind

    def flush_once(self) -> bool:
        """Write the outbox now, from this thread (for the CLI, when no service runs). What
        cannot be written stays in the outbox for the service. Returns whether it emptied."""
        try:
            self._flush_outbox()
        except FleetUnavailable as exc:
            log.warning("fleet: etcd does not answer, the verdict waits in the outbox reason=%s", exc)
            return False
        return True

    # ------------------------------------------------------------------------------------------
    # Start and stop

    def start(self) -> FleetLink:
        t = threading.Thread(target=self._sync_loop, name="fleet-sync", daemon=True)
        w = threading.Thread(target=self._watch_loop, name="fleet-watch", daemon=True)
        self._threads = [t, w]
        t.start()
        w.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Leave the fleet: revoke the lease (the membership goes at once), end both threads."""
        self._stop.set()
        self._wake.set()
        stream = self._watch
        if stream is not None:
            stream.interrupt()
        for t in self._threads:
            t.join(timeout)
        if self._lease is not None and self._connected:
            try:
                self.gateway.revoke(self._lease)
            except FleetUnavailable as exc:
                log.info("fleet lease not revoked (it expires by itself) reason=%s", exc)

    # ------------------------------------------------------------------------------------------
    # The sync thread: lease, membership, outbox, (re)connect

    def _sync_loop(self) -> None:
        while not self._stop.is_set():
            self.sync_once()
            self._wake.wait(self._beat)
            self._wake.clear()

    def sync_once(self) -> None:
        """One round of the sync thread (its loop waits a beat, or a wake, between two):
        (re)connect, keep the lease alive, write the membership when it changed or is due,
        flush the outbox. Whatever fails counts against the fleet link (`_failed`: "fleet
        blind" once it lasts a lease TTL), a broken watch too: an error nobody foresaw (a value
        in etcd of another shape, a bug) ended the thread in silence, and with it the lease,
        the membership and the outbox."""
        try:
            now = self.monotonic()
            if not self._connected:
                self._connect()
                self._last_beat = self._last_put = self.monotonic()
            else:
                if now - self._last_beat >= self._beat * 0.9:
                    self._keepalive()
                    self._last_beat = now
                # The membership is written when it changes, and refreshed every
                # MEMBER_REFRESH: every put is an event for every watcher of the fleet.
                if self._member_dirty.is_set() or now - self._last_put >= MEMBER_REFRESH:
                    self._put_member()
                    self._last_put = now
            self._flush_outbox()
        except FleetUnavailable as exc:
            self._failed(str(exc))
        except Exception as exc:  # noqa: BLE001 - any failure is said (see above), never a dead thread
            log.exception("fleet: a sync round failed reason=%s", exc)
            self._failed(f"{type(exc).__name__}: {exc}")
        else:
            if self._watch_problem is not None:
                self._failed(f"the watch fails: {self._watch_problem}")
            else:
                self._answered()

    def _connect(self) -> None:
        self._lease = self.gateway.grant(self.config.lease)
        self._put_member()
        revision, kvs = self.gateway.range_prefix(self.config.root)
        self.cache.load(revision, kvs)
        stream = self._watch
        if stream is not None:
            stream.interrupt()  # the watch thread reopens from the full read's revision
        self._connected = True
        log.info("fleet joined name=%s host=%s endpoint=%s lease=%s", self.config.name, self.config.host,
                 self.gateway.endpoint, self._lease)

    def _failed(self, detail: str) -> None:
        """A round with etcd failed. Blind only once it has failed for a whole lease TTL: a leader
        election after a lost member stalls writes for a second or two, and that is no outage."""
        self.counters.errors += 1
        now = self.monotonic()
        if self._failing_since is None:
            self._failing_since = now
            log.info("fleet: etcd did not answer, retrying reason=%s", detail)
        if not self._blind and now - self._failing_since >= self.config.lease:
            self._blind = True
            log.warning("fleet blind: deciding alone until etcd answers reason=%s", detail)
            self._notices.put(Notice("blind", detail, self.clock()))

    def _answered(self) -> None:
        self._failing_since = None
        if self._blind:
            self._blind = False
            self._notices.put(Notice("recovered", f"etcd answers again ({self.gateway.endpoint})", self.clock()))
            log.warning("fleet recovered endpoint=%s", self.gateway.endpoint)

    def _keepalive(self) -> None:
        # No lease yet counts as an expired one: a new one is granted.
        ttl = self.gateway.keepalive(self._lease) if self._lease is not None else 0
        if ttl <= 0:
            # The lease expired (etcd unreachable longer than the TTL): a new one, membership again.
            log.warning("fleet lease expired, joining again lease=%s", self._lease)
            self._lease = self.gateway.grant(self.config.lease)
            self._member_dirty.set()

    def _put_member(self) -> None:
        with self._lock:
            member = self._member
        if member is None:
            member = Member(self.config.host, None, phase="starting", tick_at=self.clock())
        self._member_dirty.clear()
        self.gateway.put(self.keys.member(self.config.host), member.encode(), lease_id=self._lease)

    def _flush_outbox(self) -> None:
        for item in self.outbox.pending():
            if item["kind"] == "verdict":
                verdict = FleetVerdict.decode(item["release"], item["value"])
                if verdict is not None:
                    self._write_verdict(verdict)
            else:
                self.gateway.put(self.keys.survived(item["release"], item["host"]), survived_value(item["at"]))
                self._declare_good_if_enough(item["release"])
            self.outbox.done(item)

    def _write_verdict(self, verdict: FleetVerdict) -> None:
        key = self.keys.verdict(verdict.release)
        if self.gateway.create(key, verdict.encode()):
            log.info("fleet verdict written release=%s verdict=%s", verdict.release, verdict.verdict)
            return
        raw = self.gateway.get(key)
        stored = FleetVerdict.decode(verdict.release, raw) if raw is not None else None
        if raw is not None and verdict_wins(stored, verdict) and self.gateway.replace(key, raw, verdict.encode()):
            # What was there is a good verdict (bad replaces it), or no verdict at all (a
            # truncated write, a hand edit, another version's format: compare-and-swap on it).
            log.info("fleet verdict replaced release=%s was=%s now=%s", verdict.release,
                     stored.verdict if stored is not None else f"not a verdict ({raw[:40]!r})", verdict.verdict)
        else:
            log.info("fleet verdict already there release=%s stored=%s by=%s", verdict.release,
                     stored.verdict if stored else "?", stored.host if stored else "?")

    def _declare_good_if_enough(self, release: str) -> None:
        # The marks a watcher wrote, not every key under the prefix (garbage counts for nothing).
        _, kvs = self.gateway.range_prefix(self.keys.survived_prefix(release))
        hosts = sum(1 for kv in kvs if survived_at(kv.value) is not None)
        if hosts >= self.config.known_good_hosts:
            self._write_verdict(FleetVerdict(release, GOOD, self.config.host, self.clock(),
                                             reason=f"survived its watch window on {hosts} host(s)"))

    # ------------------------------------------------------------------------------------------
    # The watch thread: the cache (fleet_cache.py), and new verdicts for the service

    def _watch_loop(self) -> None:
        while not self._stop.is_set():
            pause = self.watch_once()
            if pause:
                self._stop.wait(pause)

    def watch_once(self) -> float:
        """One stream of the watch thread: opened from the cache's revision, its events applied
        until it ends. Returns how long to wait before the next one. An error nobody foresaw
        reads everything again (the sync round reconnects) and is said through the sync
        round's failures until a stream goes well (`_watch_problem`)."""
        if not self._connected:
            return 0.2
        try:
            stream = self.gateway.watch(self.config.root, self.cache.revision + 1, WATCH_READ_TIMEOUT)
        except FleetUnavailable as exc:
            # The sync thread's lease beat decides whether this is an outage; retry soon.
            log.debug("fleet watch not opened reason=%s", exc)
            return 0.5
        self._watch = stream
        try:
            for _revision, events in stream.events():
                self.cache.apply_events(events)
        except WatchEnded as exc:
            self._watch_problem = None
            if exc.resync:
                self._connected = False  # read everything again: the revision is compacted
                self._wake.set()
            log.debug("fleet watch ended reason=%s", exc)
        except Exception as exc:  # noqa: BLE001 - said through the sync round, never a dead thread
            log.exception("fleet: the watch failed, reading everything again reason=%s", exc)
            self._watch_problem = f"{type(exc).__name__}: {exc}"
            self._connected = False
            self._wake.set()
        finally:
            self._watch = None
            stream.close()
        return 0.0

    def _count_request(self) -> None:
        self.counters.requests += 1
