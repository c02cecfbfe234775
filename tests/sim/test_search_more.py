"""The second half of the budgeted search (test_search.py): other histories, another worker."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sim.test_search import SEARCH, keeps_every_invariant


@SEARCH
@given(st.data())
def test_more_generated_histories_keep_every_invariant(data):
    keeps_every_invariant(data)
