"""The job's Matomo client against the real Matomo 5.0.2: the ordinary paths, and each place where the real one
differs from what its documentation let us expect (URL normalisation, Unicode storage, settings it refuses, its
database down)."""

import logging

import idna
import pytest

from hosting_automator.core.http import Session
from hosting_automator.errors import MatomoError
from hosting_automator.services.matomo_client import MatomoClient
from tests.conformance.conftest import matomo_api
from tests.conformance.real_db import matomo_database_down


@pytest.fixture
def session():
    with Session(timeout=30) as session:
        yield session


@pytest.fixture
def client(real, session, retry):
    return MatomoClient(real.matomo_url + "/index.php", real.matomo_token, session, retry)


def hand_made(real, *urls):
    """A Matomo site made by a person, not by the job: its id."""
    answer = matomo_api(real, "SitesManager.addSite", siteName=urls[0],
                        **{f"urls[{index}]": url for index, url in enumerate(urls)}).json()
    assert isinstance(answer, dict) and isinstance(answer.get("value"), int), answer
    return answer["value"]


def urls_of(real, site_id):
    return matomo_api(real, "SitesManager.getSiteUrlsFromId", idSite=site_id).json()


# --- the ordinary paths ---------------------------------------------------------------------------------------

def test_a_site_is_created_once_and_found_again_on_a_rerun(real, client, unique):
    domain = f"{unique}.example.test"

    first = client.create_tracking_site(domain)
    again = client.create_tracking_site(domain)
    twin = client.create_tracking_site(f"www.{domain}")

    assert first == again == twin
    assert urls_of(real, first) == [f"https://{domain}", f"https://www.{domain}"]
    assert matomo_api(real, "SitesManager.getSiteFromId", idSite=first).json()["name"] == domain


def test_check_passes_with_the_super_users_token(real, client):
    assert client.check() == f"Matomo 5.0.2 at {real.matomo_url}/index.php, token of a super user"


def test_a_secure_only_token_works_since_the_token_goes_only_in_the_post_body(real, session, retry, unique):
    client = MatomoClient(real.matomo_url + "/index.php", real.matomo_secure_token, session, retry)

    site_id = client.create_tracking_site(f"{unique}.example.test")

    assert client.find_site(f"{unique}.example.test") == site_id


@pytest.mark.parametrize("token, expected", [
    ("0" * 32, "Unable to authenticate with the provided token"),
    ("", "not a super user"),  # an empty token is anonymous: HTTP 200, not a 401
])
def test_check_with_a_wrong_or_empty_token_says_what_to_fix(real, session, retry, token, expected):
    client = MatomoClient(real.matomo_url + "/index.php", token, session, retry)

    with pytest.raises(MatomoError, match=expected) as caught:
        client.check()

    assert "MATOMO_API_TOKEN" in str(caught.value)


def test_a_view_only_token_cannot_create_and_check_says_so(real, session, retry, unique):
    client = MatomoClient(real.matomo_url + "/index.php", real.matomo_view_token, session, retry)

    with pytest.raises(MatomoError, match="not a super user"):
        client.check()
    with pytest.raises(MatomoError, match="must belong to a super user"):
        client.create_tracking_site(f"{unique}.example.test")


def test_a_wrong_url_is_a_clear_error_not_a_crash(real, session, retry):
    client = MatomoClient(real.matomo_url + "/no-such/index.php", real.matomo_token, session, retry)

    with pytest.raises(MatomoError, match="HTTP 404"):
        client.find_site("example.test")


# --- 1. an id the look-up answers for another name is not taken ------------------------------------------------

@pytest.mark.parametrize("asked, made_by_hand", [
    ("{u}awww.example.test", "https://{u}aexample.test"),  # Matomo drops every www., not only a leading one
    ("shop.www.{u}.test", "https://shop.{u}.test"),
])
def test_a_look_up_that_answers_another_names_site_makes_a_site_of_its_own(real, client, unique, asked,
                                                                            made_by_hand):
    other = hand_made(real, made_by_hand.format(u=unique))
    domain = asked.format(u=unique)
    assert matomo_api(real, "SitesManager.getSitesIdFromSiteUrl", url=f"https://{domain}").json() == [
        {"idsite": other}]  # what the real Matomo answers, and why the job may not take it

    site_id = client.create_tracking_site(domain)

    assert site_id != other
    assert urls_of(real, site_id)[0] == f"https://{domain}"
    assert client.find_site(domain) == site_id


