"""The sequential judge against held thresholds on the same simulated counter streams (issue 23).

    python bench/judge.py [--runs 10000] [--detect-runs 1000] [--horizon 600] [--seed 23]

One cell per request rate (0.2, 2, 50, 500 req/s), healthy error share (0.5%, 5%) and
regression at the deploy (none, 2x, 6x, 60x; capped at 100%). Each run is one stream: a minute
of the old release at the healthy share, the deploy, then `--horizon` seconds of the new one,
scraped and evaluated every second (the decision suite's pace). Three contestants read the
SAME stream:

    held 2m    the shipped rule: [$window] 5xx ratio > 10% for 2m (trailing window: 40 s)
    held 10s   the decision suite's: the same ratio > 10% for 10s (trailing window: 4 s)
    judge      judge: sequential, above 0.10, alpha 0.001, no warm-up (counting from one scrape
               after the deploy, as live)

The held rules go through the real watcher.core.rules.classify / step and watcher.core.evaluate's
both_windows (with the gate bound: a breach the trailing window has held for longer than
`[$window]` spans fires; at one tick a scrape no stream of this model reaches it, so
`check_gate` forces trailing reads to check that path); the judge through watcher.core.judge. A rollback in a cell whose new share is at or
below 10% is a false rollback (at least `--runs` runs: the judge's rate must stay at most
alpha); above 10% the figure is the share of runs detected within the horizon and the median
onset -> firing time.

The model, kept simple on purpose and the same for every contestant: requests arrive at a
constant rate (the demo app's synthetic load; at 0.2 req/s one request every 5 s, at a random
phase per run), each fails independently at the share; a `[W s]` range at a 1 s scrape holds W
samples, so W - 1 seconds of increments; `rate()` extrapolation cancels in the ratio; the 5xx
series exists from the start (a 0 in a window is a healthy value, not "no data").

Only the stdlib: each run's errors are drawn per second from a binomial table with
`bisect`, and every per-second pass (cumulative sums, window sums, comparisons) is a C-level
`map` over lists. The state machine is stepped only on the ticks where the long window breaches
and on the first tick after (a non-breaching tick of an inactive rule changes nothing in its
phase), and the judge only on the first tick its count reaches the least number of failures
that rejects at that total (precomputed with watcher.core.judge.rejects, which is monotone in the
failures: tests/core/test_judge.py).
"""

from __future__ import annotations

import argparse
import bisect
import math
import random
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from itertools import accumulate, compress, repeat
from operator import ge, sub
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from watcher.core.evaluate import both_windows, held_before_change  # noqa: E402
from watcher.core.judge import judge, rejects  # noqa: E402
from watcher.core.rules import (  # noqa: E402
    Observation,
    Phase,
    PromQuery,
    Rule,
    RuleState,
    Sample,
    classify,
    step,
    trailing_seconds,
)

RATES = (0.2, 2.0, 50.0, 500.0)
HEALTHY = (0.005, 0.05)
REGRESSIONS = (1, 2, 6, 60)
ABOVE = 0.10
ALPHA = 0.001
PRE = 60  # seconds of the old release before the deploy (the [$window] clamp reaches back)
# The judge starts counting one scrape after the deploy, at the sample of tick 1, as live
# (signals/counts.py: no request of the release before is counted).
START = PRE + 1
MIN_WINDOW, MAX_WINDOW = 3, 60  # the defaults at a 1 s scrape: 3 x scrape_interval, 1m
QUERY = 'sum(rate(http_requests_total{code=~"5.."}[$window])) / sum(rate(http_requests_total[$window]))'
HELD = {
    "held 2m": Rule("http-5xx-ratio", PromQuery(QUERY), "rollback", above=ABOVE, for_=120.0, value_unit="%"),
    "held 10s": Rule("http-5xx-ratio", PromQuery(QUERY), "rollback", above=ABOVE, for_=10.0, value_unit="%"),
}
CONTESTANTS = (*HELD, "judge")


@dataclass
class Cell:
    rate: float
    healthy: float
    regression: int

    @property
    def share(self) -> float:
        return min(1.0, self.healthy * self.regression)

    @property
    def false_rollback_cell(self) -> bool:
        return self.share <= ABOVE


def binomial_cdf(n: int, p: float) -> list[float]:
    """P(X <= j) for j = 0..n, the last forced above 1 so that bisect never runs past n."""
    if n == 0 or p <= 0.0:
        return [2.0]
    if p >= 1.0:
        return [0.0] * n + [2.0]
    cdf, acc = [], 0.0
    lp, lq = math.log(p), math.log1p(-p)
    for j in range(n + 1):
        acc += math.exp(math.lgamma(n + 1) - math.lgamma(j + 1) - math.lgamma(n - j + 1) + j * lp + (n - j) * lq)
        cdf.append(acc)
    cdf[-1] = 2.0
    return cdf


