"""Matomo: one tracking site per domain, looked up by URL first because Matomo happily creates duplicates."""

import html
import logging
import re
import threading
from typing import TYPE_CHECKING

from hosting_automator.core.http import body_excerpt, send
from hosting_automator.masking import secret_values
from hosting_automator.domains import spellings, twin_of
from hosting_automator.errors import MatomoError

if TYPE_CHECKING:
    import requests

    from hosting_automator.core.retry import RetryPolicy

logger = logging.getLogger(__name__)

AUTH_FAILED = "Unable to authenticate"
LOCKED_OUT = "Too many failed logins"  # Matomo blocks an address after 20 in an hour, for everyone behind it
NEEDS_SUPERUSER = "superuser"
# addSite's refusal of a setting every site is created with: (Matomo's words, the setting, where valid values are)
REFUSED_SETTINGS = (('The timezone "', "MATOMO_SITE_TIMEZONE", "SitesManager.getTimezonesList"),
                    ('The currency "', "MATOMO_SITE_CURRENCY", "SitesManager.getCurrencyList"))
# Matomo answers HTTP 500 while its database cannot be reached or is busy: connection refused or lost (2002, 2003,
# 2006, 2013), too many connections (1040), lock wait timeout (1205), deadlock (1213), and SQLSTATE's class 08
# (connection exceptions) and 40001 (serialisation failure). These pass; any other 500 is a fault to fix.
_DATABASE_BUSY = re.compile(r"SQLSTATE\[(?:08\w{3}|40001)\]|SQLSTATE\[HY000\] \[(?:2002|2003|2006|2013|1040|1205|1213)\]")


def site_urls(domain: str) -> list[str]:
    """The main URL first, then the www./apex twin, which the certificate covers too."""
    return [f"https://{domain}", f"https://{twin_of(domain)}"]


def _host(url: object) -> str | None:
    """The host of a URL Matomo lists for a site, lower-cased, without scheme, port, path or final dot."""
    if not isinstance(url, str):
        return None
    host = url.strip().split("://", 1)[-1].split("/", 1)[0].rsplit("@", 1)[-1]
    return host.split(":", 1)[0].rstrip(".").lower() or None


