"""One simulated host: the REAL watcher (service.Watcher, its StateStore on a temp dir, the
symlink backend, the executor, confirm, the fleet coordinator) with the world around it
simulated at its seams:

    HostClock     wall (epoch seconds, with skew and steps) and monotonic, from the world's time
    SimStore      StateStore, plus the crash points: every journal line, save and request read
    SimBackend    SymlinkBackend on a temp dir, plus injectable failures of `current` and of the
                  listing, crash points around the switch, and the app restarted by the switch
    SimReader     evaluate.SignalReader answering every rule from the host's ground truth
                  (truth.App and its Prometheus, truth.Scrapes); its outages are source errors
    Inbox         the Notifier protocol: every message a human would receive, at once
    DeployTool    a deploy script: with or without the deploy lock, a restart that takes time
    the human     every CLI request through the CLI's path: StateStore.submit_request and the
                  service's next tick, or the CLI's own apply while no service runs

Nothing runs on a thread: the world (world.py) calls `tick`, the deploy tool's steps and the
fleet link's rounds in the order of the simulated time, and the watcher's `sleep` (between
verification attempts) lets the world run what falls meanwhile.

A crash is `SimCrash` raised from a chosen step (a BaseException, so that no `except` of the
watcher catches it: the process is gone); the host restarts later from what is on disk.
"""

from __future__ import annotations

import copy
import fcntl
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sim.history import HEALTH_URL
from sim.truth import App, Scrapes
from watcher.backends.symlink import SymlinkBackend
from watcher.base.errors import BrokenCurrent, RollbackError, SourceError, WatcherError
from watcher.config.load import load_config
from watcher.core.rules import HttpCheck, ProbeResult, PromQuery, Rule, Sample, render_query
from watcher.service.tick import Watcher
from watcher.store.state import StateStore

if TYPE_CHECKING:
    from sim.world import World



class SimCrash(BaseException):
    """The watcher's process dies here (SIGKILL, OOM, power): nothing of it runs any more."""


@dataclass
class HostClock:
    """A host's clocks from the world's true time: wall = true + offset (skew, steps), and a
    monotonic clock of its own origin (it never steps)."""

    world: World
    offset: float = 0.0
    mono_origin: float = 1000.0

    def wall(self) -> float:
        return self.world.t + self.offset

    def mono(self) -> float:
        return self.world.t - self.world.t0 + self.mono_origin


class SimStore(StateStore):
    """The StateStore on the host's state dir; each write and each read of the request inbox
    is a step where the process may die (`crash`)."""

    def __init__(self, state_dir: Path, clock, step=None, on_save=None, stamp=None):
        super().__init__(state_dir, clock=clock)
        self._step = step or (lambda what: None)
        self._on_save = on_save or (lambda state: None)
        self._stamp = stamp or (lambda: None)

    def journal(self, kind: str, **fields: Any) -> dict:
        self._step(f"journal {kind}")
        self._stamp()  # the true time of this line, for the invariants (its "time" is the wall's)
        return super().journal(kind, **fields)

    def save(self, state) -> None:
        self._step("save")
        super().save(state)
        self._on_save(state)

    def take_requests(self) -> list[dict]:
        self._step("take requests")
        return super().take_requests()

    def service_running(self) -> bool:
        return False  # the simulated host knows; the sim never takes the instance lock


class SimBackend(SymlinkBackend):
    """The real symlink backend on the host's temp dir. `fail` arms failures of its reads;
    the switch restarts the app (the `restart` command), and is where the process may die."""

    def __init__(self, host: SimHost):
        super().__init__(host.releases_dir, host.current_link, restart=("sim-restart",))
        self.host = host
        self.failures = {"current": 0, "broken": 0, "releases": 0}

    def current(self):
        self.host.step("backend current")
        if self.failures["broken"]:
            self.failures["broken"] -= 1
            self.host.fault_used("broken")
            raise BrokenCurrent(f"cannot resolve {self.current_link}: injected")
        if self.failures["current"]:
            self.failures["current"] -= 1
            self.host.fault_used("current")
            raise RollbackError(f"cannot resolve {self.current_link}: Input/output error (injected)")
        return super().current()

    def releases(self):
        self.host.step("backend releases")
        if self.failures["releases"]:
            self.failures["releases"] -= 1
            self.host.fault_used("releases")
            raise RollbackError(f"cannot list {self.releases_dir}: Input/output error (injected)")
        return super().releases()

    def switch(self, target, reason: str = "", progress=None) -> str:
        self.host.step("backend switch")
        self.host.world.watcher_switching(self.host, target.id)
        return super().switch(target, reason, progress)

    def _replace_link(self, release_dir: Path) -> None:
        super()._replace_link(release_dir)
        self.host.link_moved(release_dir.name, "watcher")

    def run_restart(self, target, progress=None) -> str:
        self.host.step("backend restart")
        self.host.app.restart(target.id, self.host.world.t)
        return "restarted"


