"""Every kept history of examples.py violates no invariant: the issue-22 defects, each fixed
(its story in examples.py says what it did before), and the controls."""

from __future__ import annotations

import pytest

from sim.examples import EXAMPLES
from sim.world import run_history


@pytest.mark.parametrize("example", [e for e in EXAMPLES if e.kept], ids=lambda e: e.name)
def test_the_history_violates_no_invariant(example):
    violations = run_history(example.history).violations
    assert not violations, f"{example.story}\n" + "\n".join(str(v) for v in violations[:5])
