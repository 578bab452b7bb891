"""Stand-in of the Matomo 5.2 HTTP API (`index.php?module=API&method=...`), only what hosting-automator uses."""

from __future__ import annotations

import bisect
import json
import re
from urllib.parse import parse_qs

from ._http import HTTPStandin, Response

TOKEN_MESSAGE = ("Unable to authenticate with the provided token. It is either invalid, expired or is required "
                 "to be sent as a POST parameter.")
SUPERUSER_MESSAGE = "You can't access this resource as it requires a 'superuser' access."
VERSION = "5.2.0"
_URLS_KEY = re.compile(r"^urls\[(\d*)\]$")
_URL_RE = re.compile(r"^(([A-Za-z][A-Za-z0-9+.-]*)?:)?//.+$")
_TIMEZONE_RE = re.compile(r"^(UTC([+-]\d{1,2}(\.5)?)?|[A-Z][A-Za-z_]+(/[A-Za-z0-9_+-]+)+)$")
_CURRENCY_RE = re.compile(r"^[A-Z]{3}$")


def _entities(text):
    """What Matomo's API renderer does to exception messages (htmlspecialchars with ENT_QUOTES)."""
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;").replace("'", "&#039;"))


class _ApiError(Exception):
    def __init__(self, message, status=200):
        super().__init__(message)
        self.status = status


def _strip_url(url):
    url = url.strip()
    while url.endswith("/"):
        url = url[:-1]
    return url


def _lookup_variants(url):
    """SitesManager API::getNormalizedUrls: the URL itself plus http/https, with and without www."""
    url = _strip_url(url)
    host = url.replace("www.", "").replace("http://", "").replace("https://", "")
    return {v.lower() for v in (url, "http://" + host, "http://www." + host, "https://" + host, "https://www." + host)}


def _scheme_variants(url):
    url = _strip_url(url)
    host = url.replace("http://", "").replace("https://", "")
    return {v.lower() for v in (url, "http://" + host, "https://" + host)}


class _SiteTable(dict):
    """The `sites` dict: a plain dict that counts the changes made to its own entries (not to the site dicts
    inside), so that FakeMatomo's URL index notices a test adding, replacing or removing a site directly."""

    __slots__ = ("version",)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.version = 0

    def __setitem__(self, key, value):
        self.version += 1
        super().__setitem__(key, value)

    def __delitem__(self, key):
        self.version += 1
        super().__delitem__(key)

    def __ior__(self, other):
        self.version += 1
        return super().__ior__(other)

    def pop(self, *args):
        self.version += 1
        return super().pop(*args)

    def popitem(self):
        self.version += 1
        return super().popitem()

    def clear(self):
        self.version += 1
        super().clear()

    def update(self, *args, **kwargs):
        self.version += 1
        super().update(*args, **kwargs)

    def setdefault(self, key, default=None):
        self.version += 1
        return super().setdefault(key, default)