class Stream:
    """The deterministic part of one cell at one arrival phase: requests per second, the window
    bounds of every tick and the failure counts each contestant's condition needs."""

    def __init__(self, cell: Cell, horizon: int, phase: int):
        self.horizon = horizon
        n = PRE + horizon + 1  # ticks 0..PRE+horizon; the deploy is tick PRE; index i is tick PRE+1+i
        if cell.rate >= 1:
            totals = [int(cell.rate)] * n
        else:
            every = round(1 / cell.rate)
            totals = [1 if (k + phase) % every == 0 else 0 for k in range(n)]
        self.cum_total = list(accumulate(totals))
        tables = {(p, t): binomial_cdf(t, p) for p in {cell.healthy, cell.share} for t in set(totals)}
        shares = [cell.healthy] * (PRE + 1) + [cell.share] * horizon
        self.cdfs = [tables[p, t] for p, t in zip(shares, totals, strict=True)]
        self.ticks = range(PRE + 1, n)
        # The long window at tick PRE + t: its last W - 1 seconds of increments, W = clamp(t).
        self.long_start = [k - window(k - PRE) + 1 for k in self.ticks]
        self.long_need = self._need(self.long_start)
        # Each held rule's trailing window (none while it would not be shorter than [$window]).
        self.trail_start, self.trail_need = {}, {}
        for name, rule in HELD.items():
            starts = []
            for k in self.ticks:
                trail = trailing_seconds(rule, 1.0, window(k - PRE))
                starts.append(k if trail is None else k - trail + 1)
            self.trail_start[name] = starts
            # A trailing window with no request (NaN) does not clear the breach: need 0.
            self.trail_need[name] = [need if need < 10**9 else 0 for need in self._need(starts)]
        # The judge: the least failure count that rejects at each tick's total since the deploy.
        self.since_totals = [max(0, self.cum_total[k] - self.cum_total[START]) for k in self.ticks]
        least: dict[int, int] = {}
        self.judge_need = [least.setdefault(t, least_rejecting(t)) for t in self.since_totals]
        # Per tick index, where a streak of gated ticks beginning there fires (gate_opening).
        self.gate_opens = [gate_opening(a) for a in range(horizon)]

    def _need(self, starts: list[int]) -> list[int]:
        """Per tick, the least failures in the window for a ratio above 10% (an empty window,
        0/0, never breaches: a count no window reaches)."""
        totals = [self.cum_total[k] - self.cum_total[s] for k, s in zip(self.ticks, starts, strict=True)]
        return [int(t * ABOVE) + 1 if t > 0 else 10**9 for t in totals]

    def draw(self, rng: random.Random) -> list[int]:
        """One run's cumulative failures, tick by tick."""
        u = [rng.random() for _ in self.cdfs]
        return list(accumulate(map(bisect.bisect_right, self.cdfs, u)))

    def window_ratio(self, cum: list[int], k: int, start: int) -> float:
        total = self.cum_total[k] - self.cum_total[start]
        return (cum[k] - cum[start]) / total if total else math.nan

    def trailing_ratio(self, name: str, cum: list[int], i: int) -> float:
        """The value of a held rule's trailing window at tick index i."""
        return self.window_ratio(cum, self.ticks[i], self.trail_start[name][i])

    def trailing_flags(self, name: str, cum: list[int]) -> bytes:
        """Per tick, whether the trailing window lets the rule fire: it breaches, or it has no
        request (a NaN holds nothing back). C-level passes."""
        ticks = cum[PRE + 1:]
        trail = map(sub, ticks, map(cum.__getitem__, self.trail_start[name]))
        return bytes(map(ge, trail, self.trail_need[name]))


