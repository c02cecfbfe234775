"""Helpers shared by the benchmarks: statistics, the result table, processes. The sandbox
symlink host and wait_for come from tests/support, shared with the tests."""

from __future__ import annotations

import math
import os
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from support import SymlinkHost, wait_for

__all__ = ["SymlinkHost", "wait_for"]  # re-exported for the bench modules

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
BIN = Path(PY).parent


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def p95(xs):
    xs = sorted(x for x in xs if x is not None)
    if not xs:
        return None
    return xs[min(len(xs) - 1, math.ceil(0.95 * len(xs)) - 1)]


def slope(points):
    """Least-squares slope of [(x, y), ...]."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mx = sum(p[0] for p in points) / n
    my = sum(p[1] for p in points) / n
    den = sum((p[0] - mx) ** 2 for p in points)
    return sum((p[0] - mx) * (p[1] - my) for p in points) / den if den else 0.0


@dataclass
class Row:
    section: str
    name: str
    value: str
    target: str = ""
    ok: bool | None = None  # None: no target
    note: str = ""


@dataclass
class Results:
    rows: list[Row] = field(default_factory=list)
    raw: dict = field(default_factory=dict)

    def add(self, section, name, value, target="", ok=None, note=""):
        row = Row(section, name, value, target, ok, note)
        self.rows.append(row)
        mark = "" if ok is None else ("  [ok]" if ok else "  [MISSED]")
        print(f"  {section:10} {name:58} {value:>16}  {target}{mark}", flush=True)
        return row

    def table(self) -> str:
        w = max([len(r.name) for r in self.rows] + [10])
        lines = [f"{'section':10} {'figure':{w}} {'measured':>18}  {'target':18} verdict",
                 "-" * (w + 62)]
        for r in self.rows:
            verdict = "" if r.ok is None else ("ok" if r.ok else "MISSED")
            lines.append(f"{r.section:10} {r.name:{w}} {r.value:>18}  {r.target:18} {verdict}")
        return "\n".join(lines)


def ms(x) -> str:
    return "n/a" if x is None else f"{x * 1000:.1f} ms"


def sec(x) -> str:
    return "n/a" if x is None else f"{x:.1f} s"


def cli(*args, timeout=60) -> subprocess.CompletedProcess:
    return subprocess.run([PY, "-m", "watcher", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


class Proc:
    """A child in its own session; stop() TERMs then KILLs its group (only this child's group)."""

    def __init__(self, argv, log: Path, env=None):
        self.log = open(log, "ab")
        full = dict(os.environ)
        full.update(env or {})
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True, cwd=REPO, env=full)
        self.pid = self.proc.pid

    def stop(self, grace=5.0):
        import signal
        if self.proc.poll() is None:
            try:
                os.killpg(self.pid, signal.SIGTERM)
                self.proc.wait(timeout=grace)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        self.log.close()
