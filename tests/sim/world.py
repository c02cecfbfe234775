"""The simulated world: one true clock, an event queue, the hosts, the deploy tool, the fleet's
etcd, and the invariants checked after every step.

Single-threaded and deterministic: events run in the order of their time (ties in the order
they were scheduled); whatever a history does, running it again does the same, which is what
lets `make sim` shrink a failing history and examples.py keep it.
"""

from __future__ import annotations

import heapq
import logging
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sim import history as h
from sim.etcd import somebody_else
from sim.fleet import SimFleet
from sim.host import SimHost, point_current
from sim.invariants import Checker, Violation
from sim.truth import Outage

T0 = 1_800_000_000.0


class DeployTool:
    """The deploy script of every host: one deploy at a time per host (a second one waits
    for the first, as `flock` would make it)."""

    def __init__(self, world: World):
        self.world = world
        self.busy: dict[str, bool] = {}
        self.queued: dict[str, list[h.Deploy]] = {}

    def deploy(self, host: SimHost, d: h.Deploy) -> None:
        if self.busy.get(host.name):
            self.queued.setdefault(host.name, []).append(d)
            return
        self.busy[host.name] = True
        if d.lock:
            host.take_lock()
        if d.mid_tick and host.alive:
            host.mid_tick.append(d)  # switched by the next tick's reads (host.during_reads)
            self.world.at(self.world.t + host.config.interval + d.restart_s + d.settle_s, lambda: self.done(host, d),
                          f"{host.name} deploy of {d.release} done")
        else:
            self.switch(host, d)
            self.world.at(self.world.t + d.restart_s + d.settle_s, lambda: self.done(host, d),
                          f"{host.name} deploy of {d.release} done")

    def switch(self, host: SimHost, d: h.Deploy) -> None:
        t = self.world.t
        before = host.link_target()
        point_current(host, d.release)
        host.link_moved(d.release, "tool", lock=d.lock)
        host.read_journal()
        host.deploys.append((t, d.release, d.lock, before, len(host.journal)))
        host.app.restart(d.release, t, d.restart_s)
        if d.announce:
            self.world.at(t + d.restart_s, lambda: host.human("deployed", {"release": d.release, "at": None,
                                                                          "force": False}),
                          f"{host.name} deploy hook announces {d.release}")

    def done(self, host: SimHost, d: h.Deploy) -> None:
        if d.lock:
            host.drop_lock()
        self.busy[host.name] = False
        queued = self.queued.get(host.name)
        if queued:
            self.deploy(host, queued.pop(0))


@dataclass
class Stats:
    ticks: int = 0
    seconds: float = 0.0
    rollbacks: int = 0


