"""The contract between the stand-ins and the real services: every case runs against the stand-in and against the
real one (the `matomo` and `gateway` fixtures are parametrized over both) and asserts the same answer, the real
service's, written down here. When a stand-in drifts from the real service, its half fails.

Two cases take long against the real services: the gateway's 120 s kill (about 2.5 min, the only real wait of the
suite) and Matomo with its database down (a MariaDB restart, a few seconds). Run the rest with
`-k "not kill and not database"`."""

from __future__ import annotations

import time

import idna
import pytest

from tests.conformance.contract import (WRONG_TOKEN, GatewayHandle, MatomoHandle, flag, new_token, stamped)
from tests.conformance.real_db import (failed_logins_in_the_window, forget_failed_logins, last_failed_login,
                                      matomo_database_down)
from tests.standins import clpctl_state
from tests.standins.gateway import FakeGateway
from tests.standins.matomo import CURRENCIES, TIMEZONES, FakeMatomo

SIDES = ["standin", "real"]


# --- the handles --------------------------------------------------------------------------------------------------

@pytest.fixture(params=SIDES)
def matomo(request):
    if request.param == "real":
        real = request.getfixturevalue("real")
        before = last_failed_login(real)
        try:
            yield MatomoHandle("real", real.matomo_url + "/index.php", real.matomo_token, real.matomo_view_token,
                               real.matomo_secure_token, lambda: matomo_database_down(real),
                               lambda: failed_logins_in_the_window(real), lambda: forget_failed_logins(real, before))
        finally:  # 20 failed logins an hour would block Matomo for every test of the tier: none are left behind
            forget_failed_logins(real, before)
        return
    stand_in = FakeMatomo(token=new_token())
    stand_in.add_site("First site", ["https://first.example"])  # the real one's site 1, from its installer
    view, secure = new_token(), new_token()
    stand_in.add_token(view, view_sites={1})
    stand_in.add_token(secure, superuser=True, secure_only=True)
    with stand_in:
        yield MatomoHandle("standin", stand_in.url + "/index.php", stand_in.token, view, secure,
                           lambda: flag(stand_in, "database_down"), lambda: len(stand_in.failed_logins),
                           stand_in.failed_logins.clear)


def _standin_gateway(tmp_path, name, **settings):
    stand_in = FakeGateway(tmp_path / f"{name}.sq3", api_key=new_token(), control_path=tmp_path / f"{name}.json")
    for setting, value in settings.items():
        setattr(stand_in, setting, value)
    return stand_in


def _gateway_side(request, tmp_path, which, **settings):
    """The handle of one side: the real gateway `which` ("main" or "limited"), or a stand-in set up as it is."""
    if request.param == "real":
        real = request.getfixturevalue("real")
        url, token = ((real.gateway_url, real.gateway_token) if which == "main"
                      else (real.limited_gateway_url, real.limited_gateway_token))
        yield GatewayHandle("real", url, token, real.clpctl_db, request.getfixturevalue("clpctl_control"))
        return
    with _standin_gateway(tmp_path, which, **settings) as stand_in:
        yield GatewayHandle("standin", stand_in.url, stand_in.api_key, stand_in.db_path,
                            lambda control: clpctl_state.write_control(stand_in.control_path, control), stand_in)


@pytest.fixture(params=SIDES)
def gateway(request, tmp_path):
    yield from _gateway_side(request, tmp_path, "main")


@pytest.fixture(params=SIDES)
def limited_gateway(request, tmp_path):
    """The gateway with a rate limit of 3 requests per 15 minutes (the real one's window may be spent already)."""
    yield from _gateway_side(request, tmp_path, "limited", rate_limit=3, rate_window=900.0)


def error(message, status=200):
    return status, {"result": "error", "message": message}


SUPERUSER = "You can't access this resource as it requires a 'superuser' access."
POST_TOKEN = "Unable to authenticate with the provided token. It is either invalid or expired."
QUERY_TOKEN = ("Unable to authenticate with the provided token. It is either invalid, expired or is required to be "
               "sent as a POST parameter.")


def view_refused(site_id):
    return error(f"You can't access this resource as it requires 'view' access for the website id = {site_id}.", 401)


# === Matomo ========================================================================================================

# --- ordinary paths, and 1: ids are integers --------------------------------------------------------------------

