"""Hostile rows and database faults through the real command: precise outcomes, nothing lost, a rerun converges."""

import json

import pytest

from tests.support.harness import run_job
from tests.standins.clpctl_state import calls, certificate_requests, read_sites
from tests.standins.faults import Fault, once

HOSTILE = [
    ("", "invalid domain: domain is empty"),
    ("   ", "invalid domain: domain is empty"),
    (None, "invalid domain: domain is empty (NULL)"),
    (42, "invalid domain: domain must be text, got int 42"),
    ("example.com; rm -rf /", "invalid domain: domain contains characters not allowed in a host name (;): "
                              "'example.com; rm -rf /'"),
    ("$(reboot).com", "invalid domain: domain contains characters not allowed in a host name ($ ( )): '$(reboot).com'"),
    ("`id`.com", "invalid domain: domain contains characters not allowed in a host name (`): '`id`.com'"),
    ("exa mple.com", "invalid domain: domain contains whitespace: 'exa mple.com'"),
    ("http://example.com/", "invalid domain: domain must be a bare host name, not a URL: 'http://example.com/'"),
    ("example.com:8080", "invalid domain: domain must not contain a port: 'example.com:8080'"),
    ("*.example.com", "invalid domain: wildcard domains are not supported: '*.example.com'"),
    ("-bad.com", "invalid domain: label '-bad' must not start or end with a hyphen"),
    ("bad-.com", "invalid domain: label 'bad-' must not start or end with a hyphen"),
    ("a..b.com", "invalid domain: domain has an empty label (two dots in a row, or a leading dot): 'a..b.com'"),
    ("a" * 64 + ".com", "invalid domain: label 'aaaaaaaaaaaaaaaaaaaa…' is 64 characters long, more than the 63 allowed"),
    (".".join(["b" * 50] * 5) + ".abcde", "invalid domain: domain is 260 characters long, more than the 253 allowed"),
    ("xn--zz.com", "invalid domain: label 'xn--zz' is not valid punycode (Invalid A-label)"),
    ("new\nline.com", "invalid domain: domain contains whitespace: 'new\\nline.com'"),
]
VALID = [("EXAMPLE.COM.", "example.com"), ("例え.jp", "xn--r8jz45g.jp")]


def test_hostile_domains_fail_precisely_without_any_service_call(standins):
    ids = {}
    for value, _ in HOSTILE:
        ids[json.dumps(value)] = standins.postgrest.insert(
            {"domain": value, "status_dns": "active", "status_hosting": "pending"})["id"]

    result = run_job(standins)

    assert result.returncode == 1
    for value, message in HOSTILE:
        row = standins.postgrest.get(ids[json.dumps(value)])
        assert (row["status_hosting"], row["error_message"], row["doc_root"]) == ("failed", message, None), value
    assert calls(standins.db_path) == []  # clpctl never ran
    assert standins.matomo.requests_log == [] and standins.tls.handshakes == []
    assert "Traceback" not in result.log + result.stderr
    assert f"Run finished: 0 active (0 without Matomo), {len(HOSTILE)} failed" in result.log
    assert all(line[:4] == "2026" or line[:2] == "20" for line in result.log.splitlines())  # no line was forged


def test_valid_but_unusual_names_are_normalised_before_any_call(standins):
    ids = [standins.postgrest.insert({"domain": raw, "status_dns": "active", "status_hosting": "pending"})["id"]
           for raw, _ in VALID]
    result = run_job(standins)
    assert result.returncode == 0, result.log
    assert sorted(s["domain_name"] for s in read_sites(standins.db_path)) == sorted(name for _, name in VALID)
    for row_id, (_, name) in zip(ids, VALID):
        assert standins.postgrest.get(row_id)["doc_root"].endswith(f"/htdocs/{name}")


def patch_of(domain, fault):
    """A fault for every write of the outcome of the row holding `domain` (not its claim)."""
    def hook(request, standins):
        if request["method"] != "PATCH" or '"status_hosting"' not in request["body"]:
            return None
        row_id = int(request["query"]["id"][0].split(".", 1)[1])
        return fault if standins.postgrest.get(row_id)["domain"] == domain else None
    return hook