class World:
    def __init__(self, history: h.History, root: Path, check: bool = True):
        self.history = history
        self.setup = history.setup
        self.t0 = self.t = T0
        self._queue: list = []
        self._seq = 0
        self.notes: list[str] = []
        self.root = root
        self.fleet = SimFleet(self)
        self.tool = DeployTool(self)
        self.hosts = [SimHost(self, i, root / f"h{i}") for i in range(self.setup.hosts)]
        self.down_s: dict[str, float] = {}
        self.checker = Checker(self) if check else None
        self.stats = Stats()

    # -- time ----------------------------------------------------------------------------------

    def at(self, when: float, fn: Callable[[], None], what: str = "", last: bool = False) -> None:
        """Run `fn` at `when`; at one moment, in the order scheduled, those marked `last` after
        the others (a history's action at the moment of a tick comes after the tick)."""
        self._seq += 1
        heapq.heappush(self._queue, (max(when, self.t), 1 if last else 0, self._seq, fn, what))

    def run_until(self, end: float, busy: SimHost | None = None) -> None:
        while self._queue and self._queue[0][0] <= end:
            when, _, _, fn, _what = heapq.heappop(self._queue)
            self.t = max(self.t, when)
            fn()
        self.t = max(self.t, end)

    def schedule_tick(self, host: SimHost, when: float) -> None:
        host.next_tick = when
        self.at(when, lambda life=host.life: host.tick(life), f"{host.name} tick")

    def restart_delay(self, host: SimHost) -> float:
        return self.down_s.pop(host.name, 2.0)

    def note(self, host: SimHost | None, what: str) -> None:
        self.notes.append(f"t+{self.t - self.t0:.1f}s {host.name if host else ''}: {what}")

    # -- the run -------------------------------------------------------------------------------

    def start(self) -> None:
        """Every host runs r0 (the first release of the catalogue), marked known-good by a
        human before the watcher is installed (as a pipeline does), then the watcher starts."""
        first = self.setup.releases[0][0]
        for host in self.hosts:
            point_current(host, first)
            host.links.append(h_link(self.t, first))
            host.app.restart(first, self.t, 0.0)
            host.human("mark", {"release": first, "mark": "good", "reason": None, "force": False})
        for host in self.hosts:
            host.start()
        if self.setup.fleet:
            self._expire_every_second()

    def _expire_every_second(self) -> None:
        self.fleet.expire_leases()
        self.at(self.t + 1.0, self._expire_every_second, "etcd lease expiry")

    def run(self) -> list[Violation]:
        """The history's actions are events like the ticks: one can land while a tick waits
        (between verification attempts), as a deploy or a human would."""
        self.start()
        t = self.t
        for action in self.history.actions:
            t += action.after
            self.at(t, lambda a=action: self._act(a), type(action).__name__, last=True)
        self.run_until(t + self.history.tail)
        self.check(final=True)
        self.stats.seconds = self.t - self.t0
        return self.checker.violations if self.checker else []

    def check(self, final: bool = False) -> None:
        if self.checker is not None:
            self.checker.check(final=final)

    def after_tick(self, host: SimHost, rec) -> None:
        self.stats.ticks += 1
        self.check()

    def close(self) -> None:
        for host in self.hosts:
            host.close()

    # -- the actors ----------------------------------------------------------------------------

    def _act(self, a) -> None:
        self.apply(a)
        self.check()

    def apply(self, a) -> None:
        if isinstance(a, h.Deploy):
            self.tool.deploy(self.hosts[a.host], a)
        elif isinstance(a, h.Human):
            self.hosts[a.host].human(a.command, human_args(a))
        elif isinstance(a, h.Crash):
            host = self.hosts[a.host]
            self.down_s[host.name] = a.down_s
            if a.at is not None or a.step > 0:
                host.crash_at, host.crash_ticks_left = (a.at if a.at is not None else a.step), 20
            elif host.alive:
                if host.tick_record is not None:  # inside a tick (verifying): dies at its next step
                    host.crash_at = host.steps + 1
                else:
                    host.died()
        elif isinstance(a, h.Reload):
            host = self.hosts[a.host]
            if host.tick_record is not None:  # the daemon reloads between ticks
                self.at(self.t + 0.05, lambda: self.apply(a), "reload after the tick")
            else:
                host.reload(a.mode)
        elif isinstance(a, h.BackendFault):
            self.hosts[a.host].backend.failures[a.what] += a.count
        elif isinstance(a, h.SourceOutage):
            reader = self.hosts[a.host].reader
            reader.outage_until = max(reader.outage_until, self.t + a.seconds)
        elif isinstance(a, h.EnvOutage):
            for host in self.hosts if a.host is None else [self.hosts[a.host]]:
                host.app.outages.append(Outage(self.t, self.t + a.seconds, a.error, a.probes))
        elif isinstance(a, h.ClockStep):
            self.hosts[a.host].clock.offset += a.seconds
        elif isinstance(a, h.Partition):
            for host in self.hosts if a.host is None else [self.hosts[a.host]]:
                self.fleet.partitioned[host.name] = max(self.fleet.partitioned.get(host.name, 0.0), self.t + a.seconds)
                self.at(self.t + a.seconds, lambda host=host: self.fleet.heal(host), f"{host.name} partition heals")
        elif isinstance(a, h.Tamper):
            if self.setup.fleet:
                root = self.hosts[0].config.fleet.root
                key, value = somebody_else(a.kind, root, a.release, self.hosts[0].clock.wall())
                self.fleet.etcd.put(key, value, by="somebody else")
        elif isinstance(a, h.Wait):
            pass
        else:
            raise TypeError(a)

    def cli_notices_death(self, host: SimHost) -> None:
        """A CLI waiting for its request sees the service gone (it polls every 0.2 s): it takes
        its request back if no service took it, and applies it itself (cli._human_request)."""

        def notice() -> None:
            if host.alive:
                return  # a new service is up: it will take the request
            for req in host.requests:
                if req.id is not None and req.result is None and not req.applied_alone:
                    store_dir = host.state_dir / "requests"
                    if (store_dir / f"{req.id}.json").exists():
                        (store_dir / f"{req.id}.json").unlink()
                        req.applied_alone = True
                        req.result = host.cli_apply_alone(req.command, req.args)

        self.at(self.t + 0.2, notice, f"{host.name} CLI notices the service is gone")

    def watcher_switching(self, host: SimHost, target: str) -> None:
        if self.checker is not None:
            self.checker.switching(host, target)


def h_link(t: float, release: str):
    from sim.host import LinkChange

    return LinkChange(t, release, "setup")


def human_args(a: h.Human) -> dict:
    if a.command == "mark":
        return {"release": a.release, "mark": a.mark, "reason": None, "force": False}
    if a.command == "deployed":
        return {"release": a.release, "at": None, "force": False}
    if a.command == "pause":
        return {"seconds": a.seconds or 600.0}
    if a.command == "rollback":
        return {"to": a.to, "reason": "manual rollback"}
    return {}


def run_history(history: h.History, keep: bool = False, root: Path | None = None) -> Result:
    """Run one history in a fresh world under /dev/shm (or a temp dir): its violations."""
    base = root or (Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir()))
    workdir = Path(tempfile.mkdtemp(prefix="rw-sim-", dir=base))
    logging.disable(logging.CRITICAL)
    world = World(history, workdir)
    try:
        violations = world.run()
        return Result(violations, world.stats, world.notes, workdir if keep else None)
    finally:
        world.close()
        logging.disable(logging.NOTSET)
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)


@dataclass
class Result:
    violations: list[Violation]
    stats: Stats
    notes: list[str] = field(default_factory=list)
    workdir: Path | None = None
