"""The fleet in the simulation: one FakeEtcd (etcd.py), and each host's REAL FleetLink and
FleetCoordinator, whose two threads are driven as steps of the simulated time instead.

The seam: FleetLink's threads each run a loop of rounds (watcher/fleet/link.py, `sync_once`
and `watch_once`); the world calls the rounds when the real threads would run them: the sync
round every lease/3 and when the tick wakes it, a watch stream shortly after every change in
etcd. An exception out of a round would end that thread: the simulation then keeps the link
dead, which the invariant `fleet_trouble_is_said` is about.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sim.etcd import FakeEtcd, FakeGateway
from watcher.fleet.link import FleetLink
from watcher.service.coordinator import FleetCoordinator

if TYPE_CHECKING:
    from sim.host import SimHost
    from sim.world import World


@dataclass
class LinkRun:
    """One process's FleetLink and the state of its two simulated threads."""

    host: SimHost
    link: FleetLink
    started: float
    last_beat: float = -1e18
    last_put: float = -1e18
    sync_dead: str | None = None  # why the sync thread died
    watch_dead: str | None = None
    dead_at: float | None = None
    stopped: bool = False  # the process is gone
    watch_pending: bool = False
    last_ok: float | None = None  # the last round that etcd answered


def sync_round(run: LinkRun) -> None:
    """One round of the link's sync thread (FleetLink.sync_once)."""
    run.link.sync_once()
    if run.link._failing_since is None:
        run.last_ok = run.host.world.t


def watch_round(run: LinkRun) -> None:
    """One stream of the link's watch thread (FleetLink.watch_once): the fake stream delivers
    what happened since the cache's revision, then ends."""
    run.link.watch_once()


class SimFleet:
    def __init__(self, world: World):
        self.world = world
        self.enabled = world.setup.fleet
        self.etcd = FakeEtcd(clock=lambda: world.t, on_change=self._changed)
        self.partitioned: dict[str, float] = {}  # host -> until (true time)
        self.runs: dict[str, LinkRun] = {}
        self.watch_delay = world.setup.watch_delay

    def reachable(self, host: SimHost) -> bool:
        return self.world.t >= self.partitioned.get(host.name, -1.0)

    def coordinator(self, host: SimHost, w, cli: bool = False) -> FleetCoordinator:
        cfg = host.config.fleet
        link = FleetLink(cfg, host.config.state_dir, clock=host.clock.wall, monotonic=host.clock.mono)
        link.gateway = FakeGateway(self.etcd, host.name, lambda: self.reachable(host), link._count_request)
        if not cli:
            old = self.runs.get(host.name)
            if old is not None:
                old.stopped = True
            run = self.runs[host.name] = LinkRun(host, link, self.world.t)
            host.link = link
            self._schedule_sync(run, self.world.t)
        return FleetCoordinator(link, to_wall=w.timebase.to_wall)

    def process_died(self, host: SimHost) -> None:
        run = self.runs.get(host.name)
        if run is not None:
            run.stopped = True
        host.link = None

    def after_tick(self, host: SimHost) -> None:
        """The tick's report() wakes the sync thread when the membership changed."""
        run = self.runs.get(host.name)
        if run is not None and not run.stopped and run.link._wake.is_set():
            self._schedule_sync(run, self.world.t + 0.01, wake=True)

    def _schedule_sync(self, run: LinkRun, when: float, wake: bool = False) -> None:
        def go() -> None:
            if run.stopped or run.sync_dead:
                return
            try:
                sync_round(run)
            except Exception as exc:  # noqa: BLE001 - the thread dies of any exception
                run.sync_dead = f"{type(exc).__name__}: {exc}"
                run.dead_at = self.world.t
                self.world.note(run.host, f"fleet sync thread died: {run.sync_dead}")
                return
            if not wake:
                beat = max(0.5, run.link.config.lease / 3)
                self._schedule_sync(run, self.world.t + beat)

        self.world.at(when, go, f"{run.host.name} fleet sync")

    def _changed(self) -> None:
        for run in self.runs.values():
            if run.stopped or run.watch_dead or run.watch_pending:
                continue
            run.watch_pending = True
            self.world.at(self.world.t + self.watch_delay, lambda run=run: self._watch(run), f"{run.host.name} fleet watch")

    def _watch(self, run: LinkRun) -> None:
        run.watch_pending = False
        if run.stopped or run.watch_dead or not self.reachable(run.host):
            return
        try:
            watch_round(run)
        except Exception as exc:  # noqa: BLE001 - the thread dies of any exception
            run.watch_dead = f"{type(exc).__name__}: {exc}"
            run.dead_at = run.dead_at or self.world.t
            self.world.note(run.host, f"fleet watch thread died: {run.watch_dead}")

    def heal(self, host: SimHost) -> None:
        """A partition ended: the watch thread reopens (it retries every 0.5 s)."""
        run = self.runs.get(host.name)
        if run is not None and not run.stopped:
            self.world.at(self.world.t + 0.5, lambda: self._watch(run), f"{host.name} fleet watch reopens")

    def expire_leases(self) -> None:
        self.etcd.expire()
