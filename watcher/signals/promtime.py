"""What the watcher learns about Prometheus' time (docs/design.md sections 4 and 10).

    ClockGuard              the watcher's wall clock against Prometheus' own: a watcher whose
                            clock is minutes off asks for samples that do not exist yet (or
                            any more), so every rule would read "no data", which `no_data: ok`
                            would call healthy. Skewed, the watcher is blind instead.
    learn_scrape_interval   the scrape interval of Prometheus' active targets, so that
                            `min_window` (3 scrapes) and the trailing window fit the Prometheus
                            really asked, not a `scrape_interval` typed (or defaulted) by hand.
    learn_at_start,         the service's use of both: the learned interval at start, the
    journal_skew            guard's news each tick, into the journal
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from watcher.base.durations import parse_duration
from watcher.base.errors import SourceError
from watcher.base.format import format_duration
from watcher.config.schema import WatcherConfig, with_scrape_interval

log = logging.getLogger(__name__)

CHECK_EVERY = 30.0  # seconds between two looks at Prometheus' clock while they agree
RECHECK_SKEWED = 5.0  # ... and while they do not, so that "recovered" comes soon after a fix
SKEW_FLOOR = 10.0  # seconds of skew always tolerated (NTP slop, a slow answer)


class PrometheusClock(Protocol):
    def server_time(self) -> float: ...

    def active_targets(self) -> list[dict[str, Any]]: ...


def skew_limit(scrape_interval: float) -> float:
    """A skew beyond a few scrape intervals (at least SKEW_FLOOR) makes the watcher blind."""
    return max(SKEW_FLOOR, 3 * scrape_interval)


@dataclass(frozen=True)
class SkewNews:
    """A change worth a journal line: the clocks started or stopped disagreeing."""

    skewed: bool
    skew: float
    limit: float
    reason: str


class ClockGuard:
    """Compares the wall clock with Prometheus' `time()` now and then (not every tick: one
    query every CHECK_EVERY seconds). A failed look changes nothing: the rules' own queries
    will fail as well and say so."""

    def __init__(self, source: PrometheusClock, scrape_interval: float, wall: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic):
        self.source = source
        self.limit = skew_limit(scrape_interval)
        self.wall = wall
        self.monotonic = monotonic
        self.skew: float | None = None  # watcher minus Prometheus, seconds; None: not known yet
        self._checked: float | None = None
        self._looking = False
        self._news: list[SkewNews] = []

    def set_scrape_interval(self, seconds: float) -> None:
        self.limit = skew_limit(seconds)

    @property
    def skewed(self) -> bool:
        return self.skew is not None and abs(self.skew) > self.limit

    def blind_reason(self, submit: Callable[[Callable[[], None]], object] | None = None) -> str | None:
        """Why PromQL cannot be trusted now (the clocks disagree), or None. With `submit` (a
        thread pool's), a due look runs in the background and counts from the next tick on: a
        slow or huge answer to `time()` must not hold the tick, whose reads are bounded."""
        every = RECHECK_SKEWED if self.skewed else CHECK_EVERY
        if not self._looking and (self._checked is None or self.monotonic() - self._checked >= every):
            self._checked = self.monotonic()
            if submit is None:
                self._look()
            else:
                self._looking = True
                submit(self._look)
        if not self.skewed:
            return None
        return self.describe()

    def describe(self) -> str:
        if self.skew is None:
            return "the clock against Prometheus' is not known"
        way = "ahead of" if self.skew > 0 else "behind"
        return (f"this host's clock is {format_duration(abs(self.skew))} {way} Prometheus' "
                f"(more than {format_duration(self.limit)}): its queries would ask for the wrong moment")

    def _look(self) -> None:
        try:
            before = self.wall()
            server = self.source.server_time()
            after = self.wall()
        except SourceError as exc:
            log.debug("cannot read Prometheus' clock reason=%s", exc)
            return
        finally:
            self._looking = False
        was = self.skewed
        self.skew = (before + after) / 2 - server
        if self.skewed != was:
            news = SkewNews(self.skewed, self.skew, self.limit, self.describe() if self.skewed else "the clocks agree")
            self._news.append(news)
            log.warning("clock skew against Prometheus skewed=%s seconds=%.1f", news.skewed, news.skew)

    def take_news(self) -> list[SkewNews]:
        news, self._news = self._news, []
        return news


# ---------------------------------------------------------------------------------------------
# The scrape interval


def learn_into(config: WatcherConfig, reader: object) -> tuple[WatcherConfig, LearnedInterval | None]:
    """At start: without `prometheus.scrape_interval` in the config, the interval learned from
    the reader's Prometheus goes into the config (and the reader's clock guard). `reader` is a
    reader.SignalReader or a test's stand-in: its source and guard are looked up by name."""

    source = getattr(reader, "prometheus", None)
    if source is None or config.prometheus.scrape_interval_set:
        return config, None
    learned = learn_scrape_interval(source)
    if learned is None:
        return config, None
    guard = getattr(reader, "clock_guard", None)
    if guard is not None:
        guard.set_scrape_interval(learned.seconds)
    if hasattr(reader, "scrape_interval"):
        reader.scrape_interval = learned.seconds  # judge rules start counting one interval after the deploy
    return with_scrape_interval(config, learned.seconds), learned


