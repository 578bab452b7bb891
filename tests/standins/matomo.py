"""Stand-in of the Matomo 5.0.2 HTTP API (`index.php?module=API&method=...`), only what hosting-automator uses,
answering as the real one does (tests/conformance/test_contract.py runs the same cases against both)."""

from __future__ import annotations

import bisect
import html
import json
import re
import time
import unicodedata
from urllib.parse import parse_qs, unquote_plus

from ._http import HTTPStandin, Response

VERSION = "5.0.2"
# a wrong token in the POST body; a wrong token in the query string, or a secure-only token there
TOKEN_MESSAGE = "Unable to authenticate with the provided token. It is either invalid or expired."
QUERY_TOKEN_MESSAGE = ("Unable to authenticate with the provided token. It is either invalid, expired or is required "
                       "to be sent as a POST parameter.")
SUPERUSER_MESSAGE = "You can't access this resource as it requires a 'superuser' access."
VIEW_MESSAGE = "You can't access this resource as it requires 'view' access for the website id = {}."
SOME_VIEW_MESSAGE = "You can't access this resource as it requires view access for at least one website."
UNEXPECTED_SITE_MESSAGE = "An unexpected website was found in the request: website id was set to '{}' ."
MISSING_MESSAGE = "Please specify a value for '{}'."
# what every API request gets while Matomo cannot reach MariaDB over its unix socket (HTTP 500)
DATABASE_DOWN_MESSAGE = "SQLSTATE[HY000] [2002] No such file or directory"
# what every request with a token gets (HTTP 500) once the IP made more than 20 failed logins in 60 minutes (the
# Login plugin's brute force detection; a wrong token and a secure-only one in the query string are failed logins)
BLOCKED_MESSAGE = "Too many failed logins. Please wait and try logging in again later."

_URLS_KEY = re.compile(r"^urls\[(\d*)\]$")
# UrlHelper::isLookLikeUrl: a scheme (optional), "//", something after it; not javascript:, vbscript:, data:
_LOOKS_LIKE_URL = re.compile(r"^(([A-Za-z][A-Za-z0-9+.-]*)?:)?//(.*)$", re.DOTALL)
_UNSAFE_SCHEME = re.compile(r"^(javascript:|vbscript:|data:)", re.IGNORECASE)
_PHP_TRIM = " \t\n\r\0\x0b"
# MySQL's reading of a string as a number (idsite = '...'): leading spaces, then the longest numeric prefix
_MYSQL_NUMBER = re.compile(r"^[ \t\n\r\f\v]*([+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?)")

# SitesManager.getTimezonesList (timezone support on): a subset of Matomo 5.0.2's answer on PHP 8.2, labels as it
# gives them; its "UTC" group is all of getTimezonesListUTCOffsets(). addSite accepts exactly these.
_UTC_OFFSETS = (-12, -11.5, -11, -10.5, -10, -9.5, -9, -8.5, -8, -7.5, -7, -6.5, -6, -5.5, -5, -4.5, -4, -3.5, -3,
                -2.5, -2, -1.5, -1, -0.5, 0, 0.5, 1, 1.5, 2, 2.5, 3, 3.5, 4, 4.5, 5, 5.5, 5.75, 6, 6.5, 7, 7.5, 8,
                8.5, 8.75, 9, 9.5, 10, 10.5, 11, 11.5, 12, 12.75, 13, 13.75, 14)


def _utc_zone(offset):
    text = f"{offset:g}"
    return "UTC" if offset == 0 else "UTC" + ("+" if offset > 0 else "") + text


def _utc_label(zone):
    return "UTC" + zone[3:].replace(".25", ":15").replace(".5", ":30").replace(".75", ":45")


