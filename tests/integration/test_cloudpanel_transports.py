"""What the CloudPanel client does whichever transport carries it, run over both: the local clpctl (the fake clpctl
executable) and the clpctl HTTP gateway (the FakeGateway stand-in over a real socket, running the same fake clpctl
code). Both keep their sites, commands and certificate requests in one SQLite file, read here the same way, so each
test states one outcome for both; where the two word a failure differently, the test names both wordings.
What only one transport has (a hung process, a missing executable, the gateway's key and HTTP answers):
tests/integration/test_cloudpanel_client.py and tests/unit/test_cloudpanel_client.py."""

import logging
import string

import pytest

from hosting_automator.errors import CertificateError, CloudPanelError
from hosting_automator.masking import MASK, secret_values
from hosting_automator.services.cloudpanel_client import (PASSWORD_LENGTH, ClpctlClient, GatewayClient, StaticSite,
                                                          site_user_for)
from tests.standins import clpctl_state
from tests.standins.__main__ import FAKE_CLPCTL
from tests.standins.gateway import FakeGateway
from tests.support.cloudpanel import EXPIRING, GATEWAY_TOKEN, VALID

ACME_FAILURE = ("example.com: Domain could not be validated, error message: error type: "
                "urn:ietf:params:acme:error:connection, error detail: 203.0.113.9: Fetching "
                "http://example.com/.well-known/acme-challenge/x: Connection refused")


class Panel:
    """One CloudPanel behind one transport: `client()` builds the job's client for it; `db_path` is its state
    (sites, commands run, certificate requests); `control(domain, command, behaviour)` makes clpctl misbehave."""

    def __init__(self, transport, db_path, control_path, make_client):
        self.transport, self.db_path, self._control_path = transport, db_path, control_path
        self.client = make_client

    def control(self, domain, command, behaviour):
        clpctl_state.write_control(self._control_path, {domain: {command: behaviour}})

    def commands(self):
        return [call["argv"][0] for call in clpctl_state.calls(self.db_path)]

    def says(self, clpctl, gateway):
        """The wording this transport gives."""
        return clpctl if self.transport == "clpctl" else gateway


@pytest.fixture(params=["clpctl", "gateway"])
def panel(request, tmp_path, monkeypatch, retry, served, session):
    db_path, control_path = str(tmp_path / "clp" / "db.sq3"), str(tmp_path / "control.json")
    (tmp_path / "clp").mkdir()
    clpctl_state.ensure_db(db_path)
    if request.param == "clpctl":
        monkeypatch.setenv("FAKE_CLPCTL_DB", db_path)
        monkeypatch.setenv("FAKE_CLPCTL_CONTROL", control_path)
        monkeypatch.delenv("FAKE_CLPCTL_LATENCY_MS", raising=False)
        yield Panel("clpctl", db_path, control_path,
                    lambda: ClpctlClient(str(FAKE_CLPCTL), db_path, retry=retry, served_certificate=served))
        return
    with FakeGateway(db_path, api_key=GATEWAY_TOKEN, control_path=control_path) as gateway:
        yield Panel("gateway", db_path, control_path,
                    lambda: GatewayClient(gateway.url, GATEWAY_TOKEN, session, retry=retry, served_certificate=served))


# --- the site ----------------------------------------------------------------------------------------------------

def test_a_new_domain_gets_a_static_site_under_its_derived_site_user(panel, caplog):
    caplog.set_level(logging.INFO)

    site = panel.client().create_static_site("example.com")

    user = site_user_for("example.com")
    assert site == StaticSite(f"/home/{user}/htdocs/example.com", created=True)
    row = clpctl_state.site(panel.db_path, "example.com")
    assert row["user"] == user and row["type"] == "static"
    assert panel.commands() == ["site:add:static"]
    assert f"CloudPanel site created (site user {user})" in caplog.messages


def test_a_site_asked_for_twice_is_made_once(panel, caplog):
    caplog.set_level(logging.INFO)
    client = panel.client()
    first = client.create_static_site("example.com")

    second = client.create_static_site("example.com")

    assert second == first._replace(created=False)
    assert len(clpctl_state.read_sites(panel.db_path)) == 1
    assert panel.commands() == ["site:add:static"]
    assert f"CloudPanel site exists already (site user {site_user_for('example.com')})" in caplog.messages


def test_a_site_made_by_hand_is_kept_with_its_own_document_root(panel):
    clpctl_state.add_site(panel.db_path, "example.com", "handmade")

    site = panel.client().create_static_site("example.com")

    assert site == StaticSite("/home/handmade/htdocs/example.com", created=False)
    assert panel.commands() == []


def test_a_derived_site_user_taken_by_another_site_fails_naming_that_user(panel):
    user = site_user_for("example.com")
    clpctl_state.add_site(panel.db_path, "other.example", user)

    with pytest.raises(CloudPanelError) as caught:
        panel.client().create_static_site("example.com")

    assert str(caught.value).startswith(f"site user {user} exists already but not for example.com")
    assert not caught.value.transient
    assert clpctl_state.site(panel.db_path, "example.com") is None


