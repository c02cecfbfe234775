"""Generated histories against every invariant, a bounded budget for `make test` (Hypothesis,
derandomized so that a run is the same on every machine; `make sim` searches further, from new
seeds). Two files (this one and test_search_more.py), so that two test workers share them;
150 histories each: with 200 the last fifty, the longest, held one worker for six minutes
(356 s of a 674 s suite on a slow machine), and a third file of 150 cost 287 s more there.
A failure prints the history: put it into examples.py, fix, keep it."""

from __future__ import annotations

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from sim.generate import DrawnChoices, generate
from sim.world import run_history

BUDGET = 150

# No shrinking here: a history takes a fraction of a second, shrinking one takes minutes; the
# failure prints the history whole.
SEARCH = settings(max_examples=BUDGET, deadline=None, derandomize=True, database=None, print_blob=False,
                  phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def keeps_every_invariant(data) -> None:
    history = generate(DrawnChoices(data), short=True)
    violations = run_history(history).violations
    assert not violations, history.show() + "\n" + "\n".join(str(v) for v in violations[:5])


@SEARCH
@given(st.data())
def test_generated_histories_keep_every_invariant(data):
    keeps_every_invariant(data)
