"""The job's gateway client against the real cloudpanel-api gateway (running this repository's fake clpctl): the
ordinary paths, and where the real gateway differs from its documentation (its site listing, its parsing of
clpctl's output, its 429 answers, its 120 s kill that leaves clpctl running)."""

import ssl
from pathlib import Path

import pytest
import requests
import trustme

from hosting_automator.core.http import Session
from hosting_automator.errors import CertificateError, CloudPanelError, CloudPanelSetupError
from hosting_automator.services.cloudpanel_client import GatewayClient, document_root, site_user_for
from hosting_automator.services.served_certificate import served_certificate
from tests.standins import clpctl_state
from tests.standins.tls import FakeHttpsServer


@pytest.fixture(scope="module")
def https(real):
    """CloudPanel's HTTPS endpoint: serves what the fake clpctl behind the real gateway installed."""
    ca = trustme.CA()
    with FakeHttpsServer(ca, real.clpctl_db) as server:
        context = ssl.create_default_context()
        ca.configure_trust(context)
        yield server, context


@pytest.fixture
def session():
    with Session(timeout=30) as session:
        yield session


def gateway_client(url, token, session, retry, https):
    server, context = https
    host, port = server.address.rsplit(":", 1)
    return GatewayClient(url, token, session, retry=retry, served_certificate=lambda domain: served_certificate(
        domain, host, int(port), 10, context=context))


@pytest.fixture
def gateway(real, session, retry, https):
    return gateway_client(real.gateway_url, real.gateway_token, session, retry, https)


def listed(real, domain):
    """What the real gateway's site listing says of `domain`."""
    sites = requests.get(real.gateway_url + "/lists/api/sites", timeout=30).json()
    return [site for site in sites if site["domain"] == domain]


# --- the ordinary paths ---------------------------------------------------------------------------------------

def test_a_site_is_created_listed_and_found_again_on_a_rerun_without_a_second_add(real, gateway, unique):
    domain = f"{unique}.example.test"

    made = gateway.create_static_site(domain)
    again = gateway.create_static_site(domain)

    user = site_user_for(domain)
    assert (made.doc_root, made.created) == (document_root(user, domain), True)
    assert (again.doc_root, again.created) == (made.doc_root, False)
    assert [site["user"] for site in listed(real, domain)] == [user]
    adds = [call for call in clpctl_state.calls(real.clpctl_db) if f"--domainName={domain}" in call["argv"]]
    assert len(adds) == 1


def test_a_certificate_is_installed_and_not_ordered_again_while_it_is_served(real, gateway, unique):
    domain = f"{unique}.example.test"
    gateway.create_static_site(domain)

    assert gateway.provision_ssl(domain, new_site=True) is True
    assert gateway.provision_ssl(domain) is False
    assert len(clpctl_state.certificate_requests(real.clpctl_db, domain)) == 1


def test_check_says_the_key_is_accepted_and_the_listing_is_there(real, gateway):
    assert gateway.check().startswith(f"gateway {real.gateway_url} reachable, key accepted; its site listing shows ")


def test_a_wrong_key_stops_the_run_naming_the_setting(real, session, retry, https, unique):
    client = gateway_client(real.gateway_url, "0" * 48, session, retry, https)

    with pytest.raises(CloudPanelSetupError, match="refused CLOUDPANEL_API_TOKEN"):
        client.create_static_site(f"{unique}.example.test")
    with pytest.raises(CloudPanelSetupError, match="refused CLOUDPANEL_API_TOKEN"):
        client.check()


def test_a_url_without_the_gateways_routes_stops_the_run_naming_the_setting(real, session, retry, https, unique):
    client = gateway_client(real.gateway_url + "/v2", real.gateway_token, session, retry, https)

    with pytest.raises(CloudPanelSetupError, match="set CLOUDPANEL_API_URL to the gateway's base URL"):
        client.create_static_site(f"{unique}.example.test")


def test_clpctls_refusal_is_the_sites_failure_with_clpctls_words(real, gateway, clpctl_control, unique):
    domain = f"{unique}.example.test"
    clpctl_control({domain: {"site:add:static": "fail:siteUserPassword: This value is too short."}})

    with pytest.raises(CloudPanelError) as caught:
        gateway.create_static_site(domain)

    assert not caught.value.transient
    assert "This value is too short" in str(caught.value)


# --- 9. a success the gateway's parsing hides is judged by what is there ------------------------------------------

def test_a_certificate_whose_success_line_the_gateway_drops_is_recorded_as_installed(real, gateway, clpctl_control,
                                                                                     unique):
    domain = f"{unique}.example.test"
    gateway.create_static_site(domain)
    clpctl_control({domain: {"lets-encrypt:install:certificate":
                             f"say:Certificate installation was successful.\nDomain: {domain}"}})

    assert gateway.provision_ssl(domain, new_site=True) is True

    assert len(clpctl_state.certificate_requests(real.clpctl_db, domain)) == 1


@pytest.mark.parametrize("says", ["", "Site added.\nSite User: someone"])
def test_a_site_whose_success_line_is_missing_counts_once_the_listing_shows_it(real, gateway, clpctl_control, unique,
                                                                              says):
    domain = f"{unique}.example.test"
    clpctl_control({domain: {"site:add:static": f"say:{says}"}})

    site = gateway.create_static_site(domain)

    assert (site.doc_root, site.created) == (document_root(site_user_for(domain), domain), True)


# --- 10. a site made by hand: its true doc_root from the listing ------------------------------------------------

def test_a_site_made_by_hand_gets_its_true_doc_root_from_the_gateways_listing(real, gateway, unique):
    domain = f"{unique}.example.test"
    clpctl_state.add_site(real.clpctl_db, domain, f"{unique}-hand")
    Path(real.clpctl_home, f"{unique}-hand", "htdocs", domain).mkdir(parents=True)

    site = gateway.create_static_site(domain)

    assert (site.doc_root, site.created) == (f"/home/{unique}-hand/htdocs/{domain}", False)
    assert not [call for call in clpctl_state.calls(real.clpctl_db) if f"--domainName={domain}" in call["argv"]]


# --- 8. its 429: the header's remainder, and a paused certificate call that crashes nothing -----------------------

def test_a_429_on_the_certificate_call_pauses_cloudpanel_and_the_next_sites_step_is_left_for_the_next_run(
        real, session, retry, https, sleeps, unique):
    client = gateway_client(real.limited_gateway_url, real.limited_gateway_token, session, retry, https)
    while requests.get(real.limited_gateway_url + "/api/user/list", timeout=30,
                       headers={"X-API-Key": real.limited_gateway_token}).status_code != 429:
        pass  # its window allows 3 requests: spend them
    answer = requests.post(real.limited_gateway_url + "/api/letsencrypt/install-certificate", timeout=30,
                           headers={"X-API-Key": real.limited_gateway_token}, json={"domainName": "x.example.test"})

    with pytest.raises(CertificateError) as certificate:
        client.provision_ssl(f"{unique}.example.test", new_site=True)
    with pytest.raises(CloudPanelError) as site:
        client.create_static_site(f"{unique}-next.example.test")

    assert answer.status_code == 429 and answer.json()["retryAfter"] == 900
    waited = float(answer.headers["Retry-After"])
    assert certificate.value.transient and certificate.value.retry_after == pytest.approx(waited, abs=5)
    assert type(site.value) is CloudPanelError and site.value.transient  # the site step handles it: no crash
    assert str(site.value).startswith("CloudPanel: not asked: CloudPanel asked this run to wait")
    assert sleeps == []
