"""A history: the setup of a simulated world, then what happens in it, in order.

`Setup` is everything fixed for one history: the hosts, the rule table's parameters, the
watcher's config, the release catalogue with each release's ground truth (truth.Profile). The
actions are what the actors do, each `after` seconds of simulated time since the previous one:
the deploy tool deploys, a human runs a CLI command, the watcher's process dies at a chosen step
(and restarts from disk), the config is reloaded, the backend or Prometheus fail, an outage hits
every release, a wall clock steps, a host loses etcd, somebody else writes into etcd. Ticks are
not actions: each running watcher ticks every `interval`, as its daemon loop does.

Every type here prints as the Python that builds it (dataclass repr), so a shrunk history from
`make sim` can be pasted into examples.py as it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sim.truth import Judgement, Profile, judge_errors, judge_latency, judge_probe, judge_up

HEALTH_URL = "http://app.sim/health"


@dataclass(frozen=True)
class Setup:
    hosts: int = 1
    interval: float = 5.0
    scrape: float = 5.0
    watch_window: float = 300.0
    max_window: float = 60.0
    threshold: float = 0.10
    errors_for: float = 30.0
    probe_failures: int = 2  # 0: no probe rule
    up_for: float | None = None  # None: no `up` rule
    latency_for: float | None = None  # None: no latency rule
    verify_attempts: int = 5
    verify_every: float = 2.0
    cooldown: float = 1800.0
    max_auto_rollbacks: int = 1
    mode: str = "act"
    lock_timeout: float = 120.0
    fleet: bool = False
    lease: float = 6.0
    known_good_hosts: int = 2
    watch_delay: float = 0.005
    skews: tuple[float, ...] = ()  # each host's wall clock against true time, at start
    releases: tuple[tuple[str, Profile], ...] = (("r0", Profile()),)

    def skew(self, index: int) -> float:
        return self.skews[index] if index < len(self.skews) else 0.0

    def profile(self, release: str) -> Profile:
        return dict(self.releases).get(release, Profile())

    # -- the rule table -------------------------------------------------------------------------

    def rule_fors(self) -> dict[str, float]:
        """Each rollback rule's `for` (a probe's `failures` in seconds), by name."""
        out = {"errors": self.errors_for}
        if self.probe_failures:
            out["health"] = (self.probe_failures - 1) * self.interval
        if self.up_for is not None:
            out["up"] = self.up_for
        if self.latency_for is not None:
            out["latency"] = self.latency_for
        return out

    def rules_yaml(self) -> str:
        def for_line(seconds: float) -> str:
            return f"    for: {seconds:g}s\n" if seconds else ""

        text = ("rules:\n"
                "  - name: errors\n"
                "    query: sum(rate(app_requests_total{code=~\"5..\"}[$window])) / sum(rate(app_requests_total[$window]))\n"
                f"    above: {self.threshold:g}\n" + for_line(self.errors_for) +
                "    value_unit: \"%\"\n"
                "    action: rollback\n")
        if self.probe_failures:
            text += ("  - name: health\n"
                     f"    http: {HEALTH_URL}\n"
                     f"    failures: {self.probe_failures}\n"
                     "    action: rollback\n")
        if self.up_for is not None:
            text += ("  - name: up\n"
                     "    query: up{job=\"app\"}\n"
                     "    below: 1\n" + for_line(self.up_for) +
                     "    action: rollback\n")
        if self.latency_for is not None:
            text += ("  - name: latency\n"
                     "    query: max_over_time(app_latency_p95_seconds[$window])\n"
                     "    above: 0.5\n" + for_line(self.latency_for) +
                     "    value_unit: s\n"
                     "    action: rollback\n")
        return text

    def judge(self, release: str) -> dict[str, Judgement]:
        """The ground truth's word on `release`, for every rollback rule of the table."""
        p = self.profile(release)
        out = {"errors": judge_errors(p, self.threshold, self.errors_for, self.scrape, self.interval, self.max_window)}
        if self.probe_failures:
            out["health"] = judge_probe(p, self.probe_failures, self.interval)
        if self.up_for is not None:
            out["up"] = judge_up(p, self.scrape, self.interval)
        if self.latency_for is not None:
            out["latency"] = judge_latency(p, 0.5, self.scrape, self.interval, self.max_window)
        return out