class FakeMatomo(HTTPStandin):
    """Matomo API stand-in. Sites live in `sites`: id -> {"name", "urls", "timezone", "currency"}."""

    name = "matomo"

    def __init__(self, token="test-matomo-token", superuser=True):
        super().__init__()
        self.token = token
        self.superuser = superuser
        # Real Matomo's lookup also ignores a leading "www." (getNormalizedUrls); False: only scheme and slash.
        self.match_www_variants = True
        self.sites = _SiteTable()
        self.on_add_site = None  # callback(site_id) after a site is created, before answering
        self._next_id = 1
        # URL index: lower-cased stored URL -> sorted ids of the sites that have it. Valid while `sites` is the
        # same _SiteTable at the same version: adding/replacing/removing an entry directly makes find() rebuild it,
        # and a plain dict assigned to `sites` is scanned. Editing a stored site's "urls" list in place is not
        # noticed: replace the site (`sites[id] = {...}`) instead.
        self._url_index = {}
        self._indexed_table = self.sites
        self._indexed_version = self.sites.version

    # -- direct access for tests ------------------------------------------------------------------------------
    def add_site(self, name, urls, timezone="UTC", currency="USD"):
        with self.lock:
            return self._add_locked(name, urls, timezone, currency)

    def _add_locked(self, name, urls, timezone, currency):
        site_id = self._next_id
        self._next_id += 1
        clean = []
        for u in urls:
            u = _strip_url(u)
            if u and u not in clean:
                clean.append(u)
        index_current = self._index_current()
        self.sites[site_id] = {"name": name, "urls": clean, "timezone": timezone, "currency": currency}
        if index_current:
            self._index_site(site_id, clean)
            self._indexed_version = self.sites.version
        return site_id

    def _index_current(self):
        sites = self.sites
        return sites is self._indexed_table and type(sites) is _SiteTable and sites.version == self._indexed_version

    def _index_site(self, site_id, urls):
        for key in {u.lower() for u in urls}:
            ids = self._url_index.get(key)
            if ids is None:
                self._url_index[key] = [site_id]
            elif ids[-1] < site_id:
                ids.append(site_id)
            else:
                bisect.insort(ids, site_id)

    def _rebuild_index(self):
        self._url_index = {}
        for site_id, site in sorted(self.sites.items()):
            self._index_site(site_id, site["urls"])
        self._indexed_table = self.sites
        self._indexed_version = self.sites.version

    def find(self, url):
        """Ids of the sites a getSitesIdFromSiteUrl(url) call would return: those with a URL (compared
        lower-cased) among the variants of `url`, by id."""
        variants = _lookup_variants(url) if self.match_www_variants else _scheme_variants(url)
        with self.lock:
            if type(self.sites) is not _SiteTable:  # a test assigned another mapping: scan it, as before
                return [sid for sid, site in sorted(self.sites.items())
                        if any(u.lower() in variants for u in site["urls"])]
            if not self._index_current():
                self._rebuild_index()
            index = self._url_index
            hits = [index[v] for v in variants if v in index]
            if not hits:
                return []
            if len(hits) == 1:
                return list(hits[0])
            return sorted(set().union(*hits))

    # -- HTTP -------------------------------------------------------------------------------------------------
    def handle(self, request):
        if not request["path"].endswith("index.php"):
            return Response(404, b"<html><body>Not Found</body></html>", {"Content-Type": "text/html; charset=utf-8"})
        query = request["query"]
        form = {}
        if request["method"] == "POST" and request["body"]:
            form = parse_qs(request["body"], keep_blank_values=True)
        params = {k: v[-1] for k, v in form.items()}
        params.update({k: v[-1] for k, v in query.items()})  # PHP: $_GET + $_POST, $_GET wins
        if params.get("module") != "API":
            return Response(200, b"<!DOCTYPE html><html><head><title>Matomo</title></head><body>Sign in</body></html>",
                            {"Content-Type": "text/html; charset=utf-8"})
        as_json = params.get("format", "xml").lower() == "json"
        try:
            if "token_auth" in query:
                raise _ApiError(TOKEN_MESSAGE, 401)
            token = form.get("token_auth", [None])[-1]
            if token is None or token != self.token:
                raise _ApiError(TOKEN_MESSAGE, 401)
            method = params.get("method", "")
            value = self._call(method, params, query, form)
        except _ApiError as err:
            message = _entities(str(err))
            if as_json:
                return self._json(err.status, {"result": "error", "message": message})
            return self._xml(err.status, f'<result>\n\t<error message="{message}" />\n</result>')
        callback = None
        if isinstance(value, tuple):  # (value, site_id created)
            value, created = value
            callback = self.on_add_site
            if callback is not None:
                callback(created)
        if as_json:
            return self._json(200, value)
        return self._xml(200, self._to_xml(value))

    @staticmethod
    def _json(status, obj):
        return Response(status, json.dumps(obj).encode("utf-8"), {"Content-Type": "application/json; charset=utf-8"})

    @staticmethod
    def _xml(status, inner):
        body = '<?xml version="1.0" encoding="utf-8" ?>\n' + inner + "\n"
        return Response(status, body.encode("utf-8"), {"Content-Type": "text/xml; charset=utf-8"})

    @staticmethod
    def _to_xml(value):
        if isinstance(value, dict) and set(value) == {"value"}:
            v = value["value"]
            v = ("1" if v else "0") if isinstance(v, bool) else _entities(str(v))
            return f"<result>{v}</result>"
        if isinstance(value, list):
            rows = []
            for item in value:
                if isinstance(item, dict):
                    cols = "".join(f"\n\t\t<{k}>{_entities(str(v))}</{k}>" for k, v in item.items())
                    rows.append(f"\t<row>{cols}\n\t</row>")
                else:
                    rows.append(f"\t<row>{_entities(str(item))}</row>")
            return "<result>\n" + "\n".join(rows) + "\n</result>" if rows else "<result />"
        if isinstance(value, dict):
            cols = "".join(f"\n\t<{k}>{_entities(str(v))}</{k}>" for k, v in value.items())
            return f"<result>{cols}\n</result>"
        return f"<result>{_entities(str(value))}</result>"

    @staticmethod
    def _urls(query, form):
        """PHP array parameter urls[0]=..&urls[1]=.. (or urls[]=.., or a single urls=..), query and body."""
        indexed, appended = [], []
        for source in (form, query):
            for key, values in source.items():
                m = _URLS_KEY.match(key)
                if m and m.group(1):
                    indexed.append((int(m.group(1)), values[-1]))
                elif m:
                    appended.extend(values)
                elif key == "urls":
                    appended.extend(values)
        return [v for _, v in sorted(indexed)] + appended

    def _call(self, method, params, query, form):
        if not method:
            raise _ApiError("Please specify a value for 'method'.")
        module, _, action = method.partition(".")
        if method == "SitesManager.getSitesIdFromSiteUrl":
            if not self.superuser:
                return []  # a token without access to any site sees none
            return [{"idsite": str(sid)} for sid in self.find(params.get("url", ""))]
        if method == "SitesManager.addSite":
            if not self.superuser:
                raise _ApiError(SUPERUSER_MESSAGE, 401)
            name = (params.get("siteName") or "").strip()
            if not name:
                raise _ApiError("The site name can't be empty.")
            urls = [_strip_url(u) for u in self._urls(query, form) if u.strip()]
            for u in urls:
                if not _URL_RE.match(u):
                    raise _ApiError(f"The url '{u}' is not a valid URL.")
            tz = (params.get("timezone") or "").strip() or "UTC"
            if not _TIMEZONE_RE.match(tz):
                raise _ApiError(f'The timezone "{tz}" is not valid. Please enter a valid timezone.')
            currency = (params.get("currency") or "").strip() or "USD"
            if not _CURRENCY_RE.match(currency):
                raise _ApiError(f'The currency "{currency}" is not valid. '
                                "Please enter a valid currency symbol (eg. USD, EUR, etc.)")
            with self.lock:
                site_id = self._add_locked(name, urls, tz, currency)
            return {"value": site_id}, site_id
        if method == "SitesManager.getSiteFromId":
            site = self._site(params)
            sid = int(params["idSite"])
            return {"idsite": str(sid), "name": site["name"], "main_url": (site["urls"] or [""])[0],
                    "timezone": site["timezone"], "currency": site["currency"], "type": "website"}
        if method == "SitesManager.getSiteUrlsFromId":
            return list(self._site(params)["urls"])
        if method == "UsersManager.hasSuperUserAccess":
            return {"value": bool(self.superuser)}
        if method in ("API.getMatomoVersion", "API.getPiwikVersion"):
            return {"value": VERSION}
        raise _ApiError(f"The method '{action}' does not exist or is not available in the module '{module}'.")

    def _site(self, params):
        raw = params.get("idSite", "")
        with self.lock:
            site = self.sites.get(int(raw)) if raw.isdigit() else None
            if site is None or not self.superuser:
                raise _ApiError(f"An unexpected website was found in the request: website id was set to '{raw}' .")
            return {**site, "urls": list(site["urls"])}
