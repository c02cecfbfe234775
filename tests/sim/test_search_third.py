"""A third part of the budgeted search (test_search.py): other histories, a third worker. Three
files of 150 rather than two of 200: the last fifty of a 200-history search were its longest
(one file held a worker for six minutes of a twelve-minute suite on a slow machine)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sim.test_search import SEARCH, keeps_every_invariant


@SEARCH
@given(st.data())
def test_third_generated_histories_keep_every_invariant(data):
    keeps_every_invariant(data)