class MatomoClient:
    def __init__(self, api_url: str, token: str, session: "requests.Session", retry: "RetryPolicy",
                 timezone: str | None = None, currency: str | None = None) -> None:
        self.api_url = api_url
        self.token = token
        self.session = session
        self.retry = retry
        self.timezone = timezone
        self.currency = currency
        self._refused_setting = None  # set when addSite refused a setting every site is made with: asked no more
        self._refused_token = None  # set when Matomo refused the token: not asked again, each refusal counts
        self._lock = threading.Lock()  # workers share the client

    def find_site(self, domain: str) -> int | None:
        """The idSite tracking `domain`, or None.

        Matomo's URL look-up drops every "www." of a URL, so it also answers sites of other names (awww.example
        finds aexample's): an id is taken only when the site's own URLs name `domain` or its www./apex twin, in
        either spelling. Among those, a site whose main URL is `domain` wins, then one whose main URL is its twin,
        then one that has it as an alias; Matomo's order decides ties.

        Raises:
            MatomoError: Matomo could not be reached, refused the token, or answered something that is not an id.
        """
        names = spellings(domain)
        own = set(names)
        ours = own | {twin_of(name) for name in names}
        best = None
        for site_id in self._ids_for_urls(names):
            hosts = self._hosts_of(site_id)
            if not hosts or not set(hosts) & ours:
                continue
            rank = 0 if hosts[0] in own else 1 if hosts[0] in ours else 2
            if rank == 0:
                return site_id
            if best is None or rank < best[0]:
                best = (rank, site_id)
        return best[1] if best else None

    def _ids_for_urls(self, names):
        """The ids getSitesIdFromSiteUrl answers for https://<name>, each name in turn, without repeats."""
        ids = []
        for name in names:
            answer = self._call("SitesManager.getSitesIdFromSiteUrl", {"url": f"https://{name}"})
            if not isinstance(answer, list):
                raise MatomoError(f"getSitesIdFromSiteUrl answered {secret_values.excerpt(str(answer), 80)!r} where a "
                                  "list was expected")
            for item in answer:
                site_id = _site_id(item.get("idsite") if isinstance(item, dict) else None, "getSitesIdFromSiteUrl")
                if site_id not in ids:
                    ids.append(site_id)
        return ids

    def _hosts_of(self, site_id):
        """The hosts of a site's URLs, its main URL first."""
        answer = self._call("SitesManager.getSiteUrlsFromId", {"idSite": site_id})
        if not isinstance(answer, list):
            raise MatomoError(f"getSiteUrlsFromId answered {secret_values.excerpt(str(answer), 80)!r} where a list "
                              "was expected")
        return [_host(url) for url in answer]

    def create_tracking_site(self, domain: str, dry_run: bool = False) -> int | None:
        """The idSite of `domain`, creating the site when Matomo has none; every attempt looks it up first. In a dry
        run, None where a site would be created.

        Raises:
            MatomoError: Matomo could not be reached, refused the token, or answered something that is not an id.
        """
        return self.retry.call(lambda: self._find_or_add(domain, dry_run), "Matomo", service="Matomo",
                               error=MatomoError)

    def _find_or_add(self, domain, dry_run):
        site_id = self.find_site(domain)
        if site_id is not None:
            logger.info("Matomo site exists already (idSite %d)", site_id)
            return site_id
        if dry_run:  # what a run would make of it (this site, or its twin's found) is the plan's to say
            logger.info("No Matomo site for it yet (dry run: nothing changed)")
            return None
        if self._refused_setting:
            raise MatomoError(f"not asked: {self._refused_setting} (refused earlier in this run)")
        params = {"siteName": domain}
        for index, url in enumerate(site_urls(domain)):
            params[f"urls[{index}]"] = url
        if self.timezone:
            params["timezone"] = self.timezone
        if self.currency:
            params["currency"] = self.currency
        try:
            answer = self._call("SitesManager.addSite", params, creates=True)
        except MatomoError as err:
            if self._refuses_a_setting(err):
                raise MatomoError(self._refused_setting) from err
            raise
        site_id = _site_id(answer.get("value") if isinstance(answer, dict) else None, "addSite")
        logger.info("Matomo site created (idSite %d)", site_id)
        return site_id

    def _refuses_a_setting(self, err):
        """Whether addSite refused a timezone, a currency or a token that is not a super user's: every addSite
        would fail alike, so it is said once, with Matomo's words and the fix, and not sent again this run (the
        sites still go live, without tracking)."""
        for words, setting, listing in REFUSED_SETTINGS:
            if words in str(err):
                value = self.timezone if setting == "MATOMO_SITE_TIMEZONE" else self.currency
                self._say_once("_refused_setting", f"Matomo refuses {setting}={value}",
                               f"{err}; set it to a value of {listing} (--check says whether it is accepted) or leave it "
                               "unset for Matomo's default; no Matomo site is created this run")
                return True
        if NEEDS_SUPERUSER in str(err):
            self._say_once("_refused_setting", "Matomo refuses to create sites for MATOMO_API_TOKEN: it must "
                           "belong to a super user", f"{err}; no Matomo site is created this run")
            return True
        return False

    def _say_once(self, attribute, refusal, why):
        """Remembers the first refusal of its kind in `attribute`, and logs it with why: once a run."""
        with self._lock:
            said = getattr(self, attribute)
            if not said:
                setattr(self, attribute, refusal)
        if not said:
            logger.error("%s: %s", refusal, why)

    def check(self) -> str:
        """Read-only: the token works and belongs to a super user (addSite needs one).

        Raises:
            MatomoError: it does not, and why.
        """
        answer = self._call("UsersManager.hasSuperUserAccess", {})
        value = answer.get("value") if isinstance(answer, dict) else answer
        if value is not True:
            raise MatomoError("the token works but its user is not a super user, and addSite needs one: "
                              "create MATOMO_API_TOKEN as a super user (Administration → Personal → Security)")
        version = self._call("API.getMatomoVersion", {})
        shown = version.get("value") if isinstance(version, dict) else version
        site_settings = self._check_site_settings()
        return f"Matomo {shown} at {self.api_url}, token of a super user{site_settings}"

    def _check_site_settings(self):
        """Read-only: MATOMO_SITE_TIMEZONE and MATOMO_SITE_CURRENCY are among the values addSite accepts."""
        accepted = []
        for setting, value, method in (("MATOMO_SITE_TIMEZONE", self.timezone, "SitesManager.getTimezonesList"),
                                       ("MATOMO_SITE_CURRENCY", self.currency, "SitesManager.getCurrencyList")):
            if not value:
                continue
            answer = self._call(method, {})
            if not isinstance(answer, dict):
                raise MatomoError(f"{method} answered {secret_values.excerpt(str(answer), 80)!r} where a list of "
                                  "values was expected")
            # timezones come grouped ({"Europe": {"Europe/Berlin": "Germany"}, "UTC": {"UTC+5.5": …}}), currencies not
            values = set(answer)
            for group in answer.values():
                if isinstance(group, dict):
                    values.update(group)
            if value not in values:
                raise MatomoError(f"{setting}={value} is not a value Matomo accepts, so every addSite would fail: "
                                  f"set it to one that {method} lists, or leave it unset for Matomo's default")
            accepted.append(f"{setting}={value}")
        return f"; {' and '.join(accepted)} accepted" if accepted else ""

    def _call(self, method, params, creates=False):
        """POST to the API: the token only in the form body (Matomo 5 refuses it in the URL)."""
        if self._refused_token:
            raise MatomoError(f"{method}: not asked: {self._refused_token} (refused earlier in this run)")
        query = {"module": "API", "method": method, "format": "JSON"}
        response = send(self.session, "POST", self.api_url, params=query, data={**params, "token_auth": self.token},
                        error=MatomoError, what=method, creates=creates, setting="MATOMO_API_URL")
        try:
            answer = response.json()
        except (ValueError, RecursionError) as err:  # not JSON, or nested deeper than Python reads
            raise MatomoError(f"{method}: HTTP {response.status_code} with a body that is not JSON: "
                              f"{body_excerpt(response)}") from err
        # Matomo reports most errors with HTTP 200: the body decides.
        if isinstance(answer, dict) and answer.get("result") == "error":
            message = html.unescape(str(answer.get("message") or "no message"))
            # Matomo's PHP request has ended: a refused database connection changed nothing, so even a create may
            # be tried again, and every attempt looks up first
            busy = response.status_code >= 500 and bool(_DATABASE_BUSY.search(message))
            if AUTH_FAILED in message or LOCKED_OUT in message:
                self._say_once("_refused_token", "Matomo refuses MATOMO_API_TOKEN",
                               f"{secret_values.excerpt(message, 200)}; Matomo is not asked again this run: each "
                               "refused token is a failed login, and after 20 in an hour Matomo blocks this address "
                               "for every user behind it")
            raise MatomoError(f"{method}: {'HTTP %d: ' % response.status_code if busy else ''}{_explain(message)}",
                              transient=busy)
        if response.status_code != 200:
            raise MatomoError(f"{method}: HTTP {response.status_code}: {secret_values.excerpt(str(answer), 120)}")
        return answer


def _site_id(value, method):
    """Matomo sends ids as 5 or "5"; anything else (true, 5.9, "abc") is not an id to store."""
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).isdecimal():
        raise MatomoError(f"{method} answered idSite {value!r}, which is not a number")
    site_id = int(value)
    if site_id <= 0:
        raise MatomoError(f"{method} answered idSite {site_id}, which is not a site")
    return site_id


def _explain(message):
    message = secret_values.excerpt(message, 300)
    if AUTH_FAILED in message:
        return f"{message} (check MATOMO_API_TOKEN)"
    if NEEDS_SUPERUSER in message:
        return f"{message} (MATOMO_API_TOKEN must belong to a super user)"
    return message