class AliasedStream(Stream):
    """A stream whose trailing windows read what `alias` forces, tick by tick: long runs of
    healthy reads while `[$window]` breaches, as when ticks alias with a flapping release
    (commit 4d7450c: ticks every 15 s, scrapes every 5 s). At one tick a scrape every trailing
    read covers every second `[$window]` holds, so the gate bound cannot fire on a real stream
    of this model; this is how `check_gate` reaches it."""

    forced: dict[str, bytes]

    def alias(self, rng: random.Random, mean_streak: float) -> None:
        self.forced = {}
        for name in HELD:
            bits: list[int] = []
            while len(bits) < self.horizon:
                bits += [0] * int(rng.expovariate(1 / mean_streak)) + [1] * rng.randint(1, 3)
            # No trailing window (not shorter than `[$window]` yet): nothing holds the rule.
            self.forced[name] = bytes(1 if start == k else b
                                      for k, start, b in zip(self.ticks, self.trail_start[name], bits[:self.horizon], strict=True))

    def trailing_ratio(self, name: str, cum: list[int], i: int) -> float:
        return float(self.forced[name][i])  # 0: healthy, 1: above 10%

    def trailing_flags(self, name: str, cum: list[int]) -> bytes:
        return self.forced[name]


def window(t: int) -> int:
    """`[$window]` t seconds after the deploy: rules.window_seconds at a 1 s scrape."""
    return max(MIN_WINDOW, min(t, MAX_WINDOW))


def least_rejecting(total: int) -> int:
    """The smallest failure count that rejects "share <= 10%" after `total` requests (a count
    above `total` when none does)."""
    if total == 0 or not rejects(total, total, ABOVE, ALPHA):
        return total + 1
    lo, hi = 0, total  # rejects(hi), not rejects(lo)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if rejects(mid, total, ABOVE, ALPHA):
            hi = mid
        else:
            lo = mid
    return hi


def observe(rule: Rule, name: str, stream: Stream, cum: list[int], i: int, state: RuleState) -> Observation:
    """The real observation of tick index i, as evaluate.evaluate makes it from the rule's state
    before the tick: classify on both windows, both_windows (with how long the trailing window
    has held the breach, against `[$window]`'s span), then held_before_change."""
    k = stream.ticks[i]
    obs = classify(rule, [Sample({}, stream.window_ratio(cum, k, stream.long_start[i]))])
    start = stream.trail_start[name][i]
    if start != k:
        short = classify(rule, [Sample({}, stream.trailing_ratio(name, cum, i))])
        # at the time the bench's step calls use
        obs = both_windows(obs, short, k - start + 1, state.gated_for(float(i + 1)), window(k - PRE))
    return held_before_change(rule, obs, float(k), float(PRE), window(k - PRE))


# Tick indices before this one read a `[$window]` clamped up to min_window, reaching back before
# the deploy: a breach there is held (evaluate.held_before_change).
FIRST_OWN = MIN_WINDOW - 1


def gate_opening(a: int) -> int:
    """The first tick index at which a run of gated ticks (the trailing window healthy while
    `[$window]` breaches) that began on index a has held for longer than `[$window]` spans:
    RuleState.gated_since is a + 1, so gated_for at index j is j - a against window(j + 1)
    (evaluate.both_windows). The window grows by at most a second a tick: a fixed point."""
    j = a + MIN_WINDOW + 1
    while j - a <= window(j + 1):
        j = a + window(j + 1) + 1
    return j


# The shortest streak of gated ticks the gate bound can fire on: past max_window the window no
# longer grows, so the tick indices up to it cover every start.
GATE_MIN = min(gate_opening(a) - a + 1 for a in range(MAX_WINDOW + 1))
GATE_STREAK = bytes(GATE_MIN)


def held_firing(rule: Rule, name: str, stream: Stream, cum: list[int], long_flags: list[bool]) -> tuple[int | None, bool]:
    """Seconds from the deploy to the rule's firing (None within the horizon), and whether the
    gate bound fired it.

    `for` runs on the deploy window (evaluate.both_windows): a run of ticks on which `[$window]`
    breaches keeps the rule pending from its first tick; it fires on the first tick of the run at
    least `for` after its start on which the trailing window lets it (a healthy trailing window
    holds the moment of firing, it does not reset `for`), and not while the range still reaches
    back before the deploy. The gate bound (commit 4d7450c, issue 22): a streak of ticks of the
    run on which the trailing window held it fires once the streak has lasted longer than
    `[$window]` spans (gate_opening), again at least `for` after the run's start; the earlier of
    the two. Only streaks of at least GATE_MIN ticks can; bytes.find looks for those alone. A run
    that ends first leaves nothing behind. The real state machine is stepped over the run's
    first tick, the streak's start (and the tick before it) and the firing tick; `check_run`
    steps every tick of some runs and must agree."""
    flags = bytes(long_flags)
    trail = stream.trailing_flags(name, cum)
    need = int(rule.for_)
    n = len(flags)
    s = flags.find(1)
    while s >= 0:
        end = flags.find(0, s)
        end = n if end < 0 else end
        first = max(s + need, FIRST_OWN)
        j = trail.find(1, first, end) if first < end else -1
        limit = end if j < 0 else j  # a gate firing must come before the trailing window's
        a = trail.find(GATE_STREAK, s, limit)
        gate = -1
        while a >= 0:
            b = trail.find(1, a, limit)
            b = limit if b < 0 else b
            g = max(stream.gate_opens[a], first)
            if g < b:
                gate = g
                break
            a = trail.find(GATE_STREAK, b, limit) if b < limit else -1
        if gate >= 0:
            j = gate
        if j >= 0:
            ticks = sorted({s, j} | ({a, a - 1} if gate >= 0 and a > s else set()))
            state = RuleState()
            for t in ticks:
                state, _ = step(rule, state, observe(rule, name, stream, cum, t, state), float(t + 1))
            assert state.phase is Phase.FIRING, (name, s, a, j, state)
            return j + 1, gate >= 0
        s = flags.find(1, end) if end < n else -1
    return None, False


