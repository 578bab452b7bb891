"""The `sites` table in Supabase through supabase-py: read the pending sites page by page, write each outcome with
a conditional update."""

import logging
import threading

import httpx
from postgrest.exceptions import APIError
from supabase import ClientOptions, create_client  # ClientOptions is supabase-py's SyncClientOptions

from hosting_automator.core.http import TRANSIENT_STATUSES, first_line, retry_after_seconds
from hosting_automator.core.logging_setup import secret_values
from hosting_automator.errors import SupabaseError, SupabaseSetupError

logger = logging.getLogger(__name__)

PAGE_SIZE = 1000  # hosted Supabase answers at most 1,000 rows at once
SELECTED_COLUMNS = "id,domain,status_hosting"
OUTCOME_COLUMNS = ("status_hosting", "doc_root", "matomo_id", "error_message")
ALL_COLUMNS = ("id", "domain", "status_dns") + OUTCOME_COLUMNS
ERROR_MESSAGE_MAX = 500
# PostgREST's own "cannot reach the database right now" codes
TRANSIENT_CODES = {"PGRST000", "PGRST001", "PGRST002", "PGRST003"}
MIGRATION_HINT = "apply supabase/migrations/20261125000000_hosting_columns.sql"


class SupabaseClient:
    """supabase-py's client over an httpx client of our own: HTTP/1.1 (HTTP/2 connections are known to drop), the
    run's timeout kept as given (supabase-py's own option truncates 0.5 s to 0), and supabase-py's retries off,
    since core/retry.py is the one retry policy."""

    def __init__(self, url, service_key, table, timeout, retry, pool_size=1):
        self.table_name = table
        self.timeout = timeout
        self.retry = retry
        self._last = threading.local()  # this thread's last answer: postgrest's APIError does not carry its status
        try:
            self._http = httpx.Client(
                http2=False,
                timeout=httpx.Timeout(timeout),
                limits=httpx.Limits(max_connections=max(pool_size, 1) + 1),  # +1: the page reader beside the workers
                event_hooks={"response": [self._remember_answer]},
            )
            self._client = create_client(url, service_key, options=ClientOptions(
                httpx_client=self._http, postgrest_client_retry=False))
        except Exception as err:  # a URL, key or proxy from the environment that httpx or supabase-py cannot use
            raise SupabaseSetupError(f"Supabase: the client cannot be set up ({first_line(err)}); check SUPABASE_URL, "
                                     "SSL_CERT_FILE or SSL_CERT_DIR, and the proxy variables of the environment") from err

    def close(self):
        self._http.close()

    def _remember_answer(self, response):
        """What supabase-py does not tell: the status, Retry-After, and whether the body was empty (which it reads
        as no rows, though PostgREST always answers at least `[]`)."""
        logger.debug("%s %s: HTTP %d", response.request.method, response.request.url, response.status_code)
        response.read()
        self._last.status = response.status_code
        self._last.retry_after = response.headers.get("Retry-After")
        self._last.empty = not response.content.strip()

    def _table(self):
        return self._client.table(self.table_name)

    def fetch_pending_hosting_sites(self, statuses=("pending",), page_size=PAGE_SIZE):
        """Yield the rows ready for hosting, in id order, one page in memory at a time.

        Keyset pagination (id > last id): rows leave the pending set while we work, so offsets would skip rows.
        """
        last_id = None
        while True:
            page = self.retry.call(lambda: self._fetch_page(statuses, last_id, page_size), "read the pending sites",
                                   service="Supabase")
            logger.debug("Read %d pending rows after id %s", len(page), last_id)
            yield from page
            if len(page) < page_size:
                return
            last_id = page[-1]["id"]

    def _fetch_page(self, statuses, last_id, page_size):
        query = self._table().select(SELECTED_COLUMNS).eq("status_dns", "active")
        query = query.eq("status_hosting", statuses[0]) if len(statuses) == 1 else query.in_("status_hosting", statuses)
        if last_id is not None:
            query = query.gt("id", last_id)
        rows = self._execute(query.order("id").limit(page_size), "read the pending sites")
        if not all(isinstance(row, dict) and _usable_id(row.get("id")) for row in rows):
            raise SupabaseError("read the pending sites: Supabase answered a row without a usable id (a number or "
                                "a text): check that SITES_TABLE's primary key is `id`")
        return rows

    def update_site_hosting_status(self, site_id, status, doc_root=None, matomo_id=None, error_message=None,
                                   read_status="pending"):
        """Write a site's outcome if its row still has the status it was read with; True when it was written.

        False means someone changed the row meanwhile. When the update matches no row, the row is read again:
        already as we meant to leave it, an earlier attempt landed but its answer was lost (True); still as it
        was read, the key may read but not write (row-level security), and every write of the run would fail
        the same way (SupabaseSetupError).
        """
        if error_message is not None:
            error_message = secret_values.excerpt(error_message, ERROR_MESSAGE_MAX)
        values = {"status_hosting": status, "doc_root": doc_root, "matomo_id": matomo_id,
                  "error_message": error_message}
        attempts = []
        what = f"record the outcome of site {site_id}"

        def attempt():
            attempts.append(1)
            query = self._table().update(values).eq("id", site_id).eq("status_hosting", read_status)
            if self._execute(query, what):
                return True
            current = self._current_outcome(site_id)
            if current is None:
                return False
            if len(attempts) > 1 and all(current.get(key) == value for key, value in values.items()):
                return True
            if current.get("status_hosting") == read_status:
                raise SupabaseSetupError(
                    f"{what}: Supabase accepted the update but changed no row, though the row is still "
                    f"{read_status}: the key can read the table but not update it (row-level security?); set "
                    "SUPABASE_SERVICE_KEY to the service_role or sb_secret_ key")
            return False

        return self.retry.call(attempt, what, service="Supabase")

    def _current_outcome(self, site_id):
        rows = self._execute(self._table().select(",".join(OUTCOME_COLUMNS)).eq("id", site_id), f"re-read site {site_id}")
        return rows[0] if rows else None

    def latest_active_domain(self):
        """The domain of the live site read last, or None: --check verifies the certificate served for it."""
        rows = self.retry.call(lambda: self._execute(
            self._table().select("domain").eq("status_hosting", "active").order("id", desc=True).limit(1),
            "read a live site"), "read a live site", service="Supabase")
        return rows[0].get("domain") if rows and isinstance(rows[0], dict) else None

    def check_table(self):
        """Read at most one row of every column: raises SupabaseSetupError naming the fix when any is missing."""
        self.retry.call(lambda: self._execute(self._table().select(",".join(ALL_COLUMNS)).limit(1), "read the table"),
                        "read the table", service="Supabase")

    def _execute(self, query, what):
        """Run one supabase-py query; its rows. An update asks for the rows it changed back: none means the
        conditional update matched no row."""
        self._last.status = self._last.retry_after = None
        self._last.empty = False
        try:
            data = query.execute().data
        except APIError as err:
            raise self._translate(err, what) from err
        except httpx.TimeoutException as err:
            raise SupabaseError(f"{what}: Supabase: no answer within {self.timeout:g} s (timeout)",
                                transient=True) from err
        except httpx.UnsupportedProtocol as err:
            raise SupabaseSetupError(f"{what}: SUPABASE_URL or its proxy cannot be used ({first_line(err)})") from err
        except (httpx.ConnectError, httpx.ProxyError) as err:
            raise SupabaseError(f"{what}: Supabase: cannot connect ({first_line(err)})", transient=True) from err
        except httpx.TransportError as err:  # closed on us, or what came was not HTTP
            raise SupabaseError(f"{what}: Supabase: no whole answer came ({first_line(err)})", transient=True) from err
        except httpx.InvalidURL as err:
            raise SupabaseSetupError(f"{what}: SUPABASE_URL cannot be used ({first_line(err)})") from err
        except (ValueError, RecursionError) as err:  # an answer supabase-py could not decode (nested too deep)
            raise SupabaseError(f"{what}: Supabase answered JSON that cannot be read ({err.__class__.__name__})") from err
        if self._last.empty:
            raise SupabaseError(f"{what}: Supabase answered HTTP {self._last.status} with an empty body, where "
                                "PostgREST always sends JSON (a proxy in between?)")
        if isinstance(data, str):
            # supabase-py hands back the text of a 2xx answer that is not JSON (a proxy's page): taken as data, an
            # update would count as written
            excerpt = secret_values.excerpt(data, 80)
            raise SupabaseError(f"{what}: Supabase answered something that is not JSON: {excerpt!r}")
        if not isinstance(data, list):
            raise SupabaseError(f"{what}: Supabase answered JSON that is not a list of rows "
                                f"({type(data).__name__} where a list was expected)")
        return data

    def _translate(self, err, what):
        """The error answer as the project's error, naming the fix. PostgREST's error body is {"code", "details",
        "hint", "message"}; a proxy in front of it may answer anything, which supabase-py turns into its reason
        phrase with the body as details."""
        status = getattr(self._last, "status", None)
        code = str(err.code or "")
        if code == str(status):  # supabase-py's stand-in code for an answer that was not PostgREST's
            code = ""
        message = secret_values.excerpt(str(err.message or ""), 200)
        shown = f"HTTP {status}" if status else "error"
        if code:
            shown += f" {code}"
        if message:
            shown += f": {message}"
        if status in (401, 403) or code in ("PGRST301", "PGRST302", "42501"):
            return SupabaseSetupError(
                f"{what}: Supabase refused the key ({shown}); set SUPABASE_SERVICE_KEY to the project's "
                "service_role or sb_secret_ key (Project Settings → API)")
        if code in ("PGRST205", "42P01") or status == 404:
            return SupabaseSetupError(
                f"{what}: table '{self.table_name}' not found ({shown}); check SITES_TABLE, or create the table")
        if code in ("42703", "PGRST204"):
            return SupabaseSetupError(f"{what}: a column is missing ({shown}); {MIGRATION_HINT}")
        if status in TRANSIENT_STATUSES or code in TRANSIENT_CODES:
            return SupabaseError(f"{what}: {shown}", transient=True,
                                 retry_after=retry_after_seconds(getattr(self._last, "retry_after", None)))
        if code == "23514":
            return SupabaseError(f"{what}: the table refused the value ({shown}); {MIGRATION_HINT}")
        return SupabaseError(f"{what}: {shown}")


def _usable_id(value):
    """A row's id as the table's contract has it: a bigint or a uuid; never null, a boolean or a structure."""
    return (isinstance(value, int) and not isinstance(value, bool)) or (isinstance(value, str) and value != "")
