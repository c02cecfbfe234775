"""Which release is current, tick after tick, and what a deploy resets. The service's `release`
and `baselines` steps (watcher/service/tick.py) and its `decide` step's listing of releases:

    BackendReads.current    ask the backend which release is current; a change since the last
                            tick is a deploy (the caller's `on_deploy`). When it cannot tell: the
                            last release seen, and why, said once: at once for a broken
                            `current`, after error_limit ticks in a row for a read that may pass
    BackendReads.listed     the releases to choose a rollback target from, newest first
                            (decide.order_releases), only when a rollback rule fires
    open_window             the state of a deploy: its record, its watch window, the previous
                            release's rule states and baselines forgotten
    restored                the state of a rollback's switch: no window, the same forgetting
    Baselines.capture       each baseline rule's pre-deploy median, once per deploy
    prune                   a backend with `keep:` deletes old releases (after a window
                            survived, after a verified rollback), never a known-good one

Nothing here sends a message directly: journal lines and messages go through the Recorder
(recorder.Recorder, the Watcher), which sends the tick's messages at its end.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from watcher.backends.base import Backend, Prunable
from watcher.base.errors import BrokenCurrent, SourceError, WatcherError
from watcher.config.schema import WatcherConfig
from watcher.core import evidence, messages
from watcher.core.decide import choose_target, order_releases
from watcher.core.model import Mark
from watcher.core.rules import Finding, PromQuery, RuleState, render_query
from watcher.service.recorder import Recorder
from watcher.store.state import State

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Listing:
    """The releases the decider may choose from, or why the backend could not list them."""

    releases: tuple[str, ...] = ()
    problem: str | None = None
    failures: int = 0
    broken: bool = False


@dataclass
class BackendReads:
    """The backend's reads of this host, tick after tick. A read that failed is counted in a
    row: one failure is a wait, `error_limit` of them a page."""

    out: Recorder
    current_failures: int = 0
    list_failures: int = 0
    current_error: tuple[str, bool] | None = None  # this tick: (reason, broken)

    def current(self, backend: Backend | None, state: State, error_limit: int, now: float,
                on_deploy: Callable[..., None]) -> str | None:
        """The current release; a change since the last tick is a deploy. When the backend
        cannot tell, the last release seen (its rules are still evaluated; the decider never
        acts on it); None when there is none yet."""
        self.current_error = None
        if backend is None:
            return state.current
        try:
            current = backend.current().id
        except WatcherError as exc:
            self._current_unreadable(state, exc, error_limit)
            return state.current
        self.current_failures = 0
        if state.current_problem is not None:
            state.current_problem = None
            self.out.journal("current_readable", release=current)
            log.info("current is readable again release=%s", current)
            self.out.notify(messages.current_readable(self.out.ctx, current))
        if current != state.current:
            on_deploy(current, now, first_start=state.current is None)
        return current

    def moved(self, backend: Backend | None, state: State) -> str | None:
        """The release current now if `current` changed since this tick read it: a deploy
        landed during the tick's reads, so they straddle two releases. A backend that cannot
        tell now is not a move (the next tick's read says so)."""
        if backend is None or state.current is None:
            return None
        try:
            landed = backend.current().id
        except WatcherError:
            return None
        return landed if landed != state.current else None

    def _current_unreadable(self, state: State, exc: WatcherError, error_limit: int) -> None:
        """Said once: at once for a broken `current` (BrokenCurrent), after error_limit ticks in
        a row for a read that may pass (docker restarting, a slow command)."""
        self.current_failures += 1
        broken = isinstance(exc, BrokenCurrent)
        reason = f"the backend cannot say which release is current: {exc}"
        self.current_error = (reason, broken)
        if state.current_problem is not None:
            return
        if broken or self.current_failures >= error_limit:
            state.current_problem = reason
            self.out.journal("current_unreadable", reason=reason, broken=broken, failures=self.current_failures,
                             release=state.current)
            log.error("cannot tell which release is current, not acting reason=%s", exc)
            self.out.notify(messages.current_unreadable(self.out.ctx, state.current, reason))
        elif self.current_failures == 1:
            self.out.journal("backend_error", reason=str(exc))
            log.warning("backend cannot say which release is current, trying again reason=%s", exc)

    def listed(self, backend: Backend | None, state: State, firing: Sequence[Finding]) -> Listing:
        """What the decider needs to know of the backend this tick: this tick's unreadable
        `current`, or the releases to choose a target from."""
        if self.current_error is not None:
            (problem, broken), failures = self.current_error, self.current_failures
            return Listing(problem=problem, failures=failures, broken=broken)
        # Listing releases reads a directory or runs a command: only worth it when acting may follow.
        if backend is None or not any(f.action == "rollback" for f in firing):
            return Listing()
        try:
            listed = backend.releases()
        except WatcherError as exc:
            self.list_failures += 1
            log.warning("backend cannot list releases failures=%d reason=%s", self.list_failures, exc)
            return Listing(problem=f"the backend cannot list its releases: {exc}", failures=self.list_failures)
        self.list_failures = 0
        return Listing(tuple(r.id for r, _ in order_releases(listed, state.releases)))


def open_window(state: State, release: str, at: float, watch_window: float, first_start: bool = False) -> None:
    """A new current release: open its watch window (unless it is known-good already) and
    forget the previous release's rule states and baselines, a rollback being confirmed (the
    release it restored is no longer current: its rules must not judge the new one) and a wait
    for the deploy lock (it held the previous release's window: ended on the new one, it moved
    its end by the whole wait). Its `deployed_at` is the timeline that orders releases
    (decide.order_releases). A deploy (not a first start) was seen after it happened: the
    scrapes just before `at` may be its restart's (State.deploy_seen_late)."""
    rec = state.release(release, at)
    rec.deployed_at = at
    rec.window_ends = at + watch_window
    evidence.reset(rec)  # a release deployed again is judged on its new window alone
    state.current = release
    state.deployed_at = at
    state.changed_at = at
    state.deploy_seen_late = not first_start
    state.window_ends = rec.window_ends if rec.mark != Mark.GOOD else None
    state.baselines = {}
    state.rules = {}
    state.confirming = None
    state.lock_wait = None


def restored(state: State, release: str, at: float) -> None:
    """Back on a known-good release by a rollback's switch: not a deploy (no watch window),
    fresh rule states and baselines, no wait of the release left; `[$window]` starts at the
    switch, as at a deploy.

    A baseline rule has no baseline here by design (a baseline is captured at a deploy) and
    cannot fire: that is no news, so the fresh states count it as said. Without this, the switch
    and the verification each reset the rule states and "no baseline: cannot fire" was said
    again after every rollback."""
    state.current = release
    state.deployed_at = None
    state.changed_at = at
    state.deploy_seen_late = False  # the watcher made this switch, and its probes passed
    state.window_ends = None
    state.rules = {name: RuleState(no_baseline_reported=True) for name in state.rules}
    state.baselines = {}
    state.lock_wait = None


def rollback_target(backend: Backend | None, state: State, release: str) -> tuple[str | None, str]:
    """Where a rollback of `release` would go now, as the decider chooses it (decide.choose_target
    over the backend's releases in the watcher's order), or why nowhere: the deploy message says
    so. A backend that cannot list its releases is said as the reason, never guessed around."""
    if not any(r.mark == Mark.GOOD for rid, r in state.releases.items() if rid != release):
        return None, "no release is known-good yet"
    if backend is None:
        return None, "no backend is configured"
    try:
        listed = backend.releases()
    except WatcherError as exc:
        return None, f"the backend cannot list its releases: {exc}"
    target, why = choose_target(release, [r.id for r, _ in order_releases(listed, state.releases)], state.releases)
    return target, "" if target else why


class BaselineSource(Protocol):
    """Where baselines are read (signals.PrometheusSource)."""

    def baseline(self, expr: str, end: float, window: float, step: float) -> float | None: ...


@dataclass
class Baselines:
    """The pre-deploy medians of the baseline rules. A failure is said once per deploy and rule
    (`reported`), since the rule cannot fire meanwhile."""

    out: Recorder
    reported: set[tuple[str | None, float, str]] = field(default_factory=set)  # release, deployed_at, rule

    def capture(self, config: WatcherConfig, source: BaselineSource | None, state: State,
                wall_offset: float = 0.0) -> None:
        """The median of each baseline rule's query over `baseline_window` before the deploy,
        kept in `state.baselines` once per deploy; retried on later ticks while Prometheus
        cannot answer."""
        if state.deployed_at is None or source is None:
            return
        for rule in config.rules:
            if not rule.needs_pre_deploy_data or rule.name in state.baselines or not isinstance(rule.signal, PromQuery):
                continue
            query = render_query(rule.signal.query, int(config.max_window))
            step_s = max(config.prometheus.scrape_interval, rule.baseline_window / 240)
            try:
                # deployed_at is steady time; Prometheus' samples carry wall time.
                value = source.baseline(query, state.deployed_at + wall_offset, rule.baseline_window, step_s)
            except SourceError as exc:
                key = (state.current, state.deployed_at, rule.name)
                if key not in self.reported:
                    self.reported.add(key)
                    log.error("baseline not captured, rule cannot fire until it is rule=%s reason=%s", rule.name, exc)
                    self.out.journal("baseline_error", rule=rule.name, release=state.current, reason=str(exc))
                continue
            state.baselines[rule.name] = value
            self.out.journal("baseline", rule=rule.name, release=state.current, value=value,
                             window=rule.baseline_window, end=state.deployed_at)


def prune(backend: Backend | None, state: State, protect: set[str], out: Recorder) -> None:
    """Let a backend with `keep:` delete old releases, in the watcher's release order: never a
    known-good one, never the current one, never the ones an incident is about."""
    if not isinstance(backend, Prunable):
        return
    protected = {rid for rid, rec in state.releases.items() if rec.mark == Mark.GOOD} | protect
    if state.current:
        protected.add(state.current)
    try:
        order = [r.id for r, _ in order_releases(backend.releases(), state.releases)]
        removed = backend.prune(protected, order)
    except (WatcherError, OSError) as exc:
        log.warning("prune failed reason=%s", exc)
        return
    if removed:
        out.journal("pruned", releases=removed)
