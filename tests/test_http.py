"""The shared HTTP session: a timeout on every request, the environment read once, not on every request."""

import responses

from hosting_automator.core.http import new_session


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
    assert not session.trust_env  # no per-request scan of the environment, and no .netrc credentials


@responses.activate
def test_new_session_verifies_tls_by_default(monkeypatch):
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)
    responses.get("https://stats.example.org/", body="{}")
    new_session(timeout=1).get("https://stats.example.org/", timeout=7)
    kwargs = responses.calls[0].request.req_kwargs
    assert kwargs["verify"] is True and kwargs["timeout"] == 7
