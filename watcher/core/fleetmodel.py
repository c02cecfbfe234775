"""The fleet's plain data and its pure decisions: no I/O, no clock (the caller passes `now`).

Keys, all under `PREFIX/NAME/` (FleetConfig.root), values are JSON:

    releases/ID/verdict      created once, first writer wins: {"verdict": "bad"|"good", "host",
                             "at", "rule", "value", "unit", "reason"}. The one exception: "bad" replaces
                             "good" (compare-and-swap on the exact old value), never the reverse,
                             so a release rolled back after it was declared good is refused by
                             the gate from then on.
    releases/ID/hosts/HOST   "survived its watch window here": {"at"}; not lease-bound (it did
                             survive, even if the host is gone now)
    hosts/HOST               lease-bound membership: {"release", "phase", "in_window",
                             "known_good", "firing": {rule: since}, "tick_at", "previous"}

Nothing read is trusted unchecked: a value that is not what `encode` writes (garbage, another
version's format, a field of the wrong type) decodes to None and counts for nothing, and a
membership key without a lease (written by hand or by a tool) is no member (the readers check).

The decisions here:

    fleet_wide_symptom   is a firing rule on this host also firing, at the same time, on hosts
                         still on a known-good release? Then it is not this release's fault.
    gate_answer          may a deploy script ship release ID to the next batch?
    verdict_wins         does a new verdict replace the one stored (only bad over good)?
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from watcher.base.format import untrusted

BAD = "bad"
GOOD = "good"
# What another host wrote is shown capped (base/format.untrusted): a name, a reason.
HOST_MAX = 64
RULE_MAX = 64
RELEASE_MAX = 80
REASON_MAX = 200
# A bad verdict from another host enters the decider as a finding of rule "fleet:RULE".
FLEET_RULE_PREFIX = "fleet:"


def is_fleet_rule(rule: str) -> bool:
    return rule.startswith(FLEET_RULE_PREFIX)


# ---------------------------------------------------------------------------------------------
# Keys


@dataclass(frozen=True)
class Keys:
    root: str  # "PREFIX/NAME/", ends with "/"

    def verdict(self, release: str) -> str:
        return f"{self.root}releases/{release}/verdict"

    def survived(self, release: str, host: str) -> str:
        return f"{self.root}releases/{release}/hosts/{host}"

    def survived_prefix(self, release: str) -> str:
        return f"{self.root}releases/{release}/hosts/"

    def member(self, host: str) -> str:
        return f"{self.root}hosts/{host}"

    def parse(self, key: str) -> tuple[str, str, str] | None:
        """("verdict", release, ""), ("survived", release, host), ("member", "", host) or None."""
        if not key.startswith(self.root):
            return None
        parts = key[len(self.root):].split("/")
        if len(parts) == 3 and parts[0] == "releases" and parts[2] == "verdict" and parts[1]:
            return "verdict", parts[1], ""
        if len(parts) == 4 and parts[0] == "releases" and parts[2] == "hosts" and parts[1] and parts[3]:
            return "survived", parts[1], parts[3]
        if len(parts) == 2 and parts[0] == "hosts" and parts[1]:
            return "member", "", parts[1]
        return None


# ---------------------------------------------------------------------------------------------
# Values


@dataclass(frozen=True)
class FleetVerdict:
    release: str
    verdict: str  # BAD | GOOD
    host: str  # who wrote it
    at: float  # wall time at the writer
    rule: str = ""  # the rule that fired (bad), "" for good or a manual rollback
    value: float | None = None
    reason: str = ""
    unit: str = ""  # the rule's value_unit at the writer, so that every host writes `value` alike

    def encode(self) -> str:
        value = self.value if self.value is not None and math.isfinite(self.value) else None
        return json.dumps({"verdict": self.verdict, "host": self.host, "at": round(self.at, 3), "rule": self.rule,
                           "value": value, "reason": self.reason, "unit": self.unit}, sort_keys=True)

    @classmethod
    def decode(cls, release: str, raw: bytes | str) -> FleetVerdict | None:
        """The verdict as `encode` writes it, or None: what is not one (garbage, another
        version's format, a field of the wrong type) is no verdict, never a half-trusted one.
        A "good" with a host of 42 and an `at` of "soon" made `gate` say go."""
        data = _loads(raw)
        if data is None or data.get("verdict") not in (BAD, GOOD):
            return None
        host, at, value = data.get("host"), _number(data.get("at")), data.get("value")
        rule, reason, unit = data.get("rule") or "", data.get("reason") or "", data.get("unit") or ""
        if not isinstance(host, str) or not host or at is None or not isinstance(rule, str) \
                or not isinstance(reason, str) or not isinstance(unit, str) \
                or (value is not None and _number(value) is None):
            return None
        return cls(release, data["verdict"], host, at, rule, _number(value), reason, unit)


@dataclass(frozen=True)
class Member:
    """What one host says about itself at its last tick (the lease-bound hosts/HOST key)."""

    host: str
    release: str | None
    phase: str = "watching"  # "in_window" | "watching" | "halted" | "rolling_back" ...
    in_window: bool = False
    known_good: bool = False  # its release is known-good in its own state
    firing: dict[str, float] = field(default_factory=dict, hash=False)  # rollback rule -> breaching since (wall)
    tick_at: float = 0.0
    previous: str | None = None  # the release before the current one
    # Rollback rules it could not read at its last tick (no data: no traffic, no series; or the
    # source failed): for those it is no evidence either way.
    unseen: frozenset[str] = frozenset()

    def encode(self) -> str:
        return json.dumps({"release": self.release, "phase": self.phase, "in_window": self.in_window,
                           "known_good": self.known_good, "firing": {k: round(v, 3) for k, v in self.firing.items()},
                           "tick_at": round(self.tick_at, 3), "previous": self.previous,
                           "unseen": sorted(self.unseen)}, sort_keys=True)

    @classmethod
    def decode(cls, host: str, raw: bytes | str) -> Member | None:
        """The membership as `encode` writes it, or None (not a member: see FleetVerdict.decode)."""
        data = _loads(raw)
        if data is None:
            return None
        release, previous, phase = data.get("release"), data.get("previous"), data.get("phase", "?")
        firing, tick_at = data.get("firing", {}), _number(data.get("tick_at"))
        in_window, known_good = data.get("in_window", False), data.get("known_good", False)
        if (not _text_or_none(release) or not _text_or_none(previous) or not isinstance(phase, str)
                or not isinstance(firing, dict) or tick_at is None
                or not isinstance(in_window, bool) or not isinstance(known_good, bool)):
            return None
        read = {str(k): _number(v) for k, v in firing.items()}
        since = {k: v for k, v in read.items() if v is not None}
        if len(since) != len(read):
            return None
        unseen = data.get("unseen", [])  # absent in memberships written before it was added
        if not isinstance(unseen, list) or not all(isinstance(r, str) for r in unseen):
            return None
        return cls(host, release, phase, in_window, known_good, since, tick_at, previous, frozenset(unseen))


def survived_value(at: float) -> str:
    return json.dumps({"at": round(at, 3)})


def survived_at(raw: bytes | str) -> float | None:
    """When a survived mark says the window was survived, or None: not a mark (a host counted
    toward known_good_hosts on garbage would declare a release known-good fleet-wide)."""
    data = _loads(raw)
    return _number(data.get("at")) if data is not None else None


def _loads(raw: bytes | str) -> dict[str, Any] | None:
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _number(v: object) -> float | None:
    """A finite JSON number (not a boolean), or None."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return float(v)


def _text_or_none(v: object) -> bool:
    return v is None or isinstance(v, str)


def verdict_wins(stored: FleetVerdict | None, new: FleetVerdict) -> bool:
    """Whether `new` replaces `stored`: the first verdict wins, except that bad replaces good
    (a release rolled back after it was declared good must not be shipped further)."""
    if stored is None:
        return True
    return stored.verdict == GOOD and new.verdict == BAD


# ---------------------------------------------------------------------------------------------
# The fleet at one moment, as the watch thread's cache sees it


@dataclass(frozen=True)
class FleetView:
    members: dict[str, Member] = field(default_factory=dict)  # only live leases
    verdicts: dict[str, FleetVerdict] = field(default_factory=dict)  # by release
    survived: dict[str, frozenset[str]] = field(default_factory=dict)  # release -> hosts
    # host -> when its membership last arrived at the viewing host, on its monotonic clock
    arrived: dict[str, float] = field(default_factory=dict)

    def hosts_on(self, release: str) -> list[str]:
        return sorted(h for h, m in self.members.items() if m.release == release)


# ---------------------------------------------------------------------------------------------
# Not the deploy's fault


@dataclass(frozen=True)
class Symptom:
    fleet_wide: bool
    reason: str
    witnesses: tuple[str, ...] = ()  # hosts on a known-good release breaching the same rule
    # No host on a known-good release could read the rule (each reported it unseen): neither a
    # witness nor a denial. The coordinator counts it with the rules that do have witnesses.
    unseen: bool = False


def fleet_wide_symptom(view: FleetView, me: str, release: str, rule: str, since: float, now: float,
                       same_time: float, stale_after: float, known_good: frozenset[str] = frozenset()) -> Symptom:
    """Is `rule`, firing on host `me` (running `release`) since `since`, a fleet-wide symptom?

    Compared with the hosts that run a different release which is known-good (fleet-wide, in
    `known_good`, or by the host's own word) and that reported within `stale_after` of `now`
    (a silent host is no evidence either way). "Same time" means: the other host reports the
    same rule firing now, and its breach began within `same_time` of ours (either side): a DB
    outage reaches every host within seconds to a minute, whereas a breach that began long
    before the deploy is that host's own story.

    Both are judged on this host's monotonic clock (`now`, `since`), never by comparing it with
    another host's clock, or with its own wall clock across a step: a member's age is the time
    since its membership arrived here (`view.arrived`), and its breach began as long before that
    arrival as it had begun before its own tick (`tick_at` and `firing` are the other host's
    clock, consistent with each other). A peer whose clock was two minutes slow looked stale,
    and so did every peer after a step of this host's wall clock: a fleet-wide outage was taken
    for the release's fault. A view without arrival times (one read of etcd: `gate`, `fleet
    status`) uses `tick_at`, with `now` and `since` on the wall clock.

    Fleet-wide when at least one such host breaches that way and it is at least half of those
    hosts: one unlucky old host out of ten does not excuse a bad release, but lower-traffic
    hosts that have not crossed the threshold yet do not hide an outage either. A host that
    could not read the rule at all (`Member.unseen`: no traffic in quiet hours, no series) is
    not counted; when no host could, the symptom is `unseen`: the coordinator decides with the
    host's other rules (coordinator.symptoms).
    """
    old = []
    for host, m in sorted(view.members.items()):
        if host == me or m.release is None or m.release == release:
            continue
        if now - view.arrived.get(host, m.tick_at) > stale_after:
            continue
        verdict = view.verdicts.get(m.release)
        good = (verdict is not None and verdict.verdict == GOOD) or m.release in known_good or m.known_good
        if good and not (verdict is not None and verdict.verdict == BAD):
            old.append(m)
    if not old:
        return Symptom(False, f"no host on a known-good release reported within {stale_after:g}s to compare with")
    blind = [m for m in old if rule in m.unseen and rule not in m.firing]
    if len(blind) == len(old):
        names = ", ".join(f"{untrusted(m.host, HOST_MAX)} ({untrusted(m.release, RELEASE_MAX)})" for m in blind)
        return Symptom(False, f"{rule} cannot be compared: no data on the host(s) still on a known-good release "
                              f"({names})", unseen=True)
    old = [m for m in old if m not in blind]  # no evidence either way: not counted against an outage
    witnesses = tuple(m.host for m in old if rule in m.firing
                      and abs(view.arrived.get(m.host, m.tick_at) - (m.tick_at - m.firing[rule]) - since) <= same_time)
    if witnesses and 2 * len(witnesses) >= len(old):
        names = ", ".join(f"{untrusted(m.host, HOST_MAX)} ({untrusted(m.release, RELEASE_MAX)})"
                          for m in old if m.host in witnesses)
        return Symptom(True, f"{rule} also fires on {len(witnesses)} of {len(old)} host(s) still on a known-good "
                             f"release, since within {same_time:g}s of here: {names}", witnesses)
    return Symptom(False, f"{rule} fires on {len(witnesses)} of {len(old)} host(s) on a known-good release "
                          f"at the same time: the release is suspect", witnesses)


# ---------------------------------------------------------------------------------------------
# The deploy gate


class GateCode(IntEnum):
    GO = 0
    BAD = 1
    UNKNOWN = 2


@dataclass(frozen=True)
class GateAnswer:
    code: GateCode
    reason: str

    @property
    def final(self) -> bool:
        """Waiting longer cannot change a bad verdict or a go."""
        return self.code is not GateCode.UNKNOWN


def gate_answer(release: str, view: FleetView, canary: int | None, known_good_hosts: int | None = None) -> GateAnswer:
    """Bad anywhere -> BAD. Known-good fleet-wide, or (with `canary`) survived on at least
    `canary` hosts -> GO. Otherwise UNKNOWN, with what is still missing: how many hosts must
    survive the window (`canary`, else the fleet's `known_good_hosts`) and how many have."""
    verdict = view.verdicts.get(release)
    survived = sorted(view.survived.get(release, ()))
    if verdict is not None and verdict.verdict == BAD:
        rule = f" ({untrusted(verdict.rule, RULE_MAX)})" if verdict.rule else ""
        return GateAnswer(GateCode.BAD, f"{release} is bad fleet-wide: rolled back on {untrusted(verdict.host, HOST_MAX)}"
                                        f"{rule}: {untrusted(verdict.reason, REASON_MAX)}")
    if canary is not None and len(survived) >= canary:
        return GateAnswer(GateCode.GO, f"{release} survived its watch window on {len(survived)} host(s) "
                                       f"({_hosts(survived)}), canary {canary}")
    if canary is None and verdict is not None and verdict.verdict == GOOD:
        return GateAnswer(GateCode.GO, f"{release} is known-good fleet-wide (declared by {untrusted(verdict.host, HOST_MAX)})")
    running = view.hosts_on(release)
    need = canary if canary is not None else known_good_hosts
    needs = (f"needs {_count(need, 'host')} to survive its watch window ({'--canary' if canary is not None else 'known_good_hosts'})"
             if need is not None else "needs the fleet's known_good_hosts to survive its watch window")
    so_far = f"{len(survived)} so far" + (f" ({_hosts(survived)})" if survived else "")
    where = f"running on {_count(len(running), 'host')}" + (f": {_hosts(running)}" if running else "")
    return GateAnswer(GateCode.UNKNOWN, f"{release} is not known yet: {needs}, {so_far}; {where}")


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def _hosts(hosts: Collection[str]) -> str:
    """Host names another host's membership gave: each `untrusted`, ten at most."""
    names = [untrusted(h, HOST_MAX) for h in list(hosts)[:10]]
    more = len(hosts) - len(names)
    return ", ".join(names) + (f" and {more} more" if more > 0 else "")