def test_of_several_matches_the_site_whose_main_url_is_the_domain_wins(real, client, unique):
    domain = f"{unique}.example.test"
    alias_holder = hand_made(real, f"https://{unique}-other.example.test", f"https://{domain}")
    own = hand_made(real, f"https://{domain}")

    assert client.find_site(domain) == own
    assert own != alias_holder


# --- 2. an internationalised name made by hand in Unicode is found, not made twice ---------------------------

def test_a_site_made_by_hand_under_the_unicode_spelling_is_found_for_the_punycode_row(real, client, unique):
    unicode = f"münchen-{unique}.example.test"
    ascii_name = idna.encode(unicode, uts46=True).decode()
    made = hand_made(real, f"https://{unicode}")
    assert matomo_api(real, "SitesManager.getSitesIdFromSiteUrl", url=f"https://{ascii_name}").json() == []

    assert client.create_tracking_site(ascii_name) == made
    assert matomo_api(real, "SitesManager.getSitesIdFromSiteUrl", url=f"https://{ascii_name}").json() == []


def test_a_site_the_job_makes_for_an_internationalised_name_is_under_its_ascii_spelling(real, client, unique):
    ascii_name = idna.encode(f"bücher-{unique}.example.test", uts46=True).decode()

    site_id = client.create_tracking_site(ascii_name)

    assert urls_of(real, site_id) == [f"https://{ascii_name}", f"https://www.{ascii_name}"]
    assert client.create_tracking_site(ascii_name) == site_id


# --- 3. settings Matomo refuses fail --check, and a run says so once --------------------------------------------

@pytest.mark.parametrize("timezone, currency", [
    ("Mars/Olympus", None), ("UTC+15", None), ("Etc/GMT+5", None), ("US/Eastern", None), ("Europe/Kiev", None),
    (None, "XYZ"),
])
def test_check_fails_for_a_timezone_or_currency_matomo_refuses(real, session, retry, timezone, currency):
    client = MatomoClient(real.matomo_url + "/index.php", real.matomo_token, session, retry, timezone=timezone,
                          currency=currency)

    with pytest.raises(MatomoError) as caught:
        client.check()

    setting = "MATOMO_SITE_TIMEZONE" if timezone else "MATOMO_SITE_CURRENCY"
    assert f"{setting}={timezone or currency} is not a value Matomo accepts" in str(caught.value)


@pytest.mark.parametrize("timezone, currency", [("Europe/Berlin", "EUR"), ("UTC+5.5", "USD"), ("UTC", None)])
def test_check_passes_for_values_matomo_accepts_and_so_does_addsite(real, session, retry, unique, timezone,
                                                                   currency):
    client = MatomoClient(real.matomo_url + "/index.php", real.matomo_token, session, retry, timezone=timezone,
                          currency=currency)

    assert client.check().endswith("accepted")
    site_id = client.create_tracking_site(f"{unique}.example.test")
    site = matomo_api(real, "SitesManager.getSiteFromId", idSite=site_id).json()
    assert (site["timezone"], site["currency"]) == (timezone, currency or "USD")


def test_a_refused_timezone_is_said_once_in_a_run_not_once_per_site(real, session, retry, unique, caplog):
    client = MatomoClient(real.matomo_url + "/index.php", real.matomo_token, session, retry,
                          timezone="Mars/Olympus")

    for index in range(3):
        with pytest.raises(MatomoError):
            client.create_tracking_site(f"{unique}-{index}.example.test")

    errors = [record.getMessage() for record in caplog.records if record.levelno == logging.ERROR]
    assert len(errors) == 1 and "MATOMO_SITE_TIMEZONE=Mars/Olympus" in errors[0]
    assert 'The timezone "Mars/Olympus" is not valid' in errors[0]


# --- 4. its database down is worth another try -----------------------------------------------------------------

def test_matomo_with_its_database_down_answers_500_and_the_job_takes_it_as_transient(real, client):
    with matomo_database_down(real):
        answer = matomo_api(real, "SitesManager.getSitesIdFromSiteUrl", url="https://example.test")
        with pytest.raises(MatomoError) as caught:
            client.find_site("example.test")

    assert answer.status_code == 500 and "SQLSTATE[HY000] [2002]" in answer.json()["message"]
    assert caught.value.transient
    assert str(caught.value).startswith("SitesManager.getSitesIdFromSiteUrl: HTTP 500: SQLSTATE[HY000] [2002]")
    assert client.find_site("example.test") is None  # and back again once it is
