"""The `sites` table in Supabase, through its PostgREST API (DESIGN.md section 5): read the pending sites page by
page, write each outcome with a conditional update."""

import logging

from hosting_automator.core.http import (TRANSIENT_STATUSES, UnusableSetting, network_failure, new_session,
                                         retry_after_seconds)
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
    """The table over PostgREST with the run's own HTTP client, not supabase-py: importing supabase-py's PostgREST
    client (httpx, pydantic, asyncio) took 0.2-0.3 s of every run's start, and it cost ~0.6 ms of CPU more per
    request (bench/). The requests are the ones supabase-py sends, pinned by tests/test_supabase_client.py."""

    def __init__(self, url, service_key, table, timeout, retry, pool_size=1):
        self.table_url = f"{url.rstrip('/')}/rest/v1/{table}"
        self.table_name = table
        self.timeout = timeout
        self.retry = retry
        self.session = new_session(timeout, pool_size=pool_size + 1)  # +1: the page reader beside the workers
        self.headers = {"apikey": service_key, "Authorization": f"Bearer {service_key}",
                        "Accept": "application/json"}

    def close(self):
        self.session.close()

    def fetch_pending_hosting_sites(self, statuses=("pending",), page_size=PAGE_SIZE):
        """Yield the rows ready for hosting, in id order, one page in memory at a time.

        Keyset pagination (id > last id): rows leave the pending set while we work, so offsets would skip rows.
        """
        last_id = None
        while True:
            page = self.retry.call(lambda: self._fetch_page(statuses, last_id, page_size), "read the pending sites")
            logger.debug("Read %d pending rows after id %s", len(page), last_id)
            yield from page
            if len(page) < page_size:
                return
            last_id = page[-1]["id"]

    def _fetch_page(self, statuses, last_id, page_size):
        query = [("select", SELECTED_COLUMNS), ("status_dns", "eq.active"),
                 ("status_hosting", f"eq.{statuses[0]}" if len(statuses) == 1 else f"in.({','.join(statuses)})")]
        if last_id is not None:
            query.append(("id", f"gt.{last_id}"))
        query += [("order", "id.asc"), ("limit", str(page_size))]
        rows = self._execute("GET", query, "read the pending sites")
        if not isinstance(rows, list) or not all(isinstance(row, dict) and "id" in row for row in rows):
            raise SupabaseError(f"read the pending sites: Supabase answered rows without an id: {str(rows)[:120]}")
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
            error_message = secret_values.mask(error_message)[:ERROR_MESSAGE_MAX]
        values = {"status_hosting": status, "doc_root": doc_root, "matomo_id": matomo_id,
                  "error_message": error_message}
        attempts = []
        what = f"record the outcome of site {site_id}"

        def attempt():
            attempts.append(1)
            query = [("id", f"eq.{site_id}"), ("status_hosting", f"eq.{read_status}")]
            if self._execute("PATCH", query, what, values):
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

        return self.retry.call(attempt, what)

    def _current_outcome(self, site_id):
        query = [("select", ",".join(OUTCOME_COLUMNS)), ("id", f"eq.{site_id}")]
        rows = self._execute("GET", query, f"re-read site {site_id}")
        return rows[0] if rows else None

    def check_table(self):
        """Read at most one row of every column: raises SupabaseSetupError naming the fix when any is missing."""
        self.retry.call(lambda: self._execute("GET", [("select", ",".join(ALL_COLUMNS)), ("limit", "1")],
                                              "read the table"), "read the table")

    def _execute(self, method, query, what, values=None):
        """One PostgREST request; the rows of its JSON answer. A PATCH asks for the rows it changed back
        (`Prefer: return=representation`): none means the conditional update matched no row."""
        headers = self.headers
        if method == "PATCH":
            headers = {**headers, "Prefer": "return=representation"}
        try:
            response = self.session.request(method, self.table_url, params=query, json=values, headers=headers)
        except UnusableSetting as err:
            raise SupabaseSetupError(f"{what}: {err}") from err
        except Exception as err:
            failure = network_failure(err, self.timeout)
            if failure is None:
                raise
            raise SupabaseError(f"{what}: Supabase: {failure}", transient=True) from err
        if response.status_code >= 300:
            raise self._translate(response, what)
        try:
            return response.json()
        except ValueError as err:  # a proxy's page with 200: taken as data, a PATCH would count as written
            excerpt = " ".join(response.text.split())[:80]
            raise SupabaseError(f"{what}: Supabase answered something that is not JSON: {excerpt!r}") from err

    def _translate(self, response, what):
        """The error answer as the project's error, naming the fix. PostgREST's error body is {"code", "details",
        "hint", "message"}; a proxy in front of it may answer anything."""
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            body = {"message": " ".join(response.text.split()) or response.reason}
        status = response.status_code
        code = str(body.get("code") or "")
        message = " ".join(str(body.get("message") or "").split())[:200]
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
                                 retry_after=retry_after_seconds(response.headers.get("Retry-After")))
        if code == "23514":
            return SupabaseError(f"{what}: the table refused the value ({shown}); {MIGRATION_HINT}")
        return SupabaseError(f"{what}: {shown}")

