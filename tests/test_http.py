"""The shared HTTP session: a timeout on every request, the environment read once, not on every request."""

import pytest
import responses

from hosting_automator.core.http import new_session, send
from hosting_automator.errors import MatomoError


@responses.activate
def test_new_session_proxies_and_ca_bundle_come_from_the_environment_read_once(monkeypatch):
    monkeypatch.setenv("https_proxy", "http://proxy.internal:3128")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/company-ca.pem")
    responses.get("https://stats.example.org/index.php", body="{}")
    responses.get("http://127.0.0.1:3000/health", body="{}")
    session = new_session(timeout=2.5)

    session.get("https://stats.example.org/index.php")
    monkeypatch.setenv("https_proxy", "http://changed.internal:3128")  # read once: a later change is not seen
    session.get("https://stats.example.org/index.php")
    session.get("http://127.0.0.1:3000/health")

    sent = [call.request.req_kwargs for call in responses.calls]
    assert [kwargs["proxies"].get("https") for kwargs in sent] == ["http://proxy.internal:3128"] * 2 + [None]
    assert {kwargs["verify"] for kwargs in sent} == {"/etc/ssl/company-ca.pem"}
    assert {kwargs["timeout"] for kwargs in sent} == {2.5}


@responses.activate
def test_new_session_verifies_tls_by_default(monkeypatch):
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)
    responses.get("https://stats.example.org/", body="{}")
    new_session(timeout=1).get("https://stats.example.org/", timeout=7)
    kwargs = responses.calls[0].request.req_kwargs
    assert kwargs["verify"] is True and kwargs["timeout"] == 7


@responses.activate
def test_form_and_json_bodies_are_sent_exactly_as_requests_would():
    responses.post("https://stats.example.org/index.php", body="{}")
    session = new_session(timeout=5)

    session.post("https://stats.example.org/index.php", params={"module": "API", "method": "A.b"},
                 data={"siteName": "bücher.example", "urls[0]": "https://x.example/?a=1&b", "currency": None})
    session.post("https://stats.example.org/index.php", json={"domainName": "x.example", "n": 1},
                 headers={"X-API-Key": "k"})

    form, as_json = (call.request for call in responses.calls)
    assert form.url == "https://stats.example.org/index.php?module=API&method=A.b"
    assert form.body == b"siteName=b%C3%BCcher.example&urls%5B0%5D=https%3A%2F%2Fx.example%2F%3Fa%3D1%26b"
    assert form.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert form.headers["Content-Length"] == str(len(form.body))
    assert form.headers["User-Agent"] == "hosting-automator"
    assert as_json.body == b'{"domainName": "x.example", "n": 1}'
    assert as_json.headers["Content-Type"] == "application/json" and as_json.headers["X-API-Key"] == "k"


@responses.activate
def test_credentials_in_the_url_become_basic_auth_and_netrc_is_never_read(monkeypatch, tmp_path):
    netrc = tmp_path / "netrc"
    netrc.write_text("machine stats.example.org login netrc-user password netrc-pass\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    responses.post("https://stats.example.org/index.php", body="{}")
    responses.post("https://ops:s3cret@basic.example.org/index.php", body="{}")  # requests keeps them too
    session = new_session(timeout=5)

    session.post("https://stats.example.org/index.php", data={"a": "b"})
    session.post("https://ops:s3cret@basic.example.org/index.php", data={"a": "b"})

    plain, with_credentials = (call.request for call in responses.calls)
    assert "Authorization" not in plain.headers
    assert with_credentials.headers["Authorization"] == "Basic b3BzOnMzY3JldA=="  # ops:s3cret


@responses.activate
def test_a_redirect_is_not_followed_but_reported_with_where_it_points():
    responses.post("http://stats.example.org/index.php", status=301,
                   headers={"Location": "https://stats.example.org/index.php"})

    with pytest.raises(MatomoError) as caught:
        send(new_session(timeout=5), "POST", "http://stats.example.org/index.php", data={"token_auth": "t"},
             error=MatomoError, what="SitesManager.addSite")

    assert str(caught.value) == ("SitesManager.addSite: HTTP 301, a redirect to https://stats.example.org/index.php: "
                                 "set the address it points to")
    assert not caught.value.transient
    assert len(responses.calls) == 1  # the token was not sent on to the other address


def test_an_address_that_is_not_http_is_a_final_error_naming_it():
    with pytest.raises(MatomoError, match=r"^Matomo: request failed \(no connection adapters were found for "
                                          r"'ftp://stats.example.org/'\)$") as caught:
        send(new_session(timeout=5), "POST", "ftp://stats.example.org/", error=MatomoError, what="Matomo")
    assert not caught.value.transient
