"""How long `rollback-watcher check --config examples/watcher.yaml` takes (target: < 300 ms), and
what validating the notify URLs with Apprise costs (issue 16, items 6 and "what it must show").

    .venv/bin/python bench/check_speed.py [--runs 10]

Each figure is the median of RUNS fresh processes: wall time and CPU time (user + sys of the
child, which a loaded machine inflates far less than wall). hyperfine is used when installed
(it only gives wall time); the medians here are computed the same way without it.

    check, Apprise verdicts remembered   the usual case: the example's ntfy URL was accepted before
    check, no verdicts remembered        a fresh XDG_CACHE_HOME each run: Apprise imported and asked
    check, no notify targets             the example without `notify:`: nothing to validate
    --help                               the floor: Python, typer, the CLI module
    import apprise                       Apprise's import alone
    import apprise + parse one URL       its import and its plugins loaded to parse a URL

Every row runs with bytecode cached (PYTHONPYCACHEPREFIX in the bench's temp dir, written by the
uncounted warm-up run), as an installed package has it: pip compiles the .pyc at install. This
machine's environment sets PYTHONDONTWRITEBYTECODE=1: in a fresh checkout each run compiled the
watcher's modules from source again (~50-70 ms CPU in cProfile) and measured that instead.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
EXAMPLE = REPO / "examples" / "watcher.yaml"
TARGET_S = 0.300


def timed(argv: list[str], env: dict) -> tuple[float, float]:
    """(wall, cpu) seconds of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.decode()[-500:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def measure(name: str, argv: list[str], runs: int, env_for_run) -> dict:
    walls, cpus = [], []
    timed(argv, env_for_run(-1))  # warm the page cache and .pyc files; not counted
    for i in range(runs):
        wall, cpu = timed(argv, env_for_run(i))
        walls.append(wall)
        cpus.append(cpu)
    row = {"name": name, "wall_ms": 1000 * statistics.median(walls), "cpu_ms": 1000 * statistics.median(cpus),
           "min_wall_ms": 1000 * min(walls)}
    print(f"{name:<38} median wall {row['wall_ms']:6.0f} ms  cpu {row['cpu_ms']:6.0f} ms  (min wall "
          f"{row['min_wall_ms']:.0f} ms, {runs} runs)", flush=True)
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="check-speed-"))
    try:
        # Bytecode as an installed package has it (see the docstring).
        base = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        base["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
        warm = {**base, "XDG_CACHE_HOME": str(work / "warm")}
        no_notify = work / "watcher.yaml"
        text = EXAMPLE.read_text().replace("rules: [../rules/", f"rules: [{REPO}/rules/")
        text = text.replace("releases: shop-api/", f"releases: {REPO}/examples/shop-api/")
        text = text.replace("current: shop-api/", f"current: {REPO}/examples/shop-api/")
        text = text.replace("deploy_lock: shop-api/", f"deploy_lock: {REPO}/examples/shop-api/")
        no_notify.write_text(text.split("\nnotify:")[0] + f"\nstate_dir: {work}/state\n")

        def cold(i: int) -> dict:
            return {**base, "XDG_CACHE_HOME": str(work / f"cold-{i}")}

        check = [PY, "-m", "watcher", "check", "--config", str(EXAMPLE)]
        rows = [
            measure("check, Apprise verdicts remembered", check, args.runs, lambda i: warm),
            measure("check, no verdicts remembered", check, args.runs, cold),
            measure("check, no notify targets", [PY, "-m", "watcher", "check", "--config", str(no_notify)],
                    args.runs, lambda i: warm),
            measure("--help", [PY, "-m", "watcher", "--help"], args.runs, lambda i: warm),
            measure("import apprise", [PY, "-c", "import apprise"], args.runs, lambda i: warm),
            measure("import apprise + parse one URL",
                    [PY, "-c", "import apprise; apprise.Apprise.instantiate('ntfy://ntfy.example.com/x')"],
                    args.runs, lambda i: warm),
        ]
        if shutil.which("hyperfine"):
            subprocess.run(["hyperfine", "--warmup", "1", "--runs", str(args.runs), " ".join(check)],
                           env=warm, cwd=REPO)
        usual = rows[0]["wall_ms"]
        print(f"\ncheck on examples/watcher.yaml (usual case): {usual:.0f} ms wall, target < {TARGET_S * 1000:.0f} ms: "
              f"{'ok' if usual < TARGET_S * 1000 else 'MISSED'}; load average {os.getloadavg()[0]:.1f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