def test_matomo_add_look_up_add_again_and_read_the_site(matomo, unique):
    url = f"https://{unique}.example.test"
    first = matomo.add(url)
    found = matomo.lookup(url)
    second = matomo.add(url)  # Matomo allows duplicates
    both = matomo.lookup(url)
    site = matomo.call("SitesManager.getSiteFromId", idSite=first)

    assert found.pair == (200, [{"idsite": first}])
    assert second != first and both.pair == (200, [{"idsite": first}, {"idsite": second}])
    assert site.status == 200 and isinstance(site.body.pop("ts_created"), str)
    assert site.body == {"idsite": first, "name": url, "main_url": url, "ecommerce": 0, "sitesearch": 1,
                         "sitesearch_keyword_parameters": "", "sitesearch_category_parameters": "",
                         "timezone": "UTC", "currency": "USD", "exclude_unknown_urls": 0, "excluded_ips": "",
                         "excluded_parameters": "", "excluded_user_agents": "", "excluded_referrers": "",
                         "group": "", "type": "website", "keep_url_fragment": 0, "creator_login": "admin",
                         "timezone_name": "UTC", "currency_name": "US Dollar"}
    assert matomo.call("SitesManager.getSiteFromId", idSite=999999999).pair == error(
        "An unexpected website was found in the request: website id was set to '999999999' .")
    assert matomo.call("SitesManager.getSitesIdFromSiteUrl").pair == error("Please specify a value for 'url'.")


def test_matomo_xml_answers(matomo, unique):
    site_id = matomo.add(f"https://{unique}.example.test")
    xml = '<?xml version="1.0" encoding="utf-8" ?>\n'

    assert matomo.lookup(f"https://{unique}.example.test").status == 200
    assert matomo.call("SitesManager.getSitesIdFromSiteUrl", fmt="xml", url=f"https://{unique}.example.test").text \
        == f"{xml}<result>\n\t<row>\n\t\t<idsite>{site_id}</idsite>\n\t</row>\n</result>"
    assert matomo.call("SitesManager.getSitesIdFromSiteUrl", fmt="xml", url=f"https://no-{unique}.example.test") \
        .text == f"{xml}<result />"
    assert matomo.call("UsersManager.hasSuperUserAccess", fmt="xml").text == f"{xml}<result>1</result>"
    assert matomo.call("SitesManager.addSite", fmt="xml", siteName="x", timezone="Mars/Olympus",
                       **{"urls[0]": "https://x.example.test"}).text == (
        f'{xml}<result>\n\t<error message="The timezone &quot;Mars/Olympus&quot; is not valid. Please enter a valid '
        'timezone." />\n</result>')


def test_matomo_unknown_method_module_and_path(matomo):
    assert matomo.call("SitesManager.nope").pair == error(
        "The method 'nope' does not exist or is not available in the module '\\Piwik\\Plugins\\SitesManager\\API'.")
    assert matomo.call("Nope.nope").pair == error(
        "The plugin Nope is not enabled. You can activate the plugin on Settings &gt; Plugins page in Matomo.")
    assert matomo.call("").pair == error(
        "The parameter 'method' isn't set in the Request, and a default value wasn't provided.")
    missing = matomo.http.get(matomo.url.replace("/index.php", "/nope"), timeout=30)
    assert (missing.status_code, missing.headers["Content-Type"]) == (404, "text/html; charset=iso-8859-1")
    assert "<h1>Not Found</h1>" in missing.text


# --- 2: the look-up drops every www., main URLs before aliases ----------------------------------------------------

def test_matomo_lookup_drops_every_www_and_tries_both_schemes(matomo, unique):
    plain = matomo.add(f"https://a{unique}.example.test")
    shop = matomo.add(f"https://shop.{unique}.example.test")
    http = matomo.add(f"http://h{unique}.example.test/")

    assert matomo.lookup(f"https://awww.{unique}.example.test").pair == (200, [{"idsite": plain}])
    assert matomo.lookup(f"https://shop.www.{unique}.example.test").pair == (200, [{"idsite": shop}])
    assert matomo.lookup(f"a{unique}.example.test").pair == (200, [{"idsite": plain}])  # no scheme: both tried
    assert matomo.lookup(f"https://www.h{unique}.example.test/").pair == (200, [{"idsite": http}])
    assert matomo.lookup(f"https://a{unique}.example.test//").pair == (200, [])  # one slash comes off, not two
    # "https://" is taken out case-sensitively: an upper-case scheme is compared only as it is
    assert matomo.lookup(f"HTTPS://H{unique.upper()}.EXAMPLE.TEST").pair == (200, [])