def judge_firing(stream: Stream, cum: list[int]) -> int | None:
    since = map(sub, cum[PRE + 1:], repeat(cum[START]))
    i = next(compress(range(stream.horizon), map(ge, since, stream.judge_need)), None)
    if i is None:
        return None
    verdict = judge(cum[PRE + 1 + i] - cum[START], stream.since_totals[i], ABOVE, ALPHA)
    assert verdict.rejected, verdict  # the precomputed table and the judge agree
    return i + 1


def check_run(stream: Stream, cum: list[int], fast: dict[str, int | None]) -> None:
    """The slow path of one run: every tick through classify, both_windows, step and judge;
    it must give the same firing times as the fast path."""
    for name, rule in HELD.items():
        state, fired = RuleState(), None
        for i in range(stream.horizon):
            state, _ = step(rule, state, observe(rule, name, stream, cum, i, state), float(i + 1))
            if state.phase is Phase.FIRING:
                fired = i + 1
                break
        assert fired == fast[name], (name, fired, fast[name])
    fired = next((i + 1 for i in range(stream.horizon)
                  if rejects(cum[PRE + 1 + i] - cum[START], stream.since_totals[i], ABOVE, ALPHA)), None)
    assert fired == fast["judge"], ("judge", fired, fast["judge"])


def fire_all(stream: Stream, cum: list[int]) -> tuple[dict[str, int | None], list[str]]:
    """One run through the fast paths: each contestant's firing, and the held rules the gate
    bound fired."""
    long_errors = map(sub, cum[PRE + 1:], map(cum.__getitem__, stream.long_start))
    long_flags = list(map(ge, long_errors, stream.long_need))
    fast: dict[str, int | None] = {}
    by_gate = []
    for name, rule in HELD.items():
        fast[name], gate = held_firing(rule, name, stream, cum, long_flags)
        if gate:
            by_gate.append(name)
    fast["judge"] = judge_firing(stream, cum)
    return fast, by_gate


def run_cell(cell: Cell, runs: int, horizon: int, seed: int, checked: int = 5, gate_checked: int = 5,
             gate_counts: Counter[str] | None = None) -> dict[str, list[int | None]]:
    """Every run through the fast paths; the first `checked` runs, and the first `gate_checked`
    runs of each held rule that the gate bound fired, also through the slow path (asserted).
    `gate_counts` adds up, per held rule, the runs the gate bound fired."""
    rng = random.Random(f"{seed}:{cell.rate}:{cell.healthy}:{cell.regression}")
    phases = round(1 / cell.rate) if cell.rate < 1 else 1
    streams = [Stream(cell, horizon, phase) for phase in range(phases)]
    out: dict[str, list[int | None]] = {name: [] for name in CONTESTANTS}
    gated: Counter[str] = Counter()
    for run in range(runs):
        stream = streams[rng.randrange(phases)]
        cum = stream.draw(rng)
        fast, by_gate = fire_all(stream, cum)
        gated.update(by_gate)
        if run < checked or any(gated[name] <= gate_checked for name in by_gate):
            check_run(stream, cum, fast)
        for name, t in fast.items():
            out[name].append(t)
    if gate_counts is not None:
        gate_counts.update(gated)
    return out