# ---------------------------------------------------------------------------------------------
# Actions


@dataclass(frozen=True)
class Deploy:
    """The deploy tool ships `release` to `host`: holding the deploy lock (`lock`) from before
    the switch until `restart_s` + `settle_s` after it; the app is down for `restart_s`.
    `mid_tick`: the switch lands during the next tick's reads. `announce`: the script runs
    `rollback-watcher mark deployed` once the restart is done."""

    after: float
    release: str
    host: int = 0
    lock: bool = True
    restart_s: float = 2.0
    settle_s: float = 1.0
    mid_tick: bool = False
    announce: bool = False


@dataclass(frozen=True)
class Human:
    """A human runs `rollback-watcher COMMAND` on `host`: mark (good|bad|barrier|not-barrier),
    deployed, pause (`seconds`), resume, resolve, rollback (`to`)."""

    after: float
    command: str
    host: int = 0
    release: str | None = None
    mark: str | None = None
    seconds: float | None = None
    to: str | None = None


@dataclass(frozen=True)
class Crash:
    """The watcher's process on `host` dies at its `step`-th step of a coming tick, or at the
    first step named `at` ("save", "journal request_done", "backend switch", "sleep"...; see
    host.SimHost.step), or now (neither given); it starts again from disk `down_s` later."""

    after: float
    host: int = 0
    step: int = 0
    down_s: float = 2.0
    at: str | None = None


@dataclass(frozen=True)
class Reload:
    """SIGHUP; with `mode`, the config's mode is changed first."""

    after: float
    host: int = 0
    mode: str | None = None


@dataclass(frozen=True)
class BackendFault:
    """The next `count` calls of the backend's `what` (current, broken, releases) fail."""

    after: float
    host: int = 0
    what: str = "releases"
    count: int = 1


@dataclass(frozen=True)
class SourceOutage:
    """The host's Prometheus does not answer for `seconds`."""

    after: float
    seconds: float
    host: int = 0


@dataclass(frozen=True)
class EnvOutage:
    """Something every release depends on fails (a database): `error` of every request, on
    every host (or `host`), for `seconds`; with `probes`, /health fails too."""

    after: float
    seconds: float
    error: float = 0.5
    probes: bool = False
    host: int | None = None


@dataclass(frozen=True)
class ClockStep:
    """The host's wall clock steps by `seconds` (NTP, a VM resumed)."""

    after: float
    seconds: float
    host: int = 0


@dataclass(frozen=True)
class Partition:
    """The host (None: every host) cannot reach etcd for `seconds`."""

    after: float
    seconds: float
    host: int | None = 0


@dataclass(frozen=True)
class Tamper:
    """Somebody else writes into etcd (etcd.somebody_else): garbage, another version's format,
    wrong types, a member key without a lease."""

    after: float
    kind: str
    release: str = "r1"


@dataclass(frozen=True)
class Wait:
    after: float


Action = Deploy | Human | Crash | Reload | BackendFault | SourceOutage | EnvOutage | ClockStep | Partition | Tamper | Wait


@dataclass(frozen=True)
class History:
    setup: Setup
    actions: tuple = field(default_factory=tuple)
    tail: float = 600.0  # simulated seconds after the last action

    @property
    def seconds(self) -> float:
        return sum(a.after for a in self.actions) + self.tail

    def show(self) -> str:
        lines = ["History(", f"    setup={self.setup!r},", "    actions=("]
        lines += [f"        {a!r}," for a in self.actions]
        lines += ["    ),", f"    tail={self.tail!r},", ")"]
        return "\n".join(lines)
