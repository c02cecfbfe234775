"""The ground truth of a simulated host: what each release really does, what the process behind
`current` really is at every moment, and what a Prometheus scraping it would hold.

Nothing here knows the watcher. A `Profile` is a release's behaviour by age (seconds since its
process came up); an `App` is the process behind `current` on one host, restarted whenever the
link moves (by the deploy tool, by the watcher's switch); `Scrapes` is that host's Prometheus:
samples every `scrape` seconds of the app's counters, from which the simulated PromQL answers.
`classify` says, for one rule of the simulated table, whether a profile is healthy, bad (from
which age, with which detection lag) or ambiguous: the invariants (invariants.py) judge the
watcher's decisions against that.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

INF = float("inf")


@dataclass(frozen=True)
class Profile:
    """What one release does once its process is up, by age `a` (seconds since it came up)."""

    error: float = 0.01  # share of failed requests, steady state
    burst_s: float = 0.0  # warm-up: `burst_error` for the first burst_s seconds
    burst_error: float = 0.0
    flap_on_s: float = 0.0  # flapping: `flap_error` for on_s, then `error` for off_s, repeating
    flap_off_s: float = 0.0
    flap_error: float = 0.0
    bad_after_s: float | None = None  # from this age on: `bad_error`, `bad_probe`, `bad_latency`
    bad_error: float | None = None
    bad_probe: bool = False
    bad_latency: float | None = None
    crashes: bool = False  # never comes up: connect errors, no samples
    start_s: float = 1.0  # from a (re)start to serving, when nobody says otherwise
    latency: float = 0.05
    traffic: float = 20.0  # requests per second; 0: nobody calls it (no request series)

    def error_at(self, a: float) -> float:
        if self.bad_after_s is not None and a >= self.bad_after_s and self.bad_error is not None:
            return self.bad_error
        if a < self.burst_s:
            return self.burst_error
        if self.flap_on_s > 0:
            period = self.flap_on_s + self.flap_off_s
            return self.flap_error if (a % period) < self.flap_on_s else self.error
        return self.error

    def probe_ok_at(self, a: float) -> bool:
        return not (self.bad_probe and self.bad_after_s is not None and a >= self.bad_after_s)

    def latency_at(self, a: float) -> float:
        if self.bad_latency is not None and self.bad_after_s is not None and a >= self.bad_after_s:
            return self.bad_latency
        return self.latency

    @property
    def mean_error(self) -> float:
        if self.flap_on_s > 0:
            period = self.flap_on_s + self.flap_off_s
            return (self.flap_error * self.flap_on_s + self.error * self.flap_off_s) / period
        return self.error

    def describe(self) -> str:
        parts = []
        if self.crashes:
            return "crashes at start"
        parts.append(f"{self.error:.1%} errors")
        if self.burst_s:
            parts.append(f"warm-up {self.burst_error:.0%} for {self.burst_s:g}s")
        if self.flap_on_s:
            parts.append(f"flapping {self.flap_error:.0%} {self.flap_on_s:g}s / {self.error:.0%} {self.flap_off_s:g}s")
        if self.bad_after_s is not None:
            what = []
            if self.bad_error is not None:
                what.append(f"{self.bad_error:.0%} errors")
            if self.bad_probe:
                what.append("/health 503")
            if self.bad_latency is not None:
                what.append(f"p95 {self.bad_latency:g}s")
            parts.append(f"after {self.bad_after_s:g}s: {', '.join(what)}")
        if self.traffic == 0:
            parts.append("no traffic")
        return ", ".join(parts)


HEALTHY = Profile()


# ---------------------------------------------------------------------------------------------
# The process behind `current`


@dataclass
class Segment:
    """One process of the app: started at `start` (the link moved), serving from `ready`
    (INF: it never comes up), until `end`."""

    release: str
    start: float
    ready: float
    end: float = INF
    pid: int = 0

    def up_at(self, t: float) -> bool:
        return self.ready <= t < self.end


@dataclass
class Outage:
    """Something outside the release (a database down): every release on the host fails
    `error` of its requests (and /health, with `probes`) from `start` to `end`."""

    start: float
    end: float
    error: float = 0.5
    probes: bool = False

    def active(self, t: float) -> bool:
        return self.start <= t < self.end


@dataclass
class App:
    """The process behind `current` on one host. It follows the link: whoever moves the link
    restarts it (`restart`), and it serves `down_s` later (never, for a release that crashes)."""

    profiles: dict[str, Profile]
    segments: list[Segment] = field(default_factory=list)
    outages: list[Outage] = field(default_factory=list)
    _pids: int = 0

    def restart(self, release: str, t: float, down_s: float | None = None) -> None:
        profile = self.profiles.get(release, HEALTHY)
        if self.segments and self.segments[-1].end == INF:
            self.segments[-1].end = t
        self._pids += 1
        ready = INF if profile.crashes else t + (profile.start_s if down_s is None else down_s)
        self.segments.append(Segment(release, t, ready, pid=self._pids))

    def segment_at(self, t: float) -> Segment | None:
        for seg in reversed(self.segments):
            if seg.start <= t:
                return seg if t < seg.end else None
        return None

    def serving(self, t: float) -> tuple[Segment | None, float]:
        """The process serving at `t` and its age, or (None, 0) when nothing serves."""
        seg = self.segment_at(t)
        if seg is None or not seg.up_at(t):
            return None, 0.0
        return seg, t - seg.ready

    def outage_at(self, t: float) -> Outage | None:
        """Every outage active at `t` at once: the worst error share, /health failing if any
        of them fails it (one host's own outage must not hide an outage of every host: sim seed
        10000356)."""
        active = [o for o in self.outages if o.active(t)]
        if len(active) <= 1:
            return active[0] if active else None
        return Outage(max(o.start for o in active), min(o.end for o in active), max(o.error for o in active),
                      any(o.probes for o in active))

    def error_at(self, t: float) -> tuple[float, float] | None:
        """(requests per second, error share) at `t`, or None when nothing serves."""
        seg, age = self.serving(t)
        if seg is None:
            return None
        profile = self.profiles.get(seg.release, HEALTHY)
        error = profile.error_at(age)
        outage = self.outage_at(t)
        if outage is not None:
            error = max(error, outage.error)
        return profile.traffic, error

    def probe_at(self, t: float) -> tuple[bool, str]:
        seg, age = self.serving(t)
        if seg is None:
            return False, "connect error"
        profile = self.profiles.get(seg.release, HEALTHY)
        outage = self.outage_at(t)
        if not profile.probe_ok_at(age) or (outage is not None and outage.probes):
            return False, "status 503"
        return True, "200 in 10 ms"


# ---------------------------------------------------------------------------------------------
# The host's Prometheus


@dataclass
class Sample:
    t: float
    pid: int  # 0: the scrape failed (up 0)
    requests: float = 0.0  # counters since the process started
    errors: float = 0.0
    latency: float = 0.0
    ever_requested: bool = False
    ever_failed: bool = False


class Scrapes:
    """Samples of the app every `scrape` seconds (at `phase` + k x scrape), computed lazily as
    the simulated time reaches them; rate() over a range uses the first and last sample inside
    it, with counter resets across processes, as Prometheus' does (the extrapolation cancels in
    a ratio of two rates over the same samples)."""

    def __init__(self, app: App, scrape: float, phase: float):
        self.app = app
        self.scrape = scrape
        self.phase = phase
        self.samples: list[Sample] = []
        self._next = phase

    def until(self, t: float) -> None:
        while self._next <= t:
            self.samples.append(self._take(self._next))
            self._next += self.scrape

    def _take(self, t: float) -> Sample:
        seg, _ = self.app.serving(t)
        if seg is None:
            return Sample(t, 0)
        prev = next((s for s in reversed(self.samples) if s.pid), None)
        if prev is not None and prev.pid == seg.pid:
            start, req, err, requested, failed = prev.t, prev.requests, prev.errors, prev.ever_requested, prev.ever_failed
        else:
            start, req, err, requested, failed = seg.ready, 0.0, 0.0, False, False
        step = min(0.25, max(self.scrape / 8, 0.05))
        x = start
        while x < t - 1e-9:
            dt = min(step, t - x)
            answer = self.app.error_at(x + dt / 2)
            if answer is not None:
                rps, share = answer
                req += rps * dt
                err += rps * share * dt
                requested = requested or rps > 0
                failed = failed or rps * share > 0
            x += dt
        profile = self.app.profiles.get(seg.release, HEALTHY)
        return Sample(t, seg.pid, req, err, profile.latency_at(t - seg.ready), requested, failed)

    def in_range(self, t: float, seconds: float) -> list[Sample]:
        self.until(t)
        lo = t - seconds
        out = []
        for s in reversed(self.samples):
            if s.t <= lo:
                break
            if s.t <= t:
                out.append(s)
        out.reverse()
        return out

    def error_ratio(self, t: float, seconds: float) -> float | None:
        """sum(rate(errors[R])) / sum(rate(requests[R])) at t: None for an empty result (fewer
        than two samples, or no request series at all), NaN for 0/0."""
        samples = [s for s in self.in_range(t, seconds) if s.pid]
        if len(samples) < 2 or not samples[-1].ever_requested:
            return None
        if not any(s.ever_failed for s in samples):
            # A healthy app has no 5xx series: the numerator is empty, so is the ratio.
            return None
        req = err = 0.0
        for a, b in zip(samples, samples[1:], strict=False):
            if a.pid == b.pid:
                req += b.requests - a.requests
                err += b.errors - a.errors
            else:
                req += b.requests
                err += b.errors
        return err / req if req > 0 else math.nan

    def up(self, t: float) -> float | None:
        samples = self.in_range(t, 300.0)
        if not samples:
            return None
        return 1.0 if samples[-1].pid else 0.0

    def latency(self, t: float, seconds: float) -> float | None:
        samples = [s for s in self.in_range(t, seconds) if s.pid]
        if len(samples) < 2:
            return None
        return max(s.latency for s in samples[1:])


# ---------------------------------------------------------------------------------------------
# Which profiles a rule should judge bad


@dataclass(frozen=True)
class Judgement:
    """A profile against one rule: healthy (a rollback on it is false), bad from age
    `breach_from` (its signal shows it at most `lag` seconds later, before `for` and the tick's
    own alignment), or neither."""

    healthy: bool
    breach_from: float | None = None
    lag: float = 0.0

    @property
    def bad(self) -> bool:
        return self.breach_from is not None


AMBIGUOUS = Judgement(False)


def trailing_of(for_s: float, scrape: float, interval: float) -> float:
    """The trailing window rules.trailing_seconds gives a `[$window]` rule without `trailing:`."""
    return math.ceil(max(3 * scrape, interval, min(for_s / 3, 60.0)))


def judge_errors(p: Profile, threshold: float, for_s: float, scrape: float, interval: float,
                 max_window: float) -> Judgement:
    """The 5xx-ratio rule (`[$window]`, above `threshold`, `for`). Clear margins only: a
    profile near the threshold is neither healthy nor bad."""
    if p.crashes or p.traffic == 0:
        return Judgement(True)  # this rule cannot see it; the probe and `up` rules do
    trailing = trailing_of(for_s, scrape, interval)
    late = None
    if p.bad_after_s is not None and p.bad_error is not None:
        if p.bad_error >= 1.5 * threshold:
            late = Judgement(False, p.bad_after_s, max_window * threshold / p.bad_error + trailing + 3 * scrape)
        elif p.bad_error > 0.6 * threshold:
            return AMBIGUOUS
    steady = p.mean_error
    if p.flap_on_s > 0:
        period = p.flap_on_s + p.flap_off_s
        # Bad on average, and the rule's longest window (max_window) holds two periods, so it
        # sees that average; a shorter one sees on and off in turn, as rate() over it would.
        # Seen once `[$window]` breaches (a period and three scrapes) and the trailing window
        # too, or, when every tick reads the trailing window in the same "off" phase (ticks in
        # step with the flap), once the gate has held for longer than `[$window]` spans and
        # a tick more (evaluate.both_windows; sim seed 20002129).
        if steady >= 1.3 * threshold and p.flap_error > 1.5 * threshold and max_window >= 2 * period:
            return Judgement(False, 0.0, period + max(trailing, max_window + interval) + 3 * scrape)
        if steady > 0.6 * threshold or p.flap_error > 0.9 * threshold:
            return AMBIGUOUS if late is None else late
    elif steady >= 1.5 * threshold:
        return Judgement(False, 0.0, trailing + 3 * scrape)
    elif steady > 0.6 * threshold:
        return AMBIGUOUS
    if p.burst_s > 0 and p.burst_error > 0.6 * threshold:
        # A warm-up burst must end before the trailing window of the moment `for` holds.
        if not p.burst_s + trailing <= for_s:
            return AMBIGUOUS
    return late if late is not None else Judgement(True)


def judge_probe(p: Profile, failures: int, interval: float) -> Judgement:
    if p.crashes:
        return Judgement(False, 0.0, 0.0)
    if p.bad_probe and p.bad_after_s is not None:
        return Judgement(False, p.bad_after_s, 0.0)
    return Judgement(True)


def judge_up(p: Profile, scrape: float, interval: float) -> Judgement:
    if p.crashes:
        return Judgement(False, 0.0, scrape)
    return Judgement(True)


def judge_latency(p: Profile, threshold: float, scrape: float, interval: float, max_window: float) -> Judgement:
    if p.crashes or p.traffic == 0:
        return Judgement(True)
    if p.latency > 0.6 * threshold:
        return AMBIGUOUS
    if p.bad_latency is not None and p.bad_after_s is not None:
        if p.bad_latency >= 1.5 * threshold:
            return Judgement(False, p.bad_after_s, 3 * scrape)
        if p.bad_latency > 0.6 * threshold:
            return AMBIGUOUS
    return Judgement(True)