def check_gate(horizon: int, seed: int, runs: int = 20) -> Counter[str]:
    """The gate bound's fast path against the slow path on streams whose trailing reads are
    forced (AliasedStream), at the limit at 2 and 50 req/s: every run asserted; the bound must
    have fired some runs of each held rule. Returns those counts."""
    rng = random.Random(f"{seed}:gate")
    fired: Counter[str] = Counter()
    for cell in (Cell(2.0, 0.05, 2), Cell(50.0, 0.05, 2)):
        stream = AliasedStream(cell, horizon, 0)
        for _ in range(runs):
            cum = stream.draw(rng)
            stream.alias(rng, rng.choice((20, 60, 100, 200)))
            fast, by_gate = fire_all(stream, cum)
            check_run(stream, cum, fast)
            fired.update(by_gate)
    assert all(fired[name] for name in HELD), fired
    return fired


def summary(cell: Cell, fired: list[int | None]) -> str:
    hits = [t for t in fired if t is not None]
    if cell.false_rollback_cell:
        return f"{len(hits)}/{len(fired)}"
    if not hits:
        return "0% detected"
    return f"{len(hits) / len(fired):.0%} in {statistics.median(hits):g} s"


Table = list[tuple[Cell, dict[str, list[int | None]]]]


def bench(results: Any = None, log: Callable[[str], object] = print, runs: int = 10_000, detect_runs: int = 1_000,
          horizon: int = 600, seed: int = 23) -> Table:
    started = time.monotonic()
    table: Table = []
    aliased = check_gate(horizon, seed)
    log(f"  judge: gate bound (both_windows' gated_for > [$window]): fast and slow paths agree on 40 runs with "
        f"forced trailing reads; it fired {aliased['held 2m']} (held 2m) and {aliased['held 10s']} (held 10s) of them")
    gate_counts: Counter[str] = Counter()
    header = f"{'req/s':>6} {'healthy':>7} {'regr.':>5} {'share':>6} " + "".join(f"{c:>17}" for c in CONTESTANTS)
    log(f"  judge: false rollbacks (share <= 10%, {runs:,} runs) or detected / median onset -> firing "
        f"({detect_runs:,} runs); horizon {horizon} s after the deploy")
    log("  " + header)
    for rate in RATES:
        for healthy in HEALTHY:
            for regression in REGRESSIONS:
                cell = Cell(rate, healthy, regression)
                fired = run_cell(cell, runs if cell.false_rollback_cell else detect_runs, horizon, seed,
                                 gate_counts=gate_counts)
                table.append((cell, fired))
                regr = "none" if regression == 1 else f"{regression}x"
                log(f"  {rate:>6g} {healthy:>7.1%} {regr:>5} {cell.share:>6.1%} "
                    + "".join(f"{summary(cell, fired[c]):>17}" for c in CONTESTANTS))
    took = time.monotonic() - started
    log(f"  judge: runs the gate bound fired: {gate_counts['held 2m']} (held 2m), {gate_counts['held 10s']} "
        f"(held 10s) of {sum(len(fired['judge']) for _, fired in table):,}")
    log(f"  judge: {took:.0f} s")
    if results is not None:
        record(results, table, runs, took)
    return table


def record(results: Any, table: Table, runs: int, took: float) -> None:
    false_cells = [(cell, fired) for cell, fired in table if cell.false_rollback_cell]
    worst = {name: max(sum(t is not None for t in fired[name]) / len(fired[name]) for _, fired in false_cells)
             for name in CONTESTANTS}
    results.raw["judge"] = [{"rate": c.rate, "healthy": c.healthy, "regression": c.regression,
                             **{n: f for n, f in fired.items()}} for c, fired in table]
    results.add("judge", f"judge: worst false-rollback rate of {len(false_cells)} cells", f"{worst['judge']:.4%}",
                f"<= {ALPHA:.1%}", worst["judge"] <= ALPHA, note=f"{runs:,} runs a cell")
    for name in HELD:
        results.add("judge", f"{name}: worst false-rollback rate", f"{worst[name]:.2%}")
    for cell, fired in table:
        if cell.rate == 50 and cell.share == 0.3:
            for name in CONTESTANTS:
                hits = [t for t in fired[name] if t is not None]
                results.add("judge", f"{name}: 30% at 50 req/s, median onset -> firing",
                            f"{statistics.median(hits):g} s" if hits else "never")
            break
    results.add("judge", "simulation wall time", f"{took:.0f} s")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=10_000, help="runs per cell whose share is at most 10%%")
    ap.add_argument("--detect-runs", type=int, default=1_000, help="runs per cell whose share is above 10%%")
    ap.add_argument("--horizon", type=int, default=600, help="seconds after the deploy")
    ap.add_argument("--seed", type=int, default=23)
    args = ap.parse_args(argv)
    bench(runs=args.runs, detect_runs=args.detect_runs, horizon=args.horizon, seed=args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