def test_matomo_lookup_lists_main_url_matches_before_alias_matches(matomo, unique):
    shared = f"https://o{unique}.example.test"
    with_alias = matomo.add(f"https://x{unique}.example.test", shared)
    main = matomo.add(shared)
    second_alias = matomo.add(f"https://z{unique}.example.test", shared)
    www_main = matomo.add(f"http://www.o{unique}.example.test")

    assert matomo.lookup(shared).pair == (200, [{"idsite": main}, {"idsite": www_main}, {"idsite": with_alias},
                                                {"idsite": second_alias}])
    assert matomo.call("SitesManager.getSiteUrlsFromId", idSite=with_alias).pair == (
        200, [f"https://x{unique}.example.test", shared])  # the main URL first
    assert matomo.call("SitesManager.getSiteUrlsFromId", idSite=matomo.add(
        f"https://m{unique}.example.test", f"https://b{unique}.example.test", f"https://A{unique}.example.test")
    ).pair == (200, [f"https://m{unique}.example.test", f"https://A{unique}.example.test",
                     f"https://b{unique}.example.test"])  # then the aliases, in the order of their table's key


def test_matomo_cleans_the_urls_it_stores(matomo, unique):
    site_id = matomo.add(f"https://{unique}.example.test/?a=1&b='2'", f"//{unique}.example.test",
                         f"{unique}-b.example.test/", f"https://{unique}.example.test/?a=1&b='2'",
                         f"https://{unique}.example.test%2Fpath")

    assert matomo.call("SitesManager.getSiteUrlsFromId", idSite=site_id).pair == (
        200, [f"https://{unique}.example.test/?a=1&b='2'", f"http://{unique}-b.example.test",  # the main URL, then
              f"http://{unique}.example.test", f"https://{unique}.example.test/path"])  # the aliases sorted


# --- 3: Unicode and case ------------------------------------------------------------------------------------------

def test_matomo_stores_unicode_as_given_and_compares_without_case_or_accents(matomo, unique):
    unicode_url = f"https://münchen{unique}.example.test"
    punycode_url = "https://" + idna.encode(f"münchen{unique}.example.test").decode()
    site_id = matomo.add(unicode_url)
    mixed = matomo.add(f"https://MiXed{unique}.example.test")

    assert matomo.lookup(punycode_url).pair == (200, [])
    assert matomo.lookup(unicode_url).pair == (200, [{"idsite": site_id}])
    assert matomo.lookup(f"https://munchen{unique}.example.test").pair == (200, [{"idsite": site_id}])
    assert matomo.lookup(f"https://MÜNCHEN{unique}.example.test").pair == (200, [{"idsite": site_id}])
    assert matomo.call("SitesManager.getSiteUrlsFromId", idSite=site_id).pair == (200, [unicode_url])
    assert matomo.lookup(f"https://mixed{unique}.example.test").pair == (200, [{"idsite": mixed}])
    assert matomo.call("SitesManager.getSiteUrlsFromId", idSite=mixed).pair == (
        200, [f"https://MiXed{unique}.example.test"])


# --- 4: tokens ----------------------------------------------------------------------------------------------------

def test_matomo_an_empty_token_is_the_anonymous_user(matomo, unique):
    assert matomo.lookup("https://first.example", token="").pair == (200, [])
    assert matomo.call("SitesManager.addSite", token="", siteName=unique,
                       **{"urls[0]": f"https://{unique}.example.test"}).pair == error(SUPERUSER, 401)
    assert matomo.call("UsersManager.hasSuperUserAccess", token="").pair == (200, {"value": False})
    assert matomo.call("SitesManager.getSiteUrlsFromId", token="", idSite=1).pair == view_refused(1)
    assert matomo.call("API.getMatomoVersion", token="").pair == error(
        "You can't access this resource as it requires view access for at least one website.", 401)
    anonymous = matomo.call("SitesManager.getTimezonesList", token="")
    assert anonymous.status == 200 and anonymous.body["UTC"]["UTC+5.5"] == "UTC+5:30"
    assert matomo.call("UsersManager.hasSuperUserAccess", token="anonymous").pair == (200, {"value": False})


def test_matomo_tokens_in_the_query_string_and_wrong_tokens(matomo):
    has_super = "UsersManager.hasSuperUserAccess"
    assert matomo.call(has_super, where="query").pair == (200, {"value": True})
    assert matomo.call(has_super, token=matomo.secure_token, where="query").pair == error(QUERY_TOKEN, 401)
    assert matomo.call(has_super, token=matomo.secure_token).pair == (200, {"value": True})
    assert matomo.call(has_super, token=WRONG_TOKEN).pair == error(POST_TOKEN, 401)
    assert matomo.call(has_super, token=WRONG_TOKEN, where="query").pair == error(QUERY_TOKEN, 401)
    assert matomo.call(has_super, token="", where="query").pair == (200, {"value": False})
    assert matomo.call("SitesManager.getSitesIdFromSiteUrl", token=WRONG_TOKEN, url="https://first.example").pair \
        == error(POST_TOKEN, 401)


