"""Fixtures the integration tests share."""

import pytest

from hosting_automator.core.http import Session


@pytest.fixture
def session():
    """The run's requests session, as the clients get it, with a 5 s timeout."""
    with Session(timeout=5) as session:
        yield session
