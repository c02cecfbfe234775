"""`rollback-watcher demo` (what `make demo` runs) as a user runs it: a subprocess that must exit
0, within two minutes, and end with the summary. It runs alongside the scenarios (see harness.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from harness import REPO, Outcome, scenario

pytestmark = pytest.mark.e2e


@scenario("demo")
def run_demo(lab) -> Outcome:
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "watcher", "demo"], capture_output=True, text=True,
                            timeout=150, cwd=REPO)
    return Outcome(None, data={"result": result, "seconds": time.monotonic() - started})


@pytest.mark.scenario("demo")
def test_demo_rolls_back_the_bad_release_and_ends_with_the_summary(outcome):
    result = outcome.data["result"]
    assert result.returncode == 0, result.stdout + result.stderr
    assert outcome.data["seconds"] < 120
    out = result.stdout
    summary = out[out.index("\nsummary\n"):]
    assert "rule            http-5xx-ratio" in summary
    assert "value           " in summary and "%" in summary
    assert "detection" in summary and "rollback" in summary
    assert "v2 rolled back to v1" in summary
    assert "pending" in out and "firing" in out  # the timeline showed the rule's progress
    assert "removed" in out.splitlines()[-1]
    assert "rollback-watcher-demo-" in out
    tmp = out.split("sandbox host in ", 1)[1].split(":", 1)[0]
    assert not os.path.exists(tmp), "the demo's temp dir was left behind"