def test_matomo_blocks_every_token_after_more_than_20_failed_logins_in_an_hour(matomo):
    has_super = "UsersManager.hasSuperUserAccess"
    blocked = error("Too many failed logins. Please wait and try logging in again later.", 500)
    try:
        before = matomo.failed_logins()
        refusals = []
        while len(refusals) < 25:  # wrong tokens until the block, which comes once the window holds 20 or 21
            answer = matomo.call(has_super, token=WRONG_TOKEN).pair
            if answer == blocked:
                break
            refusals.append(answer)
        answers = [matomo.call(has_super).pair, matomo.call(has_super, token=WRONG_TOKEN).pair,
                   matomo.call(has_super, token=matomo.secure_token).pair,
                   matomo.lookup("https://first.example", token="").pair]
        page = matomo.http.get(matomo.url, timeout=30)
    finally:
        matomo.unblock()

    assert all(refusal == error(POST_TOKEN, 401) for refusal in refusals)
    assert 20 <= before + len(refusals) <= 21, (before, len(refusals))
    assert answers == [blocked, blocked, blocked, (200, [])]  # the anonymous user is not blocked
    assert page.status_code == 500 and "Too many failed logins" in page.text
    assert matomo.call(has_super).pair == (200, {"value": True})


def test_matomo_the_query_strings_token_wins_over_the_bodys(matomo):
    query = {"module": "API", "method": "UsersManager.hasSuperUserAccess", "format": "JSON"}
    view_in_query = matomo.http.post(matomo.url, params={**query, "token_auth": matomo.view_token},
                                     data={"token_auth": matomo.token}, timeout=30)
    super_in_query = matomo.http.post(matomo.url, params={**query, "token_auth": matomo.token},
                                      data={"token_auth": matomo.view_token}, timeout=30)

    assert (view_in_query.status_code, view_in_query.json()) == (200, {"value": False})
    assert (super_in_query.status_code, super_in_query.json()) == (200, {"value": True})


def test_matomo_a_view_only_token(matomo, unique):
    other = matomo.add(f"https://{unique}.example.test")
    view = matomo.view_token

    assert matomo.call("UsersManager.hasSuperUserAccess", token=view).pair == (200, {"value": False})
    assert matomo.lookup("https://first.example", token=view).pair == (200, [{"idsite": 1}])
    assert matomo.lookup(f"https://{unique}.example.test", token=view).pair == (200, [])  # not its site
    assert matomo.call("SitesManager.getSiteUrlsFromId", token=view, idSite=1).pair == (
        200, ["https://first.example"])
    assert matomo.call("SitesManager.getSiteUrlsFromId", token=view, idSite=other).pair == view_refused(other)
    assert matomo.call("SitesManager.getSiteFromId", token=view, idSite=other).pair == view_refused(other)
    assert matomo.call("SitesManager.getSiteUrlsFromId", token=view, idSite=999999999).pair == \
        view_refused(999999999)
    assert matomo.call("SitesManager.addSite", token=view, siteName=unique,
                       **{"urls[0]": f"https://{unique}.example.test"}).pair == error(SUPERUSER, 401)
    version = matomo.call("API.getMatomoVersion", token=view)
    assert version.pair == (200, {"value": "5.0.2"})
    site = matomo.call("SitesManager.getSiteFromId", token=view, idSite=1)
    assert site.status == 200 and "creator_login" not in site.body and site.body["main_url"] == "https://first.example"


# --- 5: timezones and currencies ----------------------------------------------------------------------------------

def test_matomo_timezone_and_currency_lists_hold_the_stand_ins(matomo):
    timezones = matomo.call("SitesManager.getTimezonesList")
    currencies = matomo.call("SitesManager.getCurrencyList")

    assert timezones.status == 200 and currencies.status == 200
    for group, zones in TIMEZONES.items():  # every zone the stand-in lists is the real one's, with its label
        assert {zone: timezones.body[group].get(zone) for zone in zones} == zones
    assert {code: currencies.body.get(code) for code in CURRENCIES} == CURRENCIES
    assert timezones.body["UTC"] == TIMEZONES["UTC"]  # the UTC offsets: all of them
    listed = {zone for zones in timezones.body.values() for zone in zones}
    assert not listed & {"Mars/Olympus", "UTC+15", "Etc/GMT+5", "US/Eastern", "Europe/Kiev", "UTC+0"}
    assert "XYZ" not in currencies.body
    assert list(timezones.body)[-1] == "UTC" and list(timezones.body) == sorted(timezones.body)


