"""core/http's `send` as the tests of tests/*/test_http.py call it: for Matomo, to one URL unless told otherwise."""

import pytest

from hosting_automator.core.http import send
from hosting_automator.errors import MatomoError

URL = "https://stats.example.org/index.php"


def sent(session, method="POST", url=URL, **kwargs):
    return send(session, method, url, error=MatomoError, what="Matomo", **kwargs)


def failure(session, method="POST", url=URL, **kwargs):
    """The MatomoError `send` raises."""
    with pytest.raises(MatomoError) as caught:
        sent(session, method, url, **kwargs)
    return caught.value
