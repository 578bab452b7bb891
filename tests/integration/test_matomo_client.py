"""The Matomo client over a real socket against the FakeMatomo stand-in: one site made and found again, and the
super-user hint. The recorded answers of Matomo 5.0.2: tests/unit/test_matomo_client.py."""

import pytest

from hosting_automator.errors import MatomoError
from hosting_automator.services.matomo_client import MatomoClient
from tests.standins.matomo import SUPERUSER_MESSAGE, FakeMatomo

TOKEN = "matomo-token-4f9e2a7c1b8d3e6f"
ADD = "SitesManager.addSite"



@pytest.fixture
def fake_matomo():
    with FakeMatomo(token=TOKEN) as server:
        yield server


def test_create_tracking_site_against_fake_matomo_creates_one_site_and_finds_it_again(fake_matomo, session, retry):
    client = MatomoClient(fake_matomo.url + "/index.php", TOKEN, session, retry, timezone="UTC", currency="EUR")

    first = client.create_tracking_site("www.example.com")
    second = client.create_tracking_site("www.example.com")

    assert first == second
    assert fake_matomo.sites == {first: {"name": "www.example.com", "timezone": "UTC", "currency": "EUR",
                                         "urls": ["https://www.example.com", "https://example.com"]}}
    assert all("token_auth" not in request["query"] for request in fake_matomo.requests_log)
    assert client.check() == (f"Matomo 5.0.2 at {fake_matomo.url}/index.php, token of a super user; "
                              "MATOMO_SITE_TIMEZONE=UTC and MATOMO_SITE_CURRENCY=EUR accepted")


def test_create_tracking_site_against_fake_matomo_without_super_user_raises_hint(session, retry):
    with FakeMatomo(token=TOKEN, superuser=False) as server:
        client = MatomoClient(server.url + "/index.php", TOKEN, session, retry)
        with pytest.raises(MatomoError) as caught:
            client.create_tracking_site("example.com")

    assert str(caught.value) == "Matomo refuses to create sites for MATOMO_API_TOKEN: it must belong to a super user"
    assert f"{ADD}: {SUPERUSER_MESSAGE} (MATOMO_API_TOKEN must belong to a super user)" in str(
        caught.value.__cause__)