@pytest.mark.parametrize("timezone", ["Mars/Olympus", "UTC+15", "Etc/GMT+5", "US/Eastern", "Europe/Kiev", "UTC+0",
                                      "utc", "europe/berlin", "<b>", 'a"b'])
def test_matomo_add_site_refuses_a_timezone_it_does_not_list(matomo, unique, timezone):
    shown = timezone.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    assert matomo.call("SitesManager.addSite", siteName=unique, timezone=timezone,
                       **{"urls[0]": f"https://{unique}.example.test"}).pair == error(
        f"The timezone &quot;{shown}&quot; is not valid. Please enter a valid timezone.")


@pytest.mark.parametrize("currency", ["XYZ", "eur", "<x>"])
def test_matomo_add_site_refuses_a_currency_it_does_not_list(matomo, unique, currency):
    shown = currency.replace("<", "&lt;").replace(">", "&gt;")
    assert matomo.call("SitesManager.addSite", siteName=unique, currency=currency,
                       **{"urls[0]": f"https://{unique}.example.test"}).pair == error(
        f"The currency &quot;{shown}&quot; is not valid. Please enter a valid currency symbol (eg. USD, EUR, etc.)")


@pytest.mark.parametrize("timezone, currency, label, currency_name", [
    ("Europe/Berlin", "EUR", "Germany - Berlin", "Euro"), ("UTC", "USD", "UTC", "US Dollar"),
    ("UTC+5.5", "USD", "UTC+5:30", "US Dollar"), ("America/New_York", "EUR", "United States - New York", "Euro"),
    (" Europe/Kyiv ", " GBP", "Ukraine - Kyiv", "British Pound"), ("", "", "UTC", "US Dollar")])
def test_matomo_add_site_accepts_what_it_lists(matomo, unique, timezone, currency, label, currency_name):
    site_id = matomo.add(f"https://{unique}.example.test", timezone=timezone, currency=currency)
    site = matomo.call("SitesManager.getSiteFromId", idSite=site_id).body

    assert (site["timezone"], site["currency"]) == (timezone.strip() or "UTC", currency.strip() or "USD")
    assert (site["timezone_name"], site["currency_name"]) == (label, currency_name)


def test_matomo_add_site_checks_name_timezone_then_urls(matomo, unique):
    add = "SitesManager.addSite"
    assert matomo.call(add).pair == error("Please specify a value for 'siteName'.")
    assert matomo.call(add, siteName="  ").pair == error("Please specify a value for 'siteName'.")
    assert matomo.call(add, siteName=unique, timezone="Mars/Olympus", **{"urls[0]": "javascript://x"}).pair == error(
        "The timezone &quot;Mars/Olympus&quot; is not valid. Please enter a valid timezone.")
    assert matomo.call(add, siteName=unique, **{"urls[0]": "javascript://x"}).pair == error(
        "URLs: The url 'javascript://x' is not a valid URL.")
    assert matomo.call(add, siteName=unique, **{"urls[0]": "https://"}).pair == error(
        "URLs: The url 'https:/' is not a valid URL.")
    assert matomo.call(add, siteName=unique, **{"urls[0]": ""}).pair == error(
        "URLs: You must specify at least one URL for the website.")


# --- 6: getSiteUrlsFromId -----------------------------------------------------------------------------------------

def test_matomo_site_urls_of_a_site_that_does_not_exist(matomo):
    assert matomo.call("SitesManager.getSiteUrlsFromId", idSite=999999999).pair == (200, [])
    assert matomo.call("SitesManager.getSiteUrlsFromId", idSite="abc").pair == (200, [])
    assert matomo.call("SitesManager.getSiteUrlsFromId", idSite="").pair == error(
        "Please specify a value for 'idSite'.")
    assert matomo.call("SitesManager.getSiteUrlsFromId", idSite=" 1").pair == (200, ["https://first.example"])


# --- 7: the database down (a real MariaDB stop and start) --------------------------------------------------------

