"""What the picture of a breach costs (watcher/notify/pictures.py, issue 24 item 2): matplotlib's
installed size, its import time, and the time to draw one picture.

    .venv/bin/python bench/picture_cost.py [--runs 9]

    installed size          matplotlib and what it pulls in (numpy, Pillow, fontTools, ...), on disk
    import, font cache kept the usual case: `import` of what render_png imports, in a fresh process
    import, no font cache   a fresh host's first picture: matplotlib builds its font list first
                            (MPLCONFIGDIR empty each run)
    first picture           import + the first render_png, in a fresh process (what the first
                            rollback message waits for at most; see watcher/notify/notifier.py)
    render_png              one more picture in a warm process (median of RUNS)
    RSS added               resident memory after the first picture, minus before the import

Figures are medians of RUNS fresh processes (wall and CPU of the child); the machine may be
shared, so read CPU and ratios rather than the last millisecond. Bytecode is cached as an
installed package has it (see bench/check_speed.py).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable

IMPORT = """
import time, resource
start = time.perf_counter(); cpu0 = time.process_time()
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib import dates, ticker
print(time.perf_counter() - start, time.process_time() - cpu0)
"""

FIRST = """
import math, resource, time
def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20
before = rss_mb()
from watcher.notify.pictures import BreachPicture, render_png, thresholds_for
T0 = 1_764_000_000.0
points = tuple((T0 + 15 * i, 0.02 + (0.38 if i > 20 else 0.0) + 0.005 * math.sin(i)) for i in range(240))
picture = BreachPicture(rule="http-5xx-ratio", unit="ratio", thresholds=thresholds_for(above=0.1),
                        points=points, deploy_at=T0 + 15 * 18, breach_at=T0 + 15 * 21,
                        switch_at=T0 + 15 * 30, release="r42", host="web-1")
start = time.perf_counter(); cpu0 = time.process_time()
png = render_png(picture)
first = (time.perf_counter() - start, time.process_time() - cpu0)
more = []
for _ in range(RUNS):
    start = time.perf_counter()
    render_png(picture)
    more.append(time.perf_counter() - start)
more.sort()
print(first[0], first[1], more[len(more) // 2], rss_mb() - before, len(png))
"""


def installed_mb() -> tuple[float, list[str]]:
    """On-disk size of matplotlib and its requirements, recursively (not pip or setuptools)."""
    seen: dict[str, float] = {}

    def visit(name: str) -> None:
        key = name.lower().replace("_", "-")
        if key in seen:
            return
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            return
        size = sum((p.size or 0) for p in dist.files or [])
        seen[key] = size / 2**20
        for req in dist.requires or []:
            if "extra ==" in req:
                continue
            visit(req.split(";")[0].split("[")[0].split("<")[0].split(">")[0].split("=")[0].split("!")[0].strip())

    visit("matplotlib")
    rows = [f"{name} {mb:.1f}" for name, mb in sorted(seen.items(), key=lambda kv: -kv[1])]
    return sum(seen.values()), rows


def run(code: str, env: dict) -> list[float]:
    done = subprocess.run([PY, "-c", code], env=env, cwd=REPO, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(done.stderr[-1500:])
    return [float(x) for x in done.stdout.split()]


def measure(runs: int = 9, log=print) -> dict[str, float]:
    """Every figure of the module docstring, printed as it is measured."""
    work = Path(tempfile.mkdtemp(prefix="picture-cost-"))
    base = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    base["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    base["MPLCONFIGDIR"] = str(work / "mpl-warm")
    results: dict[str, float] = {}

    total, rows = installed_mb()
    results["installed_mb"] = total
    log(f"installed size                {total:6.0f} MB  ({', '.join(rows)})")

    run(IMPORT, base)  # warm: .pyc files and the font cache; not counted
    warm = [run(IMPORT, base) for _ in range(runs)]
    cold = [run(IMPORT, {**base, "MPLCONFIGDIR": tempfile.mkdtemp(dir=work)}) for _ in range(runs)]
    first_code = FIRST.replace("RUNS", str(runs))
    firsts = [run(first_code, base) for _ in range(runs)]
    for key, name, samples in (("import_s", "import, font cache kept", warm),
                               ("import_cold_s", "import, no font cache", cold)):
        wall, cpu = statistics.median(s[0] for s in samples), statistics.median(s[1] for s in samples)
        results[key], results[key.replace("_s", "_cpu_s")] = wall, cpu
        log(f"{name:<29} median wall {1000 * wall:5.0f} ms  cpu {1000 * cpu:5.0f} ms  ({runs} runs)")
    results.update({"first_picture_s": statistics.median(s[0] for s in firsts),
                    "first_picture_cpu_s": statistics.median(s[1] for s in firsts),
                    "render_s": statistics.median(s[2] for s in firsts),
                    "rss_added_mb": statistics.median(s[3] for s in firsts), "png_bytes": firsts[0][4]})
    log(f"{'first picture (import+draw)':<29} median wall {1000 * results['first_picture_s']:5.0f} ms  "
        f"cpu {1000 * results['first_picture_cpu_s']:5.0f} ms")
    log(f"{'render_png, warm':<29} median wall {1000 * results['render_s']:5.0f} ms  (240 points, "
        f"{results['png_bytes']:.0f} bytes)")
    log(f"{'RSS added':<29} median {results['rss_added_mb']:5.0f} MB")
    shutil.rmtree(work, ignore_errors=True)
    return results


def bench(results, log, runs: int = 9) -> None:
    """The `pictures` section of bench/run.py."""
    from watcher.notify.attach import PICTURE_WAIT_S

    r = measure(runs, log)
    results.raw["pictures"] = r
    results.add("pictures", "matplotlib + its dependencies installed", f"{r['installed_mb']:.0f} MB")
    results.add("pictures", f"import, font cache kept (median of {runs})", f"{r['import_s'] * 1000:.0f} ms")
    results.add("pictures", "import, fresh host (no font cache)", f"{r['import_cold_s'] * 1000:.0f} ms")
    results.add("pictures", "first picture of a process (import + draw)", f"{r['first_picture_s'] * 1000:.0f} ms",
                f"< {PICTURE_WAIT_S:g} s (the wait)", r["first_picture_s"] < PICTURE_WAIT_S)
    results.add("pictures", "one more picture (render_png)", f"{r['render_s'] * 1000:.0f} ms")
    results.add("pictures", "RSS added by the first picture", f"{r['rss_added_mb']:.0f} MB")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    results = measure(args.runs, lambda line: print(line, flush=True))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