def learn_at_start(config: WatcherConfig, reader: object, journal: Callable[..., None]) -> WatcherConfig:
    """The config with the scrape interval learned at start (learn_into), journaled."""
    config, learned = learn_into(config, reader)
    if learned is not None:
        journal("scrape_interval_learned", seconds=learned.seconds, detail=learned.detail,
                min_window=config.min_window)
        log.info("scrape interval learned seconds=%s detail=%s", learned.seconds, learned.detail)
    return config


def journal_skew(reader: object, journal: Callable[..., None]) -> None:
    """What the reader's clock guard found since the last tick: skewed, or back in step."""
    guard = getattr(reader, "clock_guard", None)
    for news in guard.take_news() if guard is not None else ():
        journal("prometheus_skew", skewed=news.skewed, seconds=round(news.skew, 3), limit=news.limit,
                reason=news.reason)


def effective_scrape_interval(config: WatcherConfig, source: PrometheusClock | None) -> tuple[WatcherConfig, str]:
    """(config with the scrape interval in use, what `check --online` and `explain` say about
    it): the configured one, or the one learned from Prometheus when the config has none."""

    seconds = config.prometheus.scrape_interval
    if config.prometheus.scrape_interval_set:
        return config, f"scrape interval {format_duration(seconds)} (set in the config: prometheus.scrape_interval)"
    learned = learn_scrape_interval(source) if source is not None else None
    if learned is None:
        return config, (f"scrape interval {format_duration(seconds)} (the default: Prometheus' targets could not "
                        "be read; set prometheus.scrape_interval)")
    config = with_scrape_interval(config, learned.seconds)
    return config, (f"scrape interval {format_duration(learned.seconds)} ({learned.detail}); "
                    f"min_window {format_duration(config.min_window)}")


@dataclass(frozen=True)
class LearnedInterval:
    seconds: float
    detail: str  # "from Prometheus' targets: job demo 1s" / why nothing was learned


def learn_scrape_interval(source: PrometheusClock) -> LearnedInterval | None:
    """The longest scrape interval among Prometheus' active targets (the longest: a window of
    3 scrapes of the slowest job still holds two samples of every series), or None when
    Prometheus cannot say (Thanos/Mimir have no targets API). Raises nothing."""


    try:
        targets = source.active_targets()
    except SourceError as exc:
        log.info("scrape interval not learned reason=%s", exc)
        return None
    by_job: dict[str, float] = {}
    for target in targets:
        raw = target.get("scrapeInterval")
        job = str((target.get("labels") or {}).get("job") or target.get("scrapePool") or "?")
        try:
            seconds = parse_duration(raw)
        except (TypeError, ValueError):
            continue
        if seconds > 0:
            by_job[job] = max(by_job.get(job, 0.0), seconds)
    if not by_job:
        return None
    longest = max(by_job.values())
    jobs = ", ".join(f"{job} {format_duration(s)}" for job, s in sorted(by_job.items())[:5])
    more = f" and {len(by_job) - 5} more" if len(by_job) > 5 else ""
    return LearnedInterval(longest, f"learned from Prometheus' targets ({jobs}{more})")