def test_a_refused_site_fails_with_clpctls_words_and_is_not_tried_again(panel, sleeps):
    panel.control("example.com", "site:add:static", "fail:domainName: This value is not valid.")

    with pytest.raises(CloudPanelError) as caught:
        panel.client().create_static_site("example.com")

    assert str(caught.value) == panel.says(
        clpctl="clpctl site:add:static failed: domainName: This value is not valid.",
        gateway="gateway: add the static site: HTTP 500: domainName: This value is not valid.")
    assert caught.value.transient is False
    assert clpctl_state.read_sites(panel.db_path) == []
    assert panel.commands() == ["site:add:static"] and sleeps == []


# --- the site's password -----------------------------------------------------------------------------------------

def test_the_site_password_is_32_letters_and_digits_masked_and_never_logged(panel, passwords, caplog):
    caplog.set_level(logging.DEBUG)

    panel.client().create_static_site("example.com")

    password, = passwords
    assert len(password) == PASSWORD_LENGTH == 32
    assert set(password) <= set(string.ascii_letters + string.digits)
    # masked for the rest of the run: a service may still echo it in a later message
    assert secret_values.mask(f"pw={password}") == f"pw={MASK}"
    call, = clpctl_state.calls(panel.db_path)
    assert "--siteUserPassword=<redacted>" in call["argv"]
    assert password not in call["argv_json"]
    assert all(password not in record.getMessage() for record in caplog.records)


def test_two_sites_get_two_passwords(panel, passwords):
    client = panel.client()
    client.create_static_site("one.example.com")
    client.create_static_site("two.example.com")

    assert len(passwords) == 2 and passwords[0] != passwords[1]


# --- the certificate ---------------------------------------------------------------------------------------------

def test_a_certificate_is_ordered_once_and_looked_at_before_and_after(panel, served, caplog):
    caplog.set_level(logging.INFO)
    client = panel.client()
    client.create_static_site("example.com")

    client.provision_ssl("example.com")

    assert served.looks == ["example.com", "example.com"]  # before the order, and after it to see it served
    assert [row["domain_name"] for row in clpctl_state.certificate_requests(panel.db_path)] == ["example.com"]
    assert clpctl_state.calls(panel.db_path)[-1]["argv"] == ["lets-encrypt:install:certificate",
                                                             "--domainName=example.com"]
    assert (f"Let's Encrypt certificate installed, clpctl says (not served yet: {served.answers[0].reason})"
            in caplog.messages)  # the gateway passes clpctl's words on


def test_a_domain_lets_encrypt_cannot_validate_fails_with_the_acme_detail(panel):
    clpctl_state.add_site(panel.db_path, "example.com", "someone")
    panel.control("example.com", "lets-encrypt:install:certificate", f"fail:{ACME_FAILURE}")

    with pytest.raises(CertificateError) as caught:
        panel.client().provision_ssl("example.com")

    assert str(caught.value) == panel.says(
        clpctl=f"clpctl lets-encrypt:install:certificate failed: {ACME_FAILURE}",
        # the gateway keeps what follows the first "error" and a space or colon (its parseErrorMessage)
        gateway="gateway: install the certificate: HTTP 500: " + ACME_FAILURE.split("error ", 1)[1])
    assert caught.value.transient is False
    assert clpctl_state.certificate_requests(panel.db_path) == []


def test_a_certificate_for_a_site_that_is_not_there_fails_saying_so(panel):
    with pytest.raises(CertificateError) as caught:
        panel.client().provision_ssl("nosite.example")

    assert str(caught.value) == panel.says(
        clpctl='clpctl lets-encrypt:install:certificate failed: Site "nosite.example" does not exist.',
        gateway='gateway: install the certificate: HTTP 500: Site "nosite.example" does not exist.')
    assert clpctl_state.certificate_requests(panel.db_path) == []


def test_a_valid_served_certificate_is_kept_and_none_ordered(panel, served, caplog):
    caplog.set_level(logging.INFO)
    clpctl_state.add_site(panel.db_path, "example.com", "someone")
    served.answers = [VALID]

    panel.client().provision_ssl("example.com")

    assert served.looks == ["example.com"]
    assert panel.commands() == [] and clpctl_state.certificate_requests(panel.db_path) == []
    assert "SSL: a valid certificate is served already (80 days left); not requesting another" in caplog.messages


def test_an_expiring_served_certificate_is_replaced_saying_why(panel, served, caplog):
    caplog.set_level(logging.INFO)
    clpctl_state.add_site(panel.db_path, "example.com", "someone")
    served.answers = [EXPIRING]

    panel.client().provision_ssl("example.com")

    assert served.looks == ["example.com", "example.com"]
    assert len(clpctl_state.certificate_requests(panel.db_path, "example.com")) == 1
    assert ("SSL: requesting a Let's Encrypt certificate (the certificate served expires in 5 days)"
            in caplog.messages)


def test_a_site_made_a_moment_ago_is_given_a_certificate_without_a_look_first(panel, served, caplog):
    caplog.set_level(logging.INFO)
    clpctl_state.add_site(panel.db_path, "example.com", "someone")
    served.answers = [VALID]  # what a look would find: a site made a moment ago serves another name's certificate

    panel.client().provision_ssl("example.com", new_site=True)

    assert served.looks == ["example.com"]  # only after the order, to see it served
    assert len(clpctl_state.certificate_requests(panel.db_path, "example.com")) == 1
    assert "SSL: requesting a Let's Encrypt certificate (the site was just created)" in caplog.messages