TIMEZONES = {
    "Africa": {"Africa/Cairo": "Egypt", "Africa/Nairobi": "Kenya", "Africa/Lagos": "Nigeria",
               "Africa/Johannesburg": "South Africa"},
    "Asia": {"Asia/Shanghai": "China - Shanghai", "Asia/Kolkata": "India", "Asia/Jerusalem": "Israel",
             "Asia/Tokyo": "Japan", "Asia/Singapore": "Singapore", "Asia/Dubai": "United Arab Emirates"},
    "Europe": {"Europe/Vienna": "Austria", "Europe/Brussels": "Belgium", "Europe/Prague": "Czechia",
               "Europe/Paris": "France", "Europe/Berlin": "Germany - Berlin", "Europe/Dublin": "Ireland",
               "Europe/Rome": "Italy", "Europe/Amsterdam": "Netherlands", "Europe/Warsaw": "Poland",
               "Europe/Lisbon": "Portugal - Lisbon", "Europe/Moscow": "Russia - Moscow",
               "Europe/Madrid": "Spain - Madrid", "Europe/Stockholm": "Sweden", "Europe/Zurich": "Switzerland",
               "Europe/Kyiv": "Ukraine - Kyiv", "Europe/London": "United Kingdom"},
    "North America": {"America/Toronto": "Canada - Toronto", "America/Mexico_City": "Mexico - Mexico City",
                      "America/Anchorage": "United States - Anchorage", "America/Chicago": "United States - Chicago",
                      "America/Denver": "United States - Denver", "Pacific/Honolulu": "United States - Honolulu",
                      "America/Los_Angeles": "United States - Los Angeles",
                      "America/New_York": "United States - New York"},
    "Oceania": {"Australia/Sydney": "Australia - Sydney", "Pacific/Auckland": "New Zealand - Auckland"},
    "South America": {"America/Argentina/Buenos_Aires": "Argentina - Buenos Aires",
                      "America/Sao_Paulo": "Brazil - Sao Paulo", "America/Bogota": "Colombia"},
    "UTC": {_utc_zone(offset): _utc_label(_utc_zone(offset)) for offset in _UTC_OFFSETS},
}
# SitesManager.getCurrencyList: a subset of Matomo 5.0.2's ({code: "Name (symbol)"}, sorted by label)
CURRENCIES = {
    "AUD": "Australian Dollar (A$)", "BTC": "Bitcoin (BTC)", "BRL": "Brazilian Real (R$)",
    "GBP": "British Pound (£)", "CAD": "Canadian Dollar (CA$)", "CNY": "Chinese Yuan (CN¥)",
    "CZK": "Czech Koruna (Kč)", "DKK": "Danish Krone (kr)", "EUR": "Euro (€)", "HKD": "Hong Kong Dollar (HK$)",
    "HUF": "Hungarian Forint (Ft)", "INR": "Indian Rupee (₹)", "JPY": "Japanese Yen (¥)",
    "MXN": "Mexican Peso (MX$)", "NZD": "New Zealand Dollar (NZ$)", "NOK": "Norwegian Krone (kr)",
    "PLN": "Polish Zloty (zł)", "RUB": "Russian Ruble (руб.)", "SGD": "Singapore Dollar ($)",
    "ZAR": "South African Rand (R)", "KRW": "South Korean Won (₩)", "SEK": "Swedish Krona (kr)",
    "CHF": "Swiss Franc (Fr)", "TRY": "Turkish Lira (TL)", "USD": "US Dollar ($)", "UAH": "Ukrainian Hryvnia (₴)",
}
_ZONE_LABELS = {zone: label for group in TIMEZONES.values() for zone, label in group.items()}