def test_matomo_with_its_database_down_answers_500(matomo, unique):
    down = error("SQLSTATE[HY000] [2002] No such file or directory", 500)
    with matomo.database_down():
        answers = [matomo.lookup("https://first.example"),
                   matomo.call("SitesManager.addSite", siteName=unique, **{"urls[0]": f"https://{unique}.test"}),
                   matomo.call("UsersManager.hasSuperUserAccess", token=""),
                   matomo.call("UsersManager.hasSuperUserAccess", token=WRONG_TOKEN),
                   matomo.call("SitesManager.getTimezonesList"),
                   matomo.call("API.getMatomoVersion", fmt="xml")]

    assert [answer.pair for answer in answers[:5]] == [down] * 5
    assert answers[5].status == 500 and answers[5].text == (
        '<?xml version="1.0" encoding="utf-8" ?>\n<result>\n\t<error message="SQLSTATE[HY000] [2002] No such file '
        'or directory" />\n</result>')
    assert matomo.call("UsersManager.hasSuperUserAccess").pair == (200, {"value": True})  # back


# === the gateway =================================================================================================

def added(domain):
    return 200, {"success": True, "message": "Static site added successfully", "timestamp": "<timestamp>",
                 "data": f"Site {domain} has been added."}


def site_failed(details):
    return 500, {"success": False, "error": "Failed to add static site", "timestamp": "<timestamp>",
                 "details": details}


def certificate_failed(details):
    return 500, {"success": False, "error": "Failed to install Let's Encrypt certificate",
                 "timestamp": "<timestamp>", "details": details}


def pair(answer):
    return answer.status, stamped(answer.body)


def command_line(domain, user, password="pw-secret-123"):
    return f"clpctl site:add:static --domainName={domain} --siteUser={user} --siteUserPassword='{password}'"


# --- ordinary paths, and 8/9: the bodies ----------------------------------------------------------------------------

def test_gateway_add_a_site_twice_and_its_certificate(gateway, unique):
    domain = f"{unique}.example.test"

    assert pair(gateway.add_site(domain, unique)) == added(domain)
    assert pair(gateway.add_site(domain, unique)) == site_failed(
        "domainName: This value already exists.\nsiteUser: This value already exists.")
    assert pair(gateway.certificate(domain)) == (200, {
        "success": True, "message": "Let's Encrypt certificate installed successfully", "timestamp": "<timestamp>",
        "data": "Certificate installation was successful."})
    assert pair(gateway.certificate(f"no-{domain}")) == certificate_failed(f'Site "no-{domain}" does not exist.')
    assert gateway.site(domain)["user"] == unique


@pytest.mark.parametrize("says, data", [
    ("Certificate installation was successful.\nDomain: {domain}", {"Domain": "{domain}"}),
    ('prefix {{"a": 1, "b": [true, null]}} suffix', {"a": 1, "b": [True, None]}),
    ("{{not json}}", "{{not json}}"),
    ("a: b\nplain line\nc:d", {"a": "b", "c": "d"}),
    ("line one\nline two", ["line one", "line two"]),
    ("\n\n", []),
    ("| User Name | Role |\n|---+---|\n| bob | admin |", [{"user_name": "bob", "role": "admin"}]),
], ids=["key-value", "json", "braces", "only-pairs", "lines", "blank", "table"])
def test_gateway_parses_what_clpctl_prints_as_its_data(gateway, unique, says, data):
    domain = f"{unique}.example.test"
    gateway.control({domain: {"lets-encrypt:install:certificate": "say:" + says.format(domain=domain)}})
    assert gateway.add_site(domain, unique).status == 200

    answer = gateway.certificate(domain)

    expected = data.format(domain=domain) if isinstance(data, str) else (
        {key: value.format(domain=domain) if isinstance(value, str) else value for key, value in data.items()}
        if isinstance(data, dict) else data)
    assert pair(answer) == (200, {"success": True, "message": "Let's Encrypt certificate installed successfully",
                                  "timestamp": "<timestamp>", "data": expected})


def test_gateway_an_empty_stdout_answers_its_own_result_with_the_command_line(gateway, unique):
    domain = f"{unique}.example.test"
    gateway.control({domain: {"site:add:static": "say:"}})

    answer = gateway.add_site(domain, unique)

    assert pair(answer) == (200, {"success": True, "message": "Static site added successfully",
                                  "timestamp": "<timestamp>",
                                  "data": {"success": True, "output": "Command completed successfully", "stderr": "",
                                           "command": command_line(domain, unique), "exitCode": 0}})
    assert gateway.site(domain) is not None