@pytest.mark.parametrize("fault, reason", [
    (Fault.status(500, {"code": "XX000", "details": None, "hint": None, "message": "internal error"}),
     "HTTP 500 XX000: internal error"),
    (Fault.drop(), "Supabase: no whole answer came (Server disconnected without sending a response.)"),
    (Fault.delay(1.0), "Supabase: no answer within 0.3 s (timeout)"),
])
def test_final_write_failing_leaves_the_site_pending_and_the_next_run_converges(standins, fault, reason):
    for domain in ("a.example.test", "b.example.test"):
        standins.postgrest.insert({"domain": domain, "status_dns": "active", "status_hosting": "pending"})
    hook = patch_of("a.example.test", fault)
    standins.postgrest.fault = lambda request: hook(request, standins)

    first = run_job(standins, overrides={"HTTP_TIMEOUT": "0.3"}, fast_retries=True)

    rows = {row["domain"]: row for row in standins.postgrest.rows()}
    assert first.returncode == 1
    assert "[a.example.test] Could not record the outcome (active): record the outcome of site " in first.log
    assert reason in first.log
    if not isinstance(fault, Fault) or fault.kind != "delay":  # a slow write may land after we gave up on it
        assert rows["a.example.test"]["status_hosting"] == "pending"
    assert rows["b.example.test"]["status_hosting"] == "active"  # the run went on

    standins.postgrest.fault = None
    second = run_job(standins)

    assert second.returncode == 0, second.log
    row = {row["domain"]: row for row in standins.postgrest.rows()}["a.example.test"]
    assert row["status_hosting"] == "active" and row["matomo_id"] is not None
    assert [s["domain_name"] for s in read_sites(standins.db_path)].count("a.example.test") == 1
    assert len(certificate_requests(standins.db_path, "a.example.test")) == 1
    assert [s["name"] for s in standins.matomo.sites.values()].count("a.example.test") == 1


def test_transient_faults_everywhere_are_retried_and_the_site_goes_live(gateway_standins):
    standins = gateway_standins
    standins.postgrest.insert({"domain": "flaky.example.test", "status_dns": "active", "status_hosting": "pending"})
    from tests.standins.faults import times

    standins.postgrest.fault = times(2, Fault.status(503, {"message": "unavailable"}))
    standins.matomo.fault = times(2, Fault.drop(), lambda r: "getSitesIdFromSiteUrl" in str(r["query"]))
    standins.gateway.fault = times(1, Fault.status(429, {"success": False, "error": "Too many requests",
                                                         "retryAfter": 2}),
                                   lambda r: r["path"].startswith("/api/"))  # as the gateway limits: /api/ only

    result = run_job(standins, fast_retries=True)

    assert result.returncode == 0, result.log
    row = standins.postgrest.rows()[-1]
    assert (row["status_hosting"], row["matomo_id"]) == ("active", 1)
    assert len(standins.matomo.sites) == 1
    assert "read the pending sites failed (read the pending sites: HTTP 503" in result.log
    assert "trying again in 2.0 s (attempt 2 of 4)" in result.log  # the gateway's retryAfter
    assert "[flaky.example.test] Matomo failed (SitesManager.getSitesIdFromSiteUrl: no whole answer came" in result.log
    assert result.log.count("trying again") == 5


def test_matomo_add_whose_answer_is_lost_is_not_sent_again_and_the_site_goes_live_without_it(standins):
    standins.postgrest.insert({"domain": "slow.example.test", "status_dns": "active", "status_hosting": "pending"})
    standins.matomo.fault = once(Fault.delay(1.0), lambda r: "addSite" in str(r["query"]))

    result = run_job(standins, overrides={"HTTP_TIMEOUT": "0.3"}, fast_retries=True)

    assert result.returncode == 0, result.log
    row = standins.postgrest.rows()[-1]
    assert (row["status_hosting"], row["matomo_id"]) == ("active", None)
    assert "[slow.example.test] Matomo: SitesManager.addSite: no answer within 0.3 s (timeout); it may still have " \
           "been made, so it is not sent again this run; the site goes live without tracking" in result.log
    assert sum("addSite" in r["query"].get("method", [""])[0] for r in standins.matomo.requests_log) == 1