_RANGE = re.compile(r"\[(\d+)s\]")


class SimReader:
    """evaluate.SignalReader over the host's ground truth: its Prometheus (truth.Scrapes) for
    PromQL, its app for probes. While `outage_until` is ahead, every PromQL read is a
    SourceError (Prometheus down). `prometheus` is None: no baseline rule in the table."""

    prometheus = None
    clock_guard = None

    def __init__(self, host: SimHost):
        self.host = host
        self.outage_until = -1.0

    def read_all(self, rules: list[Rule], now: float, window_s: int, at: float | None = None,
                 since: float | None = None) -> dict[str, tuple[object, float]]:
        self.host.during_reads()
        return {rule.name: (self.read(rule, window_s), 0.0) for rule in rules}

    def read(self, rule: Rule, window_s: int):
        t = self.host.world.t
        signal = rule.signal
        if isinstance(signal, HttpCheck):
            return self.probe_bounded(signal)
        if not isinstance(signal, PromQuery):
            return SourceError("not simulated")
        if t < self.outage_until:
            return SourceError("cannot reach Prometheus at http://prometheus.sim: ConnectionRefusedError")
        query = render_query(signal.query, window_s)
        found = _RANGE.search(query)
        seconds = float(found.group(1)) if found else 60.0
        scrapes = self.host.scrapes
        if "app_requests_total" in query:
            value = scrapes.error_ratio(t, seconds)
        elif query.startswith("up"):
            value = scrapes.up(t)
        elif "app_latency" in query:
            value = scrapes.latency(t, seconds)
        else:
            return SourceError(f"the simulation does not answer {query}")
        return [] if value is None else [Sample({"instance": self.host.name}, value)]

    def probe_bounded(self, check: HttpCheck) -> ProbeResult:
        ok, detail = self.host.app.probe_at(self.host.world.t)
        if ok:
            return ProbeResult(True, detail, 200, 0.01)
        return ProbeResult(False, detail, 503 if "503" in detail else None, 0.01)

    def keep_host_counters(self, history: dict[str, list]) -> None:
        pass

    def close(self) -> None:
        pass


@dataclass
class Inbox:
    """The Notifier protocol: what a human receives, at once, with the true time."""

    host: SimHost

    def send(self, message) -> None:
        self.host.messages.append((self.host.world.t, message))

    def restore_undelivered(self, events) -> int:
        return 0

    def retry_undelivered(self) -> int:
        return 0

    def undelivered_by_target(self) -> dict[str, int]:
        return {}

    def expect_pictures(self) -> None:
        """No pictures in the simulated world: messages are read by invariants, not people."""


@dataclass
class TickRecord:
    """What the world saw of one tick, for the invariants."""

    start: float
    end: float = 0.0
    crashed: bool = False
    faults: int = 0  # injected backend failures it met
    lock_held: bool = False  # the deploy tool held the deploy lock in it (or a scrape before)
    tool_lock: bool = False  # the deploy tool held the deploy lock when the tick began
    link_moved_by_tool: bool = False  # a deploy landed while it ran
    source_outage: bool = False
    current_after: str | None = None  # state.current as the tick ended (what the watcher saw)
    journal_from: int = 0  # index into host.journal of its first line
    journal_to: int = 0
    report: Any = None


@dataclass
class LinkChange:
    at: float
    release: str
    by: str  # "tool" | "watcher" | "setup"
    lock: bool = False  # the deploy tool held the deploy lock


@dataclass
class Request:
    """A human's request as the CLI made it."""

    id: str | None
    command: str
    args: dict
    at: float
    applied_alone: bool = False
    result: str | None = None