@pytest.mark.parametrize("behaviour, details", [
    ("silent-exit1", "Command failed: {line}\n"),
    ("fail:", "Command failed: {line}\n"),
    ("fail:Site limit reached\nsecond line", "Site limit reached second line"),
    ("fail:Error: disk full\nmore", "disk full"),
    ("fail:An error occurred while creating the site", "occurred while creating the site"),
    ("fail:Domain not found", "domainName: Domain not found."),
    ("fail:siteUser: This value already exists.", "siteUser: This value already exists."),
    ("fail:Something already exists here", "This value already exists."),
    ("fail-echo:bad thing", "bad thing Command: clpctl site:add:static --domainName={domain} --siteUser={user} "
                            "--siteUserPassword=pw-secret-123"),
    ("kill-parent-after", "Site {domain} has been added."),
], ids=["silent", "empty", "lines", "error-colon", "error-word", "domain-not-found", "exists", "exists-free",
        "echo", "shell-killed"])
def test_gateway_failure_details(gateway, unique, behaviour, details):
    domain = f"{unique}.example.test"
    gateway.control({domain: {"site:add:static": behaviour}})

    answer = gateway.add_site(domain, unique)

    assert pair(answer) == site_failed(details.format(line=command_line(domain, unique), domain=domain, user=unique))
    assert (gateway.site(domain) is not None) == (behaviour == "kill-parent-after")


def test_gateway_runs_clpctl_through_the_shell(gateway, unique):
    domain = f"{unique}.example.test"

    assert pair(gateway.add_site(domain, unique, password="pw'quote")) == site_failed("Unterminated quoted string")
    assert pair(gateway.add_site(f"{unique} .example.test", unique)) == site_failed(
        'Too many arguments to "site:add:static" command, expected arguments "".')
    assert pair(gateway.add_site(domain, unique, password="pw with spaces")) == added(domain)
    assert pair(gateway.add_site(f"x{domain}", f"x{unique}", password="pw-sec")) == site_failed(
        "siteUserPassword: This value is too short. It should have 8 characters or more.")
    assert pair(gateway.add_site(f"x{domain}", "root")) == site_failed("siteUser: This value already exists.")


# --- 10: the 120 s kill (one real wait: about 2.5 minutes) ----------------------------------------------------------

def test_gateway_kill_at_its_limit_answers_500_and_clpctl_finishes_the_site_later(gateway, unique):
    domain = f"{unique}.example.test"
    gateway.shorten_kill_limit(1.0)
    over = gateway.kill_limit + (5 if gateway.kind == "real" else 1)
    gateway.control({domain: {"site:add:static": f"slow:{over}"}})

    started = time.monotonic()
    answer = gateway.add_site(domain, unique)
    took = time.monotonic() - started
    at_the_answer = gateway.site(domain)
    later = gateway.wait_for_site(domain, over - took + 30)

    assert pair(answer) == site_failed(f"Command failed: {command_line(domain, unique)}\n")
    assert gateway.kill_limit - 0.5 <= took < over
    assert at_the_answer is None and later is not None and later["user"] == unique


# --- 11: the rate limit -------------------------------------------------------------------------------------------

def test_gateway_rate_limit_counts_requests_without_a_key_and_says_the_windows_remainder(limited_gateway):
    gateway = limited_gateway
    statuses = []
    for _ in range(4):
        answer = gateway.request("GET", "/api/user/list", key=False)
        statuses.append(answer.status)
        if answer.status == 429:
            break
    again = gateway.request("POST", "/api/site/add/static", json={})

    assert answer.status == 429 and set(statuses[:-1]) <= {401}
    assert len(statuses) == 4 or gateway.kind == "real"  # the real one's window may be partly spent already
    for refused in (answer, again):
        assert refused.pair == (429, {"success": False, "error": "Too many requests", "retryAfter": 900})
        headers = refused.headers
        assert (headers["RateLimit-Policy"], headers["RateLimit-Limit"], headers["RateLimit-Remaining"]) == (
            "3;w=900", "3", "0")
        assert 0 < int(headers["Retry-After"]) <= 900 and headers["Retry-After"] == headers["RateLimit-Reset"]
    assert int(again.headers["Retry-After"]) <= int(answer.headers["Retry-After"])


# --- 12: the site listing, and the web pages -----------------------------------------------------------------------

