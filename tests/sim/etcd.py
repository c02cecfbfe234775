"""etcd for the simulated fleet: a fake at the process boundary.

The real code talks to etcd through `watcher.fleet.etcd.EtcdGateway` (etcd3gw for key-values and
leases, one streaming POST for the watch). A simulated fleet of many hosts over thousands of
histories cannot start etcd clusters, so `FakeEtcd` keeps etcd v3's semantics that the fleet
relies on, in memory, on the simulated clock: revisions, `create` first-writer-wins, `replace`
compare-and-swap on the exact old value, leases that expire (their keys deleted, with delete
events), a watch from a revision (cancelled with `compact_revision` once compacted). Each host
reaches it through a `FakeGateway`, the same interface as EtcdGateway, which raises
FleetUnavailable while that host is partitioned from etcd. tests/fleet checks the real gateway
against a real etcd.

`somebody_else` writes what no watcher of this version would: garbage, another version's format,
wrong field types, a member key without a lease.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from watcher.fleet.etcd import FleetUnavailable, KeyValue, WatchEnded, WatchEvent


@dataclass
class Stored:
    value: bytes
    create_revision: int
    mod_revision: int
    lease: int


@dataclass
class Write:
    """One change of the store, as the invariants read it."""

    revision: int
    kind: str  # "put" | "delete"
    key: str
    value: bytes
    old: bytes | None
    lease: int
    by: str  # a host's name, "etcd" (a lease expired) or "somebody else"
    at: float


@dataclass
class FakeEtcd:
    clock: Callable[[], float]  # the simulated true time
    kv: dict[str, Stored] = field(default_factory=dict)
    revision: int = 1
    history: list[Write] = field(default_factory=list)
    leases: dict[int, list] = field(default_factory=dict)  # id -> [ttl, expires_at]
    compacted: int = 0
    _next_lease: int = 7000
    on_change: Callable[[], None] = lambda: None

    # -- leases ---------------------------------------------------------------------------------

    def expire(self) -> None:
        now = self.clock()
        for lease_id, (_ttl, expires) in list(self.leases.items()):
            if expires <= now:
                del self.leases[lease_id]
                for key in [k for k, s in self.kv.items() if s.lease == lease_id]:
                    self._delete(key, "etcd")

    def grant(self, ttl: float) -> int:
        self.expire()
        self._next_lease += 1
        ttl = max(2, int(round(ttl)))
        self.leases[self._next_lease] = [ttl, self.clock() + ttl]
        return self._next_lease

    def keepalive(self, lease_id: int) -> int:
        self.expire()
        lease = self.leases.get(lease_id)
        if lease is None:
            return -1
        lease[1] = self.clock() + lease[0]
        return lease[0]

    def revoke(self, lease_id: int) -> None:
        self.expire()
        if self.leases.pop(lease_id, None) is not None:
            for key in [k for k, s in self.kv.items() if s.lease == lease_id]:
                self._delete(key, "etcd")

    # -- keys -----------------------------------------------------------------------------------

    def put(self, key: str, value: bytes | str, lease: int = 0, by: str = "?") -> None:
        self.expire()
        raw = value.encode() if isinstance(value, str) else value
        if lease and lease not in self.leases:
            raise FleetUnavailable(f"put {key}: etcdserver: requested lease not found")
        self.revision += 1
        old = self.kv.get(key)
        created = old.create_revision if old is not None else self.revision
        self.kv[key] = Stored(raw, created, self.revision, lease)
        self.history.append(Write(self.revision, "put", key, raw, old.value if old else None, lease, by, self.clock()))
        self.on_change()

    def create(self, key: str, value: str, by: str) -> bool:
        self.expire()
        if key in self.kv:
            return False
        self.put(key, value, by=by)
        return True

    def replace(self, key: str, old: bytes, new: str, by: str) -> bool:
        self.expire()
        stored = self.kv.get(key)
        if stored is None or stored.value != (old.encode() if isinstance(old, str) else old):
            return False
        self.put(key, new, by=by)  # a put without a lease, as etcd3gw's transaction does
        return True

    def get(self, key: str) -> bytes | None:
        self.expire()
        stored = self.kv.get(key)
        return stored.value if stored is not None else None

    def _delete(self, key: str, by: str) -> None:
        old = self.kv.pop(key)
        self.revision += 1
        self.history.append(Write(self.revision, "delete", key, b"", old.value, 0, by, self.clock()))
        self.on_change()

    def range_prefix(self, prefix: str) -> tuple[int, list[KeyValue]]:
        self.expire()
        kvs = [KeyValue(k, s.value, s.mod_revision, s.lease) for k, s in sorted(self.kv.items()) if k.startswith(prefix)]
        return self.revision, kvs

    def events_since(self, prefix: str, start_revision: int) -> list[WatchEvent]:
        return [WatchEvent(w.kind, w.key, w.value, w.revision, w.lease) for w in self.history
                if w.revision >= start_revision and w.key.startswith(prefix)]

    def compact(self) -> None:
        self.compacted = self.revision


class FakeGateway:
    """EtcdGateway's interface over a FakeEtcd, for one host; `reachable()` says whether this
    host can reach etcd now (a partition, an outage: FleetUnavailable, as when no endpoint
    answers)."""

    def __init__(self, etcd: FakeEtcd, host: str, reachable: Callable[[], bool], on_request: Callable[[], None] | None = None):
        self.etcd = etcd
        self.host = host
        self.reachable = reachable
        self._on_request = on_request or (lambda: None)
        self.endpoint = "http://etcd.sim:2379"

    def _check(self, what: str) -> None:
        self._on_request()
        if not self.reachable():
            raise FleetUnavailable(f"{what}: no etcd endpoint answered ({self.endpoint}: timed out)")

    def grant(self, ttl: float) -> int:
        self._check("lease grant")
        return self.etcd.grant(ttl)

    def keepalive(self, lease_id: int) -> int:
        self._check("lease keepalive")
        return self.etcd.keepalive(lease_id)

    def revoke(self, lease_id: int) -> None:
        self._check("lease revoke")
        self.etcd.revoke(lease_id)

    def put(self, key: str, value: str, lease_id: int | None = None) -> None:
        self._check(f"put {key}")
        self.etcd.put(key, value, lease=lease_id or 0, by=self.host)

    def create(self, key: str, value: str) -> bool:
        self._check(f"create {key}")
        return self.etcd.create(key, value, by=self.host)

    def replace(self, key: str, old: bytes, new: str) -> bool:
        self._check(f"replace {key}")
        return self.etcd.replace(key, old, new, by=self.host)

    def get(self, key: str) -> bytes | None:
        self._check(f"get {key}")
        return self.etcd.get(key)

    def range_prefix(self, prefix: str) -> tuple[int, list[KeyValue]]:
        self._check(f"range {prefix}")
        return self.etcd.range_prefix(prefix)

    def count_prefix(self, prefix: str) -> int:
        self._check(f"count {prefix}")
        return len(self.etcd.range_prefix(prefix)[1])

    def watch(self, prefix: str, start_revision: int, read_timeout: float) -> FakeWatchStream:
        self._check(f"watch {prefix}")
        return FakeWatchStream(self.etcd, prefix, start_revision)

    def health(self) -> list[tuple[str, bool, str]]:
        return [(self.endpoint, self.reachable(), "health true" if self.reachable() else "timed out")]


class FakeWatchStream:
    """A watch opened at `start_revision`: yields what happened since, then ends as a quiet
    stream does (WatchEnded after the read timeout); the simulation opens the next one."""

    def __init__(self, etcd: FakeEtcd, prefix: str, start_revision: int):
        self.etcd = etcd
        self.prefix = prefix
        self.start = start_revision

    def events(self) -> Iterator[tuple[int, list[WatchEvent]]]:
        if self.etcd.compacted and self.start <= self.etcd.compacted:
            raise WatchEnded(f"watch cancelled by etcd (compacted to {self.etcd.compacted})", resync=True)
        events = self.etcd.events_since(self.prefix, self.start)
        for e in events:
            yield e.revision, [e]
        raise WatchEnded("quiet for the read timeout")

    def interrupt(self) -> None:
        pass

    def close(self) -> None:
        pass


# ---------------------------------------------------------------------------------------------
# What somebody else writes


TAMPER_KINDS = ("verdict_garbage", "verdict_truncated", "verdict_old_format", "verdict_wrong_types",
                "verdict_good_wrong_types", "member_no_lease", "member_wrong_types", "survived_garbage")


def somebody_else(kind: str, root: str, release: str, now: float) -> tuple[str, bytes]:
    """(key, value) of one write by something that is not a watcher of this version."""
    verdict_key = f"{root}releases/{release}/verdict"
    if kind == "verdict_garbage":
        return verdict_key, b"\x00\xffnot json"
    if kind == "verdict_truncated":
        return verdict_key, b'{"verdict": "bad", "host": "web-9", "at": 17'
    if kind == "verdict_old_format":
        return verdict_key, json.dumps({"state": "bad", "by": "web-9", "time": now}).encode()
    if kind == "verdict_wrong_types":
        return verdict_key, json.dumps({"verdict": "bad", "host": ["web-9"], "at": "yesterday", "rule": 7,
                                        "value": "high", "reason": None}).encode()
    if kind == "verdict_good_wrong_types":
        return verdict_key, json.dumps({"verdict": "good", "host": 42, "at": "soon", "rule": [],
                                        "value": {}, "reason": 3}).encode()
    if kind == "member_no_lease":
        # A member key written by hand (or by a tool) without a lease: it never expires.
        return f"{root}hosts/ghost", json.dumps({"release": "r0", "phase": "watching", "in_window": False,
                                                 "known_good": True, "firing": {},
                                                 "tick_at": now + 10 ** 7, "previous": None}).encode()
    if kind == "member_wrong_types":
        return f"{root}hosts/ghost-2", json.dumps({"release": ["r0"], "phase": 5, "in_window": "yes",
                                                   "known_good": "true", "firing": ["errors"],
                                                   "tick_at": "now"}).encode()
    if kind == "survived_garbage":
        return f"{root}releases/{release}/hosts/ghost", b"garbage"
    raise ValueError(kind)


def well_formed_verdict(raw: bytes) -> dict | None:
    """The verdict as this version writes it (FleetVerdict.encode), or None: the strict reading
    the invariants judge the fleet's trust against."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict) or data.get("verdict") not in ("bad", "good"):
        return None
    if not isinstance(data.get("host"), str) or not data["host"]:
        return None
    at = data.get("at")
    if isinstance(at, bool) or not isinstance(at, (int, float)):
        return None
    if not isinstance(data.get("rule", ""), str) or not isinstance(data.get("reason", ""), str):
        return None
    value = data.get("value")
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
        return None
    return data


def well_formed_member(raw: bytes) -> bool:
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return False
    if not isinstance(data, dict):
        return False
    release = data.get("release")
    tick_at = data.get("tick_at")
    firing = data.get("firing", {})
    return ((release is None or isinstance(release, str)) and isinstance(data.get("phase", ""), str)
            and isinstance(tick_at, (int, float)) and not isinstance(tick_at, bool)
            and isinstance(firing, dict) and all(isinstance(v, (int, float)) for v in firing.values()))
