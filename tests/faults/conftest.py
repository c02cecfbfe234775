"""Fixtures for fault injection (issue 10): misbehaving peers on 127.0.0.1 and the sandbox
symlink host of tests/service (loaded from its file: tests/ has no packages).

Hypothesis profiles: "default" keeps `make test` fast (200 examples a test); "long" is what
`make fuzz` loads through HYPOTHESIS_PROFILE=long.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("default", max_examples=100, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.register_profile("long", max_examples=5000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

_HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE))  # faultlib.py, next to this file


@pytest.fixture
def fake_prometheus():
    from faultlib import FakePrometheus

    server = FakePrometheus()
    yield server
    server.close()