def test_gateway_lists_its_sites_newest_first_without_a_key(gateway, unique):
    first, second = f"{unique}.example.test", f"{unique}-2.example.test"
    assert gateway.add_site(first, unique).status == 200
    assert gateway.add_site(second, f"{unique}-2").status == 200

    answer = gateway.request("GET", "/lists/api/sites", key=False)

    assert answer.status == 200 and isinstance(answer.body, list)
    mine = [site for site in answer.body if site["domain"] in (first, second)]
    for site in mine:
        assert stamped({"timestamp": site.pop("created")}) and stamped({"timestamp": site.pop("modified")})
    assert mine == [{"domain": second, "user": f"{unique}-2", "path": f"/home/{unique}-2/htdocs/{second}"},
                    {"domain": first, "user": unique, "path": f"/home/{unique}/htdocs/{first}"}]


def test_gateway_site_pages_need_a_web_session(gateway, unique):
    for key in (True, False):
        answer = gateway.request("GET", f"/sites/api/{unique}.example.test", key=key)
        assert (answer.status, answer.headers["Location"], answer.text) == (
            302, "/auth/login", "Found. Redirecting to /auth/login")


# --- 13: health, users, 404, 401, validation, bodies it cannot read -------------------------------------------------

def test_gateway_health_and_user_list(gateway):
    health = gateway.request("GET", "/health", key=False)
    users = gateway.request("GET", "/api/user/list")

    assert pair(health) == (200, {"status": "OK", "timestamp": "<timestamp>", "service": "CloudPanel API Node.js",
                                  "version": "1.0.1"})
    assert pair(users) == (200, {"success": True, "message": "Users retrieved successfully",
                                 "timestamp": "<timestamp>",
                                 "data": [{"userName": "admin", "firstName": "John", "lastName": "Doe",
                                           "eMail": "john.doe@example.test", "role": "Admin", "status": "Active"}]})


def test_gateway_unknown_routes_and_keys(gateway):
    missing = (401, {"success": False, "error": "Unauthorized - Missing API key. Please provide X-API-Key header or "
                                                "apiKey query parameter."})
    not_found = (404, {"error": "Endpoint not found"})

    assert gateway.request("GET", "/nope", key=False).pair == not_found
    assert gateway.request("POST", "/health", key=False).pair == not_found
    assert gateway.request("GET", "/api/nope").pair == not_found
    assert gateway.request("GET", "/api/site/add/static").pair == not_found
    assert gateway.request("GET", "/api/nope", key=False).pair == missing
    assert gateway.request("GET", "/api/user/list", key=False, headers={"X-API-Key": ""}).pair == missing
    assert gateway.request("GET", "/api/user/list", key="not-the-key").pair == (
        401, {"success": False, "error": "Unauthorized - Invalid API key"})
    assert gateway.request("GET", "/API/User/List/", key=False, params={"apiKey": gateway.key}).status == 200


@pytest.mark.parametrize("body, problem", [
    ({}, '"domainName" is required'), ({"extra": 1}, '"domainName" is required'),
    ([], '"value" must be of type object'),
    ({"domainName": 5}, '"domainName" must be a string'), ({"domainName": None}, '"domainName" must be a string'),
    ({"domainName": ""}, '"domainName" is not allowed to be empty'),
    ({"domainName": "a.test"}, '"siteUser" is required'),
    ({"domainName": "a.test", "siteUser": "abc", "siteUserPassword": "12345"},
     '"siteUserPassword" length must be at least 6 characters long'),
    ({"domainName": "a.test", "siteUser": "abc", "siteUserPassword": "123456", "zzz": 1, "aaa": 2},
     '"zzz" is not allowed'),
])
def test_gateway_validates_the_body(gateway, body, problem):
    assert gateway.request("POST", "/api/site/add/static", json=body).pair == (
        400, {"error": "Validation Error", "details": [problem]})


@pytest.mark.parametrize("raw, message", [
    ("{bad", "Expected property name or '}' in JSON at position 1"),
    ("123", "Unexpected token '1', \"123\" is not valid JSON"),
    ('{"a":1}x', "Unexpected non-whitespace character after JSON at position 7"),
    ("[1,", "Unexpected end of JSON input"),
    ('{"a" 1}', "Expected ':' after property name in JSON at position 5"),
    ('{"a":1,}', "Expected double-quoted property name in JSON at position 7"),
    ('{"a":"abc', "Unterminated string in JSON at position 9"),
])
def test_gateway_a_body_it_cannot_read_is_answered_before_the_key(gateway, raw, message):
    answer = gateway.request("POST", "/api/site/add/static", key=False, data=raw.encode(),
                             headers={"Content-Type": "application/json"})
    assert answer.pair == (400, {"success": False, "error": message})
