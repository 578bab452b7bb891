"""Matomo: one tracking site per domain, looked up by URL first because Matomo happily creates duplicates."""

import html
import logging
from typing import TYPE_CHECKING

from hosting_automator.core.http import body_excerpt, send
from hosting_automator.core.logging_setup import secret_values
from hosting_automator.errors import MatomoError

if TYPE_CHECKING:
    import requests

    from hosting_automator.core.retry import RetryPolicy

logger = logging.getLogger(__name__)

AUTH_FAILED = "Unable to authenticate"
NEEDS_SUPERUSER = "superuser"


def site_urls(domain: str) -> list[str]:
    """The main URL first, then the www./apex twin, which the certificate covers too."""
    twin = domain[4:] if domain.startswith("www.") else f"www.{domain}"
    return [f"https://{domain}", f"https://{twin}"]


class MatomoClient:
    def __init__(self, api_url: str, token: str, session: "requests.Session", retry: "RetryPolicy",
                 timezone: str | None = None, currency: str | None = None) -> None:
        self.api_url = api_url
        self.token = token
        self.session = session
        self.retry = retry
        self.timezone = timezone
        self.currency = currency
        self._dry_run_sites = {}  # URL -> the domain a dry run would have made a Matomo site for, with that URL

    def find_site(self, domain: str) -> int | None:
        """The idSite tracking https://{domain}, or None.

        Raises:
            MatomoError: Matomo could not be reached, refused the token, or answered something that is not an id.
        """
        answer = self._call("SitesManager.getSitesIdFromSiteUrl", {"url": f"https://{domain}"})
        if not isinstance(answer, list):
            raise MatomoError(f"getSitesIdFromSiteUrl answered {secret_values.excerpt(str(answer), 80)!r} where a list "
                              "was expected")
        if not answer:
            return None
        return _site_id(answer[0].get("idsite") if isinstance(answer[0], dict) else None, "getSitesIdFromSiteUrl")

    def create_tracking_site(self, domain: str, dry_run: bool = False) -> int | None:
        """The idSite of `domain`, creating the site when Matomo has none; every attempt looks it up first. In a dry
        run, None where a site would be created.

        Raises:
            MatomoError: Matomo could not be reached, refused the token, or answered something that is not an id.
        """
        return self.retry.call(lambda: self._find_or_add(domain, dry_run), "Matomo", service="Matomo")

    def _find_or_add(self, domain, dry_run):
        site_id = self.find_site(domain)
        if site_id is not None:
            logger.info("Matomo site exists already (idSite %d)", site_id)
            return site_id
        if dry_run:
            planned = self.planned_site_of(domain)
            if planned:
                logger.info("Would use the Matomo site %s would get (dry run: nothing changed)", planned)
                return None
            self._dry_run_sites.update(dict.fromkeys(site_urls(domain), domain))
            logger.info("Would create a Matomo site (dry run: nothing changed)")
            return None
        params = {"siteName": domain}
        for index, url in enumerate(site_urls(domain)):
            params[f"urls[{index}]"] = url
        if self.timezone:
            params["timezone"] = self.timezone
        if self.currency:
            params["currency"] = self.currency
        answer = self._call("SitesManager.addSite", params, creates=True)
        site_id = _site_id(answer.get("value") if isinstance(answer, dict) else None, "addSite")
        logger.info("Matomo site created (idSite %d)", site_id)
        return site_id

    def planned_site_of(self, domain: str) -> str | None:
        """In a dry run, the domain whose Matomo site, not made, would track `domain`: itself, or its www./apex twin,
        whose site the real run would find instead of making a second one."""
        return self._dry_run_sites.get(f"https://{domain}")

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
        return f"Matomo {shown} at {self.api_url}, token of a super user"

    def _call(self, method, params, creates=False):
        """POST to the API: the token only in the form body (Matomo 5 refuses it in the URL)."""
        query = {"module": "API", "method": method, "format": "JSON"}
        response = send(self.session, "POST", self.api_url, params=query, data={**params, "token_auth": self.token},
                        error=MatomoError, what=method, creates=creates)
        try:
            answer = response.json()
        except (ValueError, RecursionError) as err:  # not JSON, or nested deeper than Python reads
            raise MatomoError(f"{method}: HTTP {response.status_code} with a body that is not JSON: "
                              f"{body_excerpt(response)}") from err
        # Matomo reports most errors with HTTP 200: the body decides.
        if isinstance(answer, dict) and answer.get("result") == "error":
            raise MatomoError(f"{method}: {_explain(html.unescape(str(answer.get('message') or 'no message')))}")
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
