"""Shared test configuration: hypothesis profiles and a seeded ``rng`` fixture.

Profiles
--------
``default``
    ``deadline=None`` (the first call of a Numba kernel compiles, which would blow any deadline) and
    30 examples per test, so the whole suite stays fast on a 2-core machine.
``ci``
    The same, derandomized (a CI failure reproduces locally) with a few more examples.

Select one with ``HYPOTHESIS_PROFILE=ci pytest`` or ``pytest --hypothesis-profile=ci``.
"""
from __future__ import annotations

import os
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "default",
    deadline=None,
    max_examples=30,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "ci",
    deadline=None,
    max_examples=50,
    derandomize=True,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture
def rng(request) -> np.random.Generator:
    """A generator seeded from the test's name: reproducible, yet different streams for different tests."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))
