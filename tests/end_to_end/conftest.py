"""Fixtures of the end-to-end tests."""

import pytest

from tests.support.crash import seeded


@pytest.fixture
def three(standins):
    """The stand-ins with site1..site3 pending and their DNS ready (tests/support/crash.py)."""
    return seeded(standins)