def _entities(text):
    """The API renderer's formatValueXml on a message: entities decoded, then & < > " encoded (not ')."""
    return (html.unescape(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


def _php_trim(value):
    return value.strip(_PHP_TRIM)


def _collate(text):
    """A string as MariaDB's utf8mb4_general_ci (Matomo's tables) compares it: case and accents ignored (ü = u = U,
    ß = s), every character beyond the BMP alike; close to it for the letters outside Latin-1 too."""
    out = []
    for ch in text:
        if ord(ch) > 0xFFFF:
            out.append("\ufffd")
            continue
        if ch == "ß":
            out.append("S")
            continue
        base = unicodedata.normalize("NFD", ch)[0]
        upper = base.upper()
        out.append(upper if len(upper) == 1 else base)
    return "".join(out).rstrip(" ")  # PAD SPACE: trailing spaces do not count


def _remove_trailing_slash(url):
    return url[:-1] if len(url) > 5 and url.endswith("/") else url


def _normalized_urls(url):
    """SitesManager API::getNormalizedUrls: the URL as given, and http/https with and without www. of its host
    (every "www.", "http://" and "https://" taken out, case-sensitively, wherever they are)."""
    host = url.replace("www.", "").replace("http://", "").replace("https://", "")
    return [url, "http://" + host, "http://www." + host, "https://" + host, "https://www." + host]


def _clean_urls(urls):
    """The urls setting's cleanParameterUrls: empty ones dropped, urldecode, one trailing slash off, http:// where no
    scheme, trimmed, duplicates dropped (first kept)."""
    out = []
    for url in urls:
        if url in ("", "0"):
            continue
        url = _remove_trailing_slash(unquote_plus(url))
        if not re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", url) and "://" not in url:
            url = ("http:" + url) if url.startswith("//") else ("http://" + url)
        url = _php_trim(url)
        if url not in out:
            out.append(url)
    return out


def _looks_like_url(url):
    m = _LOOKS_LIKE_URL.match(url)
    return bool(url) and m is not None and len(m.group(3)) > 0 and not _UNSAFE_SCHEME.match(m.group(1) or "")


def _mysql_number(raw):
    """What `idsite = '<raw>'` compares the column with: the string's numeric prefix (0 when none)."""
    m = _MYSQL_NUMBER.match(raw)
    return float(m.group(1)) if m else 0.0


class _ApiError(Exception):
    def __init__(self, message, status=200):
        super().__init__(message)
        self.status = status


class _Access:
    """What one token may do: super user, or view access to some site ids; secure_only tokens work in a POST body
    only."""

    __slots__ = ("superuser", "view", "secure_only", "login")

    def __init__(self, superuser=False, view=(), secure_only=False, login="admin"):
        self.superuser, self.view, self.secure_only, self.login = bool(superuser), set(view), bool(secure_only), login

    def can_view(self, site_id):
        return self.superuser or site_id in self.view


_ANONYMOUS = _Access(login="anonymous")


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
    """Matomo API stand-in. Sites live in `sites`: id -> {"name", "urls", "timezone", "currency"}, the first URL the
    main one. `token` is a super user's (`superuser=False`: a user with view access to `view_sites`); more tokens
    with add_token(). `database_down = True`: every API request answers HTTP 500, as Matomo without MariaDB does.
    Brute force detection as Matomo's: more than `max_failed_logins` (20) failed logins within
    `failed_login_minutes` (60) and every request with a token answers 500 BLOCKED_MESSAGE (`failed_logins`: their
    times; clear it to unblock)."""

    name = "matomo"

    def __init__(self, token="test-matomo-token", superuser=True):
        super().__init__()
        self.token = token
        self.superuser = superuser
        self.view_sites = set()  # what `token` may see when it is not a super user's
        self.tokens = {}  # other tokens: token -> _Access (add_token)
        self.version = VERSION
        self.database_down = False
        self.max_failed_logins = 20
        self.failed_login_minutes = 60
        self.failed_logins = []  # time.time() of each failed login
        self.sites = _SiteTable()
        self.created = {}  # id -> ts_created ("YYYY-MM-DD HH:MM:SS", UTC)
        self.on_add_site = None  # callback(site_id) after a site is created, before answering
        self._next_id = 1
        # URL index: collated stored URL -> [(0 main | 1 alias, id)], sorted. Valid while `sites` is the same
        # _SiteTable at the same version: adding/replacing/removing an entry directly makes find() rebuild it, and a
        # plain dict assigned to `sites` is scanned. Editing a stored site's "urls" list in place is not noticed:
        # replace the site (`sites[id] = {...}`) instead.
        self._url_index = {}
        self._indexed_table = self.sites
        self._indexed_version = self.sites.version

    # -- direct access for tests ------------------------------------------------------------------------------
    def add_token(self, token, superuser=False, view_sites=(), secure_only=False):
        """Another user's token: a super user's, or one with view access to `view_sites`; `secure_only`: refused
        in the query string (Matomo's "only allow secure requests" tokens)."""
        self.tokens[token] = _Access(superuser, view_sites, secure_only, login="admin" if superuser else "viewer")

    def add_site(self, name, urls, timezone="UTC", currency="USD"):
        """A site as if made earlier, URLs taken as given (no validation, no cleaning but duplicates)."""
        with self.lock:
            return self._add_locked(name, urls, timezone, currency)

    def _add_locked(self, name, urls, timezone, currency):
        site_id = self._next_id
        self._next_id += 1
        clean = []
        for u in urls:
            if u and u not in clean:
                clean.append(u)
        index_current = self._index_current()
        self.sites[site_id] = {"name": name, "urls": clean, "timezone": timezone, "currency": currency}
        self.created[site_id] = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
        if index_current:
            self._index_site(site_id, clean)
            self._indexed_version = self.sites.version
        return site_id

    def _index_current(self):
        sites = self.sites
        return sites is self._indexed_table and type(sites) is _SiteTable and sites.version == self._indexed_version

    def _index_site(self, site_id, urls):
        for position, url in enumerate(urls):
            entry = (0 if position == 0 else 1, site_id)
            entries = self._url_index.setdefault(_collate(url), [])
            if entry not in entries:
                bisect.insort(entries, entry)

    def _rebuild_index(self):
        self._url_index = {}
        for site_id, site in sorted(self.sites.items()):
            self._index_site(site_id, site["urls"])
        self._indexed_table = self.sites
        self._indexed_version = self.sites.version

    def find(self, url, visible=None):
        """Ids a getSitesIdFromSiteUrl(url) of a super user answers: the sites whose main URL is one of the URL's
        normalized forms, by id, then those with it as an alias URL, by id (Model::getAllSitesIdFromSiteUrl's
        UNION); URLs compared as MariaDB's utf8mb4_general_ci does. `visible(id)`: only those ids."""
        keys = {_collate(v) for v in _normalized_urls(_remove_trailing_slash(url))}
        with self.lock:
            if type(self.sites) is not _SiteTable:  # a test assigned another mapping: scan it
                entries = sorted((0 if position == 0 else 1, sid) for sid, site in self.sites.items()
                                 for position, u in enumerate(site["urls"]) if _collate(u) in keys)
            else:
                if not self._index_current():
                    self._rebuild_index()
                entries = sorted(e for key in keys for e in self._url_index.get(key, ()))
        ids = []
        for _, sid in entries:
            if sid not in ids and (visible is None or visible(sid)):
                ids.append(sid)
        return ids

    # -- HTTP -------------------------------------------------------------------------------------------------
    def handle(self, request):
        if not request["path"].endswith("index.php"):
            return Response(404, _APACHE_404, {"Content-Type": "text/html; charset=iso-8859-1"})
        query = request["query"]
        form = {}
        if request["method"] == "POST" and request["body"]:
            form = parse_qs(request["body"], keep_blank_values=True)
        params = {k: v[-1] for k, v in form.items()}
        params.update({k: v[-1] for k, v in query.items()})  # PHP: $_GET + $_POST, $_GET wins
        if params.get("module") != "API":  # the web pages: its sign-in page, or its error page
            failure = DATABASE_DOWN_MESSAGE if self.database_down else BLOCKED_MESSAGE if self._blocked() else None
            page = ("<!DOCTYPE html><html><head><title>Sign in - Matomo</title></head><body>Sign in</body></html>"
                    if failure is None else "<!DOCTYPE html><html><head><title>Matomo &rsaquo; Error</title></head>"
                    f"<body><h1>An error occurred</h1><h2>{failure}</h2></body></html>")
            return Response(200 if failure is None else 500, page.encode(),
                            {"Content-Type": "text/html; charset=utf-8"})
        as_json = params.get("format", "xml").lower() == "json"
        try:
            if self.database_down:
                raise _ApiError(DATABASE_DOWN_MESSAGE, 500)
            access = self._access(query, params)
            value = self._call(access, params.get("method", ""), params, query, form)
        except _ApiError as err:
            message = _entities(str(err)).replace("\r\n", " ").replace("\n", " ")
            if as_json:
                return self._json(err.status, {"result": "error", "message": message})
            return self._xml(err.status, f'<result>\n\t<error message="{message}" />\n</result>')
        if isinstance(value, tuple):  # (value, site_id created)
            value, created = value
            callback = self.on_add_site
            if callback is not None:
                callback(created)
        if as_json:
            return self._json(200, value)
        return self._xml(200, self._to_xml(value))

    def _blocked(self):
        with self.lock:
            since = time.time() - self.failed_login_minutes * 60
            return sum(1 for at in self.failed_logins if at > since) > self.max_failed_logins

    def _access(self, query, params):
        """The token's user, as Matomo's authentication decides it: the token of the query string if there is one
        (a secure-only token is refused there), else the body's; an empty token is the anonymous user."""
        in_query = "token_auth" in query
        token = _php_trim(params.get("token_auth", ""))
        if token in ("", "anonymous"):
            return _ANONYMOUS
        if self._blocked():
            raise _ApiError(BLOCKED_MESSAGE, 500)
        if token == self.token:
            access = _Access(self.superuser, () if self.superuser else self.view_sites)
        else:
            access = self.tokens.get(token)
        if access is None or (in_query and access.secure_only):
            with self.lock:
                self.failed_logins.append(time.time())
            raise _ApiError(QUERY_TOKEN_MESSAGE if in_query else TOKEN_MESSAGE, 401)
        return access

    @staticmethod
    def _json(status, obj):
        # PHP's json_encode: non-ASCII as \\u escapes, "/" as "\\/"
        body = json.dumps(obj, separators=(",", ":")).replace("/", "\\/")
        return Response(status, body.encode("utf-8"), {"Content-Type": "application/json; charset=utf-8"})

    @staticmethod
    def _xml(status, inner):
        body = '<?xml version="1.0" encoding="utf-8" ?>\n' + inner
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
        """PHP array parameter urls[0]=..&urls[1]=.. (or urls[]=.., or a single urls=..), query and body; None when
        the request has none."""
        indexed, appended, seen = {}, [], False
        for source in (form, query):
            for key, values in source.items():
                m = _URLS_KEY.match(key)
                if m and m.group(1):
                    indexed[int(m.group(1))] = values[-1]
                    seen = True
                elif m or key == "urls":
                    appended.extend(values)
                    seen = True
        return [v for _, v in sorted(indexed.items())] + appended if seen else None

    @staticmethod
    def _required(params, name):
        value = html.unescape(_php_trim(params.get(name, "")))
        if not value:
            raise _ApiError(MISSING_MESSAGE.format(name))
        return value

    def _call(self, access, method, params, query, form):
        if not method:
            raise _ApiError("The parameter 'method' isn't set in the Request, and a default value wasn't provided.")
        module, _, action = method.partition(".")
        if method == "SitesManager.getSitesIdFromSiteUrl":
            url = self._required(params, "url")
            return [{"idsite": sid} for sid in self.find(url, None if access.superuser else access.can_view)]
        if method == "SitesManager.addSite":
            return self._add_site_call(access, params, query, form)
        if method == "SitesManager.getSiteFromId":
            raw = self._required(params, "idSite")
            site_id, site = self._site(access, raw)
            if site is None:
                raise _ApiError(UNEXPECTED_SITE_MESSAGE.format(raw))
            answer = {"idsite": site_id, "name": site["name"], "main_url": (site["urls"] or [""])[0],
                      "ts_created": self.created.get(site_id, "2024-01-01 00:00:00"), "ecommerce": 0,
                      "sitesearch": 1, "sitesearch_keyword_parameters": "", "sitesearch_category_parameters": "",
                      "timezone": site["timezone"], "currency": site["currency"], "exclude_unknown_urls": 0,
                      "excluded_ips": "", "excluded_parameters": "", "excluded_user_agents": "",
                      "excluded_referrers": "", "group": "", "type": "website", "keep_url_fragment": 0}
            if access.superuser:
                answer["creator_login"] = "admin"
            answer["timezone_name"] = _ZONE_LABELS.get(site["timezone"], site["timezone"])
            answer["currency_name"] = CURRENCIES.get(site["currency"], site["currency"]).rsplit(" (", 1)[0]
            return answer
        if method == "SitesManager.getSiteUrlsFromId":
            # the main URL, then the alias URLs as their table's primary key (idsite, url) orders them
            _, site = self._site(access, self._required(params, "idSite"))
            return site["urls"][:1] + sorted(site["urls"][1:], key=_collate) if site else []
        if method == "SitesManager.getTimezonesList":
            return {group: dict(zones) for group, zones in TIMEZONES.items()}
        if method == "SitesManager.getCurrencyList":
            return dict(CURRENCIES)
        if method == "UsersManager.hasSuperUserAccess":
            return {"value": access.superuser}
        if method in ("API.getMatomoVersion", "API.getPiwikVersion"):
            if not (access.superuser or access.view):
                raise _ApiError(SOME_VIEW_MESSAGE, 401)
            return {"value": self.version}
        if module in ("SitesManager", "UsersManager", "API"):
            raise _ApiError(f"The method '{action}' does not exist or is not available in the module "
                            f"'\\Piwik\\Plugins\\{module}\\API'.")
        raise _ApiError(f"The plugin {module} is not enabled. You can activate the plugin on Settings > Plugins page "
                        "in Matomo.")

    def _add_site_call(self, access, params, query, form):
        """SitesManager API::addSite in its order: super user, siteName, timezone, currency, then the URLs."""
        if not access.superuser:
            raise _ApiError(SUPERUSER_MESSAGE, 401)
        name = self._required(params, "siteName")
        tz = _php_trim(params.get("timezone", "")) or "UTC"
        if tz not in _ZONE_LABELS:
            raise _ApiError(f'The timezone "{html.unescape(tz)}" is not valid. Please enter a valid timezone.')
        currency = _php_trim(params.get("currency", "")) or "USD"
        if currency not in CURRENCIES:
            raise _ApiError(f'The currency "{html.unescape(currency)}" is not valid. Please enter a valid currency '
                            "symbol (eg. USD, EUR, etc.)")
        given = self._urls(query, form)
        urls = []
        if given is not None:
            urls = _clean_urls([html.unescape(u) for u in given])
            for url in urls:
                if not _looks_like_url(url):
                    raise _ApiError(f"URLs: The url '{url}' is not a valid URL.")
            if not urls:
                raise _ApiError("URLs: You must specify at least one URL for the website.")
        with self.lock:
            site_id = self._add_locked(name, urls, tz, currency)
        return {"value": site_id}, site_id

    def _site(self, access, raw):
        """(id, copy of the site or None) for an idSite parameter, once the access check passed: view access to it
        (a super user's passes for any id, existing or not)."""
        number = _mysql_number(raw)
        site_id = int(number) if number.is_integer() else None
        if not access.superuser and (site_id is None or not access.can_view(site_id)):
            raise _ApiError(VIEW_MESSAGE.format(raw), 401)
        with self.lock:
            site = self.sites.get(site_id) if site_id is not None else None
            return site_id, ({**site, "urls": list(site["urls"])} if site is not None else None)


_APACHE_404 = (b'<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 4.01//EN" "http://www.w3.org/TR/html4/strict.dtd">\n'
               b"<html><head>\n<title>404 Not Found</title>\n</head><body>\n<h1>Not Found</h1>\n"
               b"<p>The requested URL was not found on this server.</p>\n</body></html>\n")
