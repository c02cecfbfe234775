"""The fleet as this host last read it from etcd: memberships, verdicts, survived marks.

The FleetLink's threads (watcher/fleet/link.py) fill it: a full read at (re)connect (`load`), then
the watch's events (`apply_events`); `revision` is where the watch goes on from. The tick reads
a copy (`view`), and takes each verdict once (`take_verdicts`), with the time it arrived. A
verdict this host publishes is known here at once (`own`), even while etcd does not answer.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from watcher.core.fleetmodel import FleetVerdict, FleetView, Keys, Member, survived_at, verdict_wins
from watcher.fleet.etcd import KeyValue, WatchEvent

T = TypeVar("T")


@dataclass
class FleetCounters:
    requests: int = 0
    errors: int = 0
    verdicts_learned: int = 0
    propagation: list[float] = field(default_factory=list)  # seconds from a verdict's write to its arrival here


def drain(q: queue.Queue[T]) -> list[T]:
    """Everything queued so far, without waiting."""
    out: list[T] = []
    while True:
        try:
            out.append(q.get_nowait())
        except queue.Empty:
            return out


class FleetCache:
    def __init__(self, keys: Keys, host: str, clock: Callable[[], float], counters: FleetCounters,
                 monotonic: Callable[[], float] = time.monotonic):
        self.keys = keys
        self.host = host
        self.clock = clock
        self.monotonic = monotonic  # when a membership arrived: no wall-clock step moves it
        self.counters = counters
        self.revision = 0  # of the last full read or event seen
        self._lock = threading.Lock()
        self._members: dict[str, Member] = {}
        self._arrived: dict[str, float] = {}  # host -> when its membership last arrived (monotonic)
        self._verdicts: dict[str, FleetVerdict] = {}
        self._survived: dict[str, set[str]] = {}
        self._seen_verdicts: set[str] = set()  # encoded verdicts already handed to the service
        self._verdict_queue: queue.Queue[tuple[FleetVerdict, float]] = queue.Queue()

    def own(self, verdict: FleetVerdict) -> None:
        """A verdict this host publishes: known here at once, never handed back to the service."""
        with self._lock:
            if verdict_wins(self._verdicts.get(verdict.release), verdict):
                self._verdicts[verdict.release] = verdict
            self._seen_verdicts.add(verdict.encode())

    def view(self) -> FleetView:
        with self._lock:
            return FleetView(dict(self._members), dict(self._verdicts),
                             {r: frozenset(h) for r, h in self._survived.items()}, dict(self._arrived))

    def take_verdicts(self) -> list[tuple[FleetVerdict, float]]:
        return drain(self._verdict_queue)

    def load(self, revision: int, kvs: list[KeyValue]) -> None:
        """A full read replaces the cache; this host's verdicts not written yet stay."""
        members: dict[str, Member] = {}
        verdicts: dict[str, FleetVerdict] = {}
        survived: dict[str, set[str]] = {}
        arrived: dict[str, float] = {}
        for kv in kvs:
            self._apply(kv.key, kv.value, "put", kv.lease, members, verdicts, survived, arrived)
        with self._lock:
            self._members, self._survived, self._arrived = members, survived, arrived
            mine = {r: v for r, v in self._verdicts.items() if r not in verdicts}  # still in the outbox
            self._verdicts = {**verdicts, **mine}
        for v in verdicts.values():
            self._learned(v)
        self.revision = revision

    def apply_events(self, events: Iterable[WatchEvent]) -> None:
        """The watch's events (etcd.WatchEvent: key, value, kind, revision), in order."""
        learned = []
        with self._lock:
            for e in events:
                v = self._apply(e.key, e.value, e.kind, e.lease, self._members, self._verdicts, self._survived,
                                self._arrived)
                if v is not None:
                    learned.append(v)
                self.revision = max(self.revision, e.revision)
        for v in learned:
            self._learned(v)

    def _apply(self, key: str, value: bytes, kind: str, lease: int, members: dict[str, Member],
               verdicts: dict[str, FleetVerdict], survived: dict[str, set[str]],
               arrived: dict[str, float]) -> FleetVerdict | None:
        parsed = self.keys.parse(key)
        if parsed is None:
            return None
        what, release, host = parsed
        if what == "member":
            # A membership lives by its lease; one without (written by hand) would never expire.
            member = Member.decode(host, value) if kind == "put" and lease else None
            if member is None:
                members.pop(host, None)
                arrived.pop(host, None)
            else:
                members[host] = member
                # On this host's monotonic clock: how fresh a member is must compare neither two
                # hosts' clocks nor a wall clock before and after a step.
                arrived[host] = self.monotonic()
        elif what == "survived" and kind == "put" and survived_at(value) is not None:
            survived.setdefault(release, set()).add(host)
        elif what == "verdict" and kind == "put":
            verdict = FleetVerdict.decode(release, value)
            if verdict is not None:
                verdicts[release] = verdict
                return verdict
        return None

    def _learned(self, verdict: FleetVerdict) -> None:
        encoded = verdict.encode()
        if encoded in self._seen_verdicts:
            return
        self._seen_verdicts.add(encoded)
        now = self.clock()
        self.counters.verdicts_learned += 1
        if verdict.host != self.host:
            self.counters.propagation.append(max(0.0, now - verdict.at))
            del self.counters.propagation[:-100]
        self._verdict_queue.put((verdict, now))
