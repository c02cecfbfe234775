"""`make sim`: generated histories for as long as asked, violations by invariant, each first
violation shrunk to a short history that can go into examples.py.

    SIM_SECONDS=600 SIM_SEED=1 SIM_JOBS=2 make sim

Seeds run in order from SIM_SEED (history N is `generate(RandomChoices(SIM_SEED + N))`), so a
run is reproduced by its seed: `python -m sim.run --seed S --one` prints that history and
what it violates.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import signal
import sys
import time
from collections import Counter, defaultdict

from sim.generate import RandomChoices, generate
from sim.history import History
from sim.world import run_history

PROGRESS_EVERY = 300.0  # seconds of wall time between progress lines


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _progress(started: float, histories: int, simulated: float, by_invariant: Counter) -> None:
    print(f"  ... {time.monotonic() - started:.0f}s: {histories} histories, {simulated / 3600:.1f} simulated hours, "
          f"{sum(by_invariant.values())} violating", flush=True)


def run_seed(seed: int) -> tuple[int, float, int, list[tuple[str, str]]]:
    history = generate(RandomChoices(seed))
    result = run_history(history)
    return seed, result.stats.seconds, result.stats.ticks, [(v.invariant, str(v)) for v in result.violations]


def violates(history: History, invariant: str) -> bool:
    return any(v.invariant == invariant for v in run_history(history).violations)


def without(actions: tuple, drop: set[int]) -> tuple:
    """`actions` without the ones at `drop`, each later action moved by the time the dropped ones
    took, so that what remains happens when it happened."""
    out, carry = [], 0.0
    for i, a in enumerate(actions):
        if i in drop:
            carry += a.after
            continue
        out.append(dataclasses.replace(a, after=round(a.after + carry, 3)) if carry else a)
        carry = 0.0
    return tuple(out)


def shrink(history: History, invariant: str, budget: int = 250) -> History:
    """A shorter history that still violates `invariant`: drop chunks of actions, then single
    ones (delta debugging), then cut the tail."""
    runs = 0
    best = history
    chunk = max(1, len(best.actions) // 2)
    while chunk >= 1 and runs < budget:
        i, progressed = 0, False
        while i < len(best.actions) and runs < budget:
            candidate = dataclasses.replace(best, actions=without(best.actions, set(range(i, i + chunk))))
            runs += 1
            if violates(candidate, invariant):
                best, progressed = candidate, True
            else:
                i += chunk
        if not progressed:
            chunk //= 2
    for tail in (30.0, 120.0, 300.0, best.setup.watch_window + 60.0):
        if tail >= best.tail or runs >= budget:
            break
        runs += 1
        if violates(dataclasses.replace(best, tail=tail), invariant):
            best = dataclasses.replace(best, tail=tail)
            break
    return best


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m sim.run")
    parser.add_argument("--seconds", type=float, default=float(os.environ.get("SIM_SECONDS", "60")))
    parser.add_argument("--seed", type=int, default=int(os.environ.get("SIM_SEED") or time.time_ns() % 10 ** 6))
    parser.add_argument("--jobs", type=int, default=int(os.environ.get("SIM_JOBS", "1")))
    parser.add_argument("--one", action="store_true", help="run the history of --seed alone and show it")
    parser.add_argument("--count", type=int, default=0,
                        help="run exactly this many seeds from --seed (no time limit), one JSON line each to stdout")
    parser.add_argument("--no-shrink", action="store_true")
    args = parser.parse_args(argv)

    if args.one:
        history = generate(RandomChoices(args.seed))
        print(history.show())
        for v in run_history(history).violations:
            print(v)
        return 0

    if args.count:
        seeds = range(args.seed, args.seed + args.count)
        with multiprocessing.get_context("fork").Pool(args.jobs) as pool:
            for seed, seconds, n_ticks, found in pool.imap(run_seed, seeds):
                print(json.dumps({"seed": seed, "seconds": seconds, "ticks": n_ticks,
                                  "violations": [text for _, text in found]}), flush=True)
        return 0

    started = time.monotonic()
    histories = ticks = 0
    simulated = 0.0
    by_invariant: Counter = Counter()
    first: dict[str, tuple[int, str]] = {}
    seeds_of: dict[str, list[int]] = defaultdict(list)


    def take(seed: int, seconds: float, n_ticks: int, found: list) -> None:
        nonlocal histories, ticks, simulated
        histories += 1
        ticks += n_ticks
        simulated += seconds
        for invariant in sorted({inv for inv, _ in found}):
            by_invariant[invariant] += 1
            seeds_of[invariant].append(seed)
            if invariant not in first:
                first[invariant] = (seed, next(text for inv, text in found if inv == invariant))
                print(f"  seed {seed}: {first[invariant][1]}", flush=True)

    print(f"make sim: seeds from {args.seed}, {args.seconds:g}s, {args.jobs} process(es)", flush=True)
    n = args.seed
    progress_at = started + PROGRESS_EVERY
    stopped = False
    try:
        if args.jobs > 1:
            with multiprocessing.get_context("fork").Pool(args.jobs) as pool:
                # After the fork: the workers keep the default SIGTERM, the parent stops with its figures.
                signal.signal(signal.SIGTERM, _stop)
                while time.monotonic() - started < args.seconds:
                    batch = range(n, n + 2 * args.jobs)  # a few at a time: the time limit is checked between
                    n += len(batch)
                    for result in pool.imap(run_seed, batch):
                        take(*result)
                    if time.monotonic() >= progress_at:
                        progress_at += PROGRESS_EVERY
                        _progress(started, histories, simulated, by_invariant)
        else:
            signal.signal(signal.SIGTERM, _stop)
            while time.monotonic() - started < args.seconds:
                take(*run_seed(n))
                n += 1
                if time.monotonic() >= progress_at:
                    progress_at += PROGRESS_EVERY
                    _progress(started, histories, simulated, by_invariant)
    except KeyboardInterrupt:
        # Stopped by hand (Ctrl-C, kill) once a finding was diagnosed: the figures of the
        # histories finished so far are still the run's record; the ones in flight are lost.
        stopped = True
        print("\nstopped before its time: the figures below count the histories that finished", flush=True)
    wall = time.monotonic() - started

    print()
    print(f"histories:        {histories}")
    print(f"simulated ticks:  {ticks}")
    print(f"simulated hours:  {simulated / 3600:.1f}")
    print(f"histories/second: {histories / wall:.2f}  ({wall:.0f}s wall, {args.jobs} process(es))")
    print(f"violations:       {sum(by_invariant.values())} histories"
          + ("" if by_invariant else " (none)"))
    for invariant, count in by_invariant.most_common():
        print(f"  {invariant:38} {count:6} histories  (first seed {first[invariant][0]})")
        more = sorted(seeds_of[invariant])
        print(f"      seeds: {' '.join(map(str, more[:30]))}{' ...' if len(more) > 30 else ''}")
    if not args.no_shrink and not stopped:
        for invariant, (seed, text) in sorted(first.items()):
            print(f"\n== {invariant}: seed {seed}\n   {text}")
            shrunk = shrink(generate(RandomChoices(seed)), invariant)
            print("   shrunk to:")
            print("\n".join("   " + line for line in shrunk.show().splitlines()))
            for v in run_history(shrunk).violations:
                if v.invariant == invariant:
                    print(f"   -> {v}")
                    break
    return 1 if by_invariant else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