class SimHost:
    def __init__(self, world: World, index: int, root: Path):
        self.world = world
        self.index = index
        self.name = f"web-{index + 1}"
        self.root = root
        self.releases_dir = root / "releases"
        self.current_link = root / "current"
        self.state_dir = root / "state"
        self.lock_path = root / "deploy.lock"
        self.config_path = root / "watcher.yaml"
        setup = world.setup
        self.clock = HostClock(world, offset=setup.skew(index), mono_origin=5000.0 + 777.0 * index)
        self.app = App(dict(setup.releases))
        self.scrapes = Scrapes(self.app, setup.scrape, phase=world.t0 + 0.37 * (index + 1) % setup.scrape)
        self.releases_dir.mkdir(parents=True)
        self.lock_path.touch()
        self.write_config()
        self.config = load_config(self.config_path, environ={})
        self.backend = SimBackend(self)
        self.reader = SimReader(self)
        self.inbox = Inbox(self)
        self.watcher: Watcher | None = None
        self.alive = False
        # the world's record of this host, for the invariants
        self.messages: list[tuple[float, Any]] = []
        self.journal: list[dict] = []
        self._journal_offset = 0
        self._stamps: list[float] = []  # the true time of each journal line written, in order
        self.links: list[LinkChange] = []
        self.ticks: list[TickRecord] = []
        self.requests: list[Request] = []
        self.crashes: list[float] = []
        self.saves: list[float] = []  # when the service's state.json writes succeeded
        self.saved_currents: list[tuple] = []  # (time, state.current) of every save, service's or CLI's
        self.deploys: list[tuple] = []  # (time, release, lock, release before, journal index) by the deploy tool
        self.loaded: list = []  # (time, state) each start loaded and reconciled
        self.starts: list[float] = []
        self.tool_lock_fd: int | None = None
        self.tool_lock_since: float | None = None
        self.lock_spans: list[list[float]] = []  # [start, end] the deploy tool held the lock
        self.tick_record: TickRecord | None = None
        self.mid_tick: list = []  # deploys that land during the next tick's reads
        self.crash_at: int | str | None = None  # die at this step (its number in a tick, or its name)
        self.crash_ticks_left = 0
        self.steps = 0
        self.next_tick: float | None = None
        self.life = 0  # which start of the service a scheduled tick belongs to
        self.link = None  # the FleetLink of the running process (fleet.py drives it)

    # -- files ----------------------------------------------------------------------------------

    def write_config(self, mode: str | None = None) -> None:
        s = self.world.setup
        rules = s.rules_yaml()
        (self.root / "rules.yaml").write_text(rules)
        cfg: dict[str, Any] = {
            "service": "shop", "host": self.name, "interval": f"{s.interval:g}s",
            "prometheus": {"url": "http://prometheus.sim:9090", "timeout": "2s", "scrape_interval": f"{s.scrape:g}s"},
            "rules": ["rules.yaml"], "watch_window": f"{s.watch_window:g}s", "max_window": f"{s.max_window:g}s",
            "mode": mode or s.mode,
            "backend": {"type": "symlink", "releases": str(self.releases_dir), "current": str(self.current_link),
                        "restart": ["sim-restart"]},
            "verify": {"url": HEALTH_URL, "attempts": s.verify_attempts, "every": f"{s.verify_every:g}s"},
            "safety": {"cooldown": f"{s.cooldown:g}s", "max_auto_rollbacks": s.max_auto_rollbacks},
            "deploy_lock": str(self.lock_path), "lock_timeout": f"{s.lock_timeout:g}s",
            "state_dir": str(self.state_dir), "telemetry": False,
        }
        if s.fleet:
            cfg["fleet"] = {"etcd": ["http://etcd.sim:2379"], "name": "shop", "host": self.name,
                            "lease": f"{s.lease:g}s", "known_good_hosts": s.known_good_hosts}
        self.config_path.write_text(json.dumps(cfg, indent=1))

    def read_journal(self) -> list[dict]:
        """The journal lines written since the last call (by the service or the CLI)."""
        path = self.state_dir / "journal.jsonl"
        try:
            with open(path, "rb") as fh:
                fh.seek(self._journal_offset)
                data = fh.read()
        except FileNotFoundError:
            return []
        end = data.rfind(b"\n") + 1
        self._journal_offset += end
        new = [json.loads(line) for line in data[:end].splitlines() if line.strip()]
        for e in new:
            e["_t"] = self._stamps.pop(0) if self._stamps else e["time"] - self.clock.offset  # true time
        self.journal.extend(new)
        return new

    # -- the world's hooks ----------------------------------------------------------------------

    def step(self, what: str) -> None:
        """One step of the watcher's process: it dies here if a crash is armed for this one."""
        if self.watcher is None or not self.alive:
            return
        self.steps += 1
        at = self.crash_at
        if at is not None and (what.startswith(at) if isinstance(at, str) else self.steps >= at):
            self.crash_at = None
            self.world.note(self, f"the watcher dies at {what!r}")
            raise SimCrash(what)

    def fault_used(self, kind: str) -> None:
        if self.tick_record is not None:
            self.tick_record.faults += 1

    def link_moved(self, release: str, by: str, lock: bool = False) -> None:
        self.links.append(LinkChange(self.world.t, release, by, lock))
        if by == "tool" and self.tick_record is not None:
            self.tick_record.link_moved_by_tool = True

    def during_reads(self) -> None:
        """A deploy that lands between this tick's read of `current` and its probes."""
        pending, self.mid_tick = self.mid_tick, []
        for deploy in pending:
            self.world.tool.switch(self, deploy)

    def sleep(self, seconds: float) -> None:
        """The watcher's sleep (between verification attempts): the world goes on meanwhile."""
        self.step("sleep")
        self.world.run_until(self.world.t + seconds, busy=self)

    def crash_downtime(self, since: float) -> float:
        """Seconds the service was down (crashed, not yet started again) since `since`."""
        total = 0.0
        for crashed in self.crashes:
            if crashed >= since:
                started = next((t for t in self.starts if t >= crashed), self.world.t)
                total += started - crashed
        return total

    def stamp(self) -> None:
        self._stamps.append(self.world.t)

    def saved(self, state) -> None:
        self.saves.append(self.world.t)
        self.saved_currents.append((self.world.t, state.current))

    def saved_by_cli(self, state) -> None:
        self.saved_currents.append((self.world.t, state.current))

    def link_target(self) -> str | None:
        try:
            return os.readlink(self.current_link).rstrip("/").rsplit("/", 1)[-1]
        except OSError:
            return None

    # -- the watcher's process ------------------------------------------------------------------

    def new_watcher(self, store: StateStore) -> Watcher:
        w = Watcher(self.config, self.backend, self.reader, self.inbox, store, clock=self.clock.wall,
                    sleep=self.sleep, monotonic=self.clock.mono)
        if self.config.fleet is not None:
            w.fleet = self.world.fleet.coordinator(self, w)
        return w

    def start(self) -> None:
        """Start the service from what is on disk (`rollback-watcher run`)."""
        self.config = load_config(self.config_path, environ={})
        self.steps = 0
        self.watcher = self.new_watcher(SimStore(self.state_dir, self.clock.wall, self.step, self.saved, self.stamp))
        self.alive = True
        self.life += 1
        self.starts.append(self.world.t)
        try:
            self.watcher.start()
            self.loaded.append((self.world.t, copy.deepcopy(self.watcher.state)))
        except SimCrash:
            self.died()
            return
        except WatcherError as exc:
            # The service would exit (and systemd restart it): the world restarts it later.
            self.world.note(self, f"start failed: {exc}")
            self.died(restart=True)
            return
        self.world.schedule_tick(self, self.world.t + self.world.setup.interval)

    def died(self, restart: bool = True) -> None:
        self.alive = False
        self.watcher = None
        self.crashes.append(self.world.t)
        self.world.fleet.process_died(self)
        self.world.cli_notices_death(self)
        if restart:
            self.world.at(self.world.t + self.world.restart_delay(self), self.start, f"{self.name} restarts")

    def tick(self, life: int) -> None:
        # One loop per process, one tick at a time: a tick scheduled by a process that has died
        # since is not the new one's (it has its own), and the daemon never starts a tick while
        # one is verifying a rollback in its sleeps.
        if not self.alive or self.watcher is None or life != self.life or self.tick_record is not None:
            return
        rec = self.tick_record = TickRecord(self.world.t, journal_from=len(self.journal))
        rec.lock_held = rec.tool_lock = self.tool_lock_fd is not None
        rec.source_outage = self.world.t < self.reader.outage_until
        self.steps = 0
        if self.crash_at is not None:
            self.crash_ticks_left -= 1
            if self.crash_ticks_left < 0:
                self.crash_at = None
        try:
            rec.report = self.watcher.tick()
        except SimCrash:
            rec.crashed = True
        finally:
            self.tick_record = None
        rec.end = self.world.t
        # Held, or let go less than a scrape interval before the tick (from the first tick that
        # found it free): the watcher counts it as held until Prometheus has scraped once after
        # it (window.lock_settling).
        settle = self.world.setup.scrape + self.world.setup.interval
        rec.lock_held = rec.lock_held or any(b > rec.start - settle and a <= rec.end for a, b in self.lock_spans)
        # A service that saved "a deploy held the lock" and started again later cannot know when
        # it was let go: it waits one settle from its start.
        if self.starts and rec.start - self.starts[-1] <= settle and self.watcher is not None \
                and self.watcher.state.lock_let_go_at is not None:
            rec.lock_held = True
        if not rec.crashed and self.watcher is not None:
            rec.current_after = self.watcher.state.current
        self.read_journal()
        rec.journal_to = len(self.journal)
        self.ticks.append(rec)
        if rec.crashed:
            self.died()
        else:
            self.world.fleet.after_tick(self)
            interval = self.config.interval
            nxt = (self.next_tick or rec.start) + interval
            self.world.schedule_tick(self, max(nxt, self.world.t))
        self.world.after_tick(self, rec)

    def reload(self, mode: str | None = None) -> None:
        """SIGHUP: daemon.reload, with the simulated reader in place of a real one."""
        if not self.alive or self.watcher is None:
            return
        import watcher.service.daemon as daemon

        self.write_config(mode)
        # daemon.reload builds its reader with the name it imported: replaced there. (Replaced
        # in watcher.signals.reader, a reload read a Prometheus that is not there, on a clock
        # the world had stopped, and the history never ended.)
        real = daemon.build_reader
        daemon.build_reader = lambda cfg: self.reader
        try:
            daemon.reload(self.watcher)
        except SimCrash:
            self.died()
        finally:
            daemon.build_reader = real
        if self.watcher is not None:
            self.config = self.watcher.config
        self.read_journal()

    # -- the human ------------------------------------------------------------------------------

    def human(self, command: str, args: dict) -> None:
        """A human runs the CLI: through the running service's inbox, or alone when none runs."""
        args = {**args, "by": "sim-human"}
        if self.alive:
            store = SimStore(self.state_dir, self.clock.wall, on_save=self.saved_by_cli, stamp=self.stamp)
            request_id = store.submit_request(command, **args)
            self.requests.append(Request(request_id, command, args, self.world.t))
        else:
            req = Request(None, command, args, self.world.t, applied_alone=True)
            self.requests.append(req)
            req.result = self.cli_apply_alone(command, args)

    def cli_apply_alone(self, command: str, args: dict) -> str:
        """The CLI's own apply while no service runs (watcher/cli/human.py `_human_request`
        after it took the instance lock): a Watcher as `build_watcher(cfg, fleet=True)` wires it,
        on the host's clocks, then `Watcher.apply_alone`."""
        store = SimStore(self.state_dir, self.clock.wall, on_save=self.saved_by_cli, stamp=self.stamp)
        store.ensure_dir()
        w = Watcher(self.config, self.backend, self.reader, self.inbox, store, clock=self.clock.wall,
                    sleep=lambda s: self.world.run_until(self.world.t + s, busy=self), monotonic=self.clock.mono)
        if self.config.fleet is not None:
            w.fleet = self.world.fleet.coordinator(self, w, cli=True)
        try:
            result = w.apply_alone(command, args)
        except WatcherError as exc:
            result = f"refused: {exc}"
        self.read_journal()
        return result

    # -- the deploy tool's lock -----------------------------------------------------------------

    def take_lock(self) -> None:
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # never busy: the watcher holds it only inside a tick
        self.tool_lock_fd = fd
        self.lock_spans.append([self.world.t, float("inf")])

    def drop_lock(self) -> None:
        if self.tool_lock_fd is not None:
            os.close(self.tool_lock_fd)
            self.tool_lock_fd = None
            self.lock_spans[-1][1] = self.world.t

    def lock_held_at(self, t: float) -> bool:
        return any(a <= t < b for a, b in self.lock_spans)

    def close(self) -> None:
        self.drop_lock()


def make_release_dir(host: SimHost, release: str) -> None:
    path = host.releases_dir / release
    if not path.exists():
        path.mkdir()
        (path / "app.py").write_text(f"RELEASE = {release!r}\n")
        wall = host.clock.wall()
        os.utime(path, (wall, wall))


def point_current(host: SimHost, release: str) -> None:
    """What a deploy script does to `current` (Capistrano's way: a new link renamed over)."""
    make_release_dir(host, release)
    tmp = host.current_link.with_name(".current.tool.tmp")
    if tmp.is_symlink():
        tmp.unlink()
    os.symlink(host.releases_dir / release, tmp)
    os.replace(tmp, host.current_link)


