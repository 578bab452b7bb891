"""The `sites` table in Supabase through supabase-py: pending rows read page by page, each write conditional."""

import collections
import contextvars
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

import httpx
from postgrest.exceptions import APIError
from supabase import ClientOptions, create_client  # ClientOptions is supabase-py's SyncClientOptions

from hosting_automator.core.config import without_credentials
from hosting_automator.core.http import (MAX_ANSWER_BYTES, TRANSIENT_STATUSES, DeadlineExceeded, declared_length,
                                         first_line, retry_after_seconds, too_large, within)
from hosting_automator.masking import secret_values
from hosting_automator.domains import normalised_or_none, spellings
from hosting_automator.errors import ServerNameClash, SupabaseError, SupabaseSetupError

if TYPE_CHECKING:
    from hosting_automator.core.retry import RetryPolicy

logger = logging.getLogger(__name__)

PAGE_SIZE = 1000  # hosted Supabase answers at most 1,000 rows at once
SELECTED_COLUMNS = "id,domain,status_hosting,hosting_server,hosting_machine,error_message"
OUTCOME_COLUMNS = ("status_hosting", "doc_root", "matomo_id", "error_message")
ALL_COLUMNS = ("id", "domain", "status_dns", "hosting_server", "hosting_machine") + OUTCOME_COLUMNS
ERROR_MESSAGE_MAX = 500
# PostgREST's own "cannot reach the database right now" codes
TRANSIENT_CODES = {"PGRST000", "PGRST001", "PGRST002", "PGRST003"}
MIGRATION_HINT = "apply the files of supabase/migrations/, in order"


class SupabaseClient:
    """What the job asks of the sites table: pending rows page by page, claims, and every write conditional on the
    row being as it was read.

    Every method that reaches Supabase raises SupabaseError when Supabase could not be reached or answered an error
    (`transient` when worth a retry), and SupabaseSetupError when the key was refused or may read but not write, or
    the table or a column is missing: every request would fail alike."""

    def __init__(self, url: str, service_key: str, table: str, timeout: float, retry: "RetryPolicy",
                 pool_size: int = 1, server_name: str | None = None, machine: str | None = None) -> None:
        """The clients are built here, once a run reaches Supabase.

        Raises:
            SupabaseSetupError: httpx or supabase-py refused the URL, the CA bundle or a proxy variable.
        """
        self.server_name = server_name  # this server's rows: hosting_server = it, or null (unassigned)
        self.machine = machine  # this machine's identity, written beside the name it claims a row for
        self.retry = retry
        self._postgrest = _Postgrest(url, service_key, table, timeout, pool_size, retry)
        self._table = self._postgrest.table  # shorthands for the queries below
        self._execute = self._postgrest.execute

    def close(self) -> None:
        self._postgrest.close()

    def fetch_pending_hosting_sites(self, statuses: tuple[str, ...] = ("pending",),
                                    page_size: int = PAGE_SIZE) -> Iterator[dict]:
        """Yield the rows ready for hosting, in id order, one page in memory at a time."""
        def new_query():
            ready = self._table().select(SELECTED_COLUMNS).eq("status_dns", "active")
            return self._this_servers(ready.eq("status_hosting", statuses[0]) if len(statuses) == 1
                                      else ready.in_("status_hosting", statuses))
        for page in self._postgrest.pages(new_query, "read the pending sites", page_size):
            self._refuse_another_machine(page)
            yield from page

    def _this_servers(self, query):
        """Only this server's rows, and the unassigned ones, in one query."""
        if self.server_name is None:
            return query
        return query.or_(f"hosting_server.eq.{self.server_name},hosting_server.is.null")

    def _refuse_another_machine(self, rows):
        """A page that shows a row claimed under this server's name by another machine is not handed out: two
        machines under one SERVER_NAME would build the same sites, so the run stops before working on any of it.

        Raises:
            ServerNameClash: naming the row and both machines.
        """
        if not self.machine:
            return
        for row in rows:
            held = row.get("hosting_machine")
            if row.get("hosting_server") == self.server_name and held not in (None, self.machine):
                raise ServerNameClash(self.server_name, row.get("id"), held, self.machine)

    def update_site_hosting_status(self, site_id: int | str, status: str, doc_root: str | None = None,
                                   matomo_id: int | None = None, error_message: str | None = None,
                                   read_status: str = "pending", dry_run: bool = False) -> bool:
        """Write a site's outcome if its row is still as it was read (and still this server's); True when written.
        False means someone changed the row meanwhile."""
        if error_message is not None:
            error_message = secret_values.excerpt(error_message, ERROR_MESSAGE_MAX)
        values = {"status_hosting": status, "doc_root": doc_root, "matomo_id": matomo_id,
                  "error_message": error_message}
        return self._postgrest.update_where(site_id, values, self._as_read(read_status),
                                            f"record the outcome of site {site_id}", dry_run)

    def claim(self, site_id: int | str, read_status: str = "pending", *, dry_run: bool = False,
              **still: object) -> bool:
        """Assign an unassigned row to this server while it is `read_status` (and its columns as `still` says);
        False when another server's claim came first."""
        claimed = self._postgrest.update_where(site_id, {"hosting_server": self.server_name, **self._machine()},
                                               {"status_hosting": read_status, "hosting_server": None, **still},
                                               f"claim site {site_id} for {self.server_name}", dry_run)
        if claimed and not dry_run:
            logger.info("Claimed for %s", self.server_name)
        return claimed

    def other_rows_of_site(self, domain: str, site_id: int | str) -> list[dict]:
        """Other pending or live rows whose domain normalises to `domain` (the normalised name), any server's: one
        site is set up once, whatever the rows say. A row may write it in either spelling (xn--bcher-kva.example
        or bücher.example), in any case, with a final dot."""
        written = ",".join(f"domain.ilike.{name},domain.ilike.{name}." for name in spellings(domain))
        query = (self._table().select("id,domain,hosting_server,status_hosting").or_(written)
                 .in_("status_hosting", ["pending", "active"]).neq("id", site_id).order("id").limit(20))
        rows = self.retry.call(lambda: self._execute(query, f"look for other rows of {domain}"),
                               f"look for other rows of {domain}", service="Supabase")
        return [row for row in rows if normalised_or_none(row.get("domain")) == domain]

    def fetch_active_without_matomo(self, page_size: int = PAGE_SIZE) -> Iterator[dict]:
        """Yield this server's live rows (and unassigned ones, built before servers were named) that have no
        matomo_id, oldest first, one page in memory at a time."""
        def new_query():
            return self._this_servers(self._table().select(SELECTED_COLUMNS).eq("status_hosting", "active")
                                      .is_("matomo_id", "null"))
        for page in self._postgrest.pages(new_query, "read the live sites without Matomo", page_size):
            self._refuse_another_machine(page)
            yield from page

    def record_matomo_id(self, site_id: int | str, matomo_id: int | None, dry_run: bool = False) -> bool:
        """Write a live row's matomo_id while it is still live, without one, and this server's; nothing else of
        the row changes. False when the row changed meanwhile."""
        conditions = {**self._as_read("active"), "matomo_id": None}
        return self._postgrest.update_where(site_id, {"matomo_id": matomo_id}, conditions,
                                            f"record the Matomo site of site {site_id}", dry_run)

    def note(self, site_id: int | str, error_message: str, read_status: str = "pending",
             dry_run: bool = False) -> bool:
        """Say in the row why it waits (its status unchanged); False when the row changed meanwhile."""
        return self._postgrest.update_where(site_id, {"error_message": error_message},
                                            self._as_read(read_status), f"note why site {site_id} waits", dry_run)

    def take_over(self, site_id: int | str, read_status: str = "pending", dry_run: bool = False) -> bool:
        """Record this machine on a row assigned to this server's name with no machine yet (assigned by hand, or
        claimed before machines were recorded); False when another machine, or anything else, changed it first."""
        return self._postgrest.update_where(site_id, self._machine(),
                                            {**self._as_read(read_status), "hosting_machine": None},
                                            f"record this machine on site {site_id}", dry_run)

    def other_machine(self) -> tuple[int | str, str] | None:
        """A row assigned to this server's name that another machine claimed (its id and that machine), or None."""
        if not self.machine or self.server_name is None:
            return None
        query = (self._table().select("id,hosting_machine").eq("hosting_server", self.server_name)
                 .neq("hosting_machine", self.machine).limit(1))
        rows = self.retry.call(lambda: self._execute(query, "look for another machine under SERVER_NAME"),
                               "look for another machine under SERVER_NAME", service="Supabase")
        return (rows[0]["id"], rows[0].get("hosting_machine")) if rows else None

    def _machine(self):
        return {"hosting_machine": self.machine} if self.machine else {}

    def holder(self, site_id: int | str) -> tuple[str | None, str | None]:
        """The server a row is assigned to now, and the machine that claimed it for that server.

        Raises:
            SupabaseError: Supabase could not be reached or answered an error.
            SupabaseSetupError: the key was refused, or the table or a column is missing.
        """
        rows = self._execute(self._table().select("hosting_server,hosting_machine").eq("id", site_id),
                             f"re-read site {site_id}")
        return (rows[0].get("hosting_server"), rows[0].get("hosting_machine")) if rows else (None, None)

    def _as_read(self, read_status):
        conditions = {"status_hosting": read_status}
        if self.server_name is not None:  # never write a row another server took meanwhile
            conditions["hosting_server"] = self.server_name
        return conditions

    def pending_by_server(self, page_size: int = PAGE_SIZE) -> collections.Counter:
        """How many pending rows each server is assigned (None: unassigned), all servers' rows included."""
        def new_query():
            return self._table().select("id,hosting_server").eq("status_dns", "active").eq("status_hosting", "pending")
        counts = collections.Counter()
        for page in self._postgrest.pages(new_query, "count the pending rows", page_size):
            counts.update(row.get("hosting_server") for row in page)
        return counts

    def latest_active_domain(self) -> str | None:
        """The domain of the live site read last, or None: --check verifies the certificate served for it."""
        rows = self.retry.call(lambda: self._execute(
            self._table().select("domain").eq("status_hosting", "active").order("id", desc=True).limit(1),
            "read a live site"), "read a live site", service="Supabase")
        return rows[0].get("domain") if rows and isinstance(rows[0], dict) else None

    def check_table(self) -> None:
        """Read at most one row of every column, so that a missing one is named with its fix."""
        self.retry.call(lambda: self._execute(self._table().select(",".join(ALL_COLUMNS)).limit(1), "read the table"),
                        "read the table", service="Supabase")

    def check_writable(self) -> None:
        """Read-only in effect: an update that can match no row (no row has a null id) proves the key may update
        the table without changing a row.

        Raises:
            SupabaseError: Supabase could not be reached or answered an error.
            SupabaseSetupError: the key may not update the table, or a column is missing.
        """
        self.retry.call(lambda: self._execute(self._table().update({"status_hosting": "pending"}).is_("id", "null"),
                                              "update no row (to see that the key may write)"),
                        "update no row", service="Supabase")


class _Postgrest:
    """supabase-py's client over an httpx client of our own: HTTP/1.1 (HTTP/2 connections are known to drop), the
    run's timeout kept as given (supabase-py's own option truncates 0.5 s to 0), and supabase-py's retries off,
    since core/retry.py is the one retry policy."""

    def __init__(self, url: str, service_key: str, table: str, timeout: float, pool_size: int,
                 retry: "RetryPolicy") -> None:
        self.table_name = table
        self.timeout = timeout
        self.retry = retry
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

    def close(self) -> None:
        self._http.close()

    def table(self):
        """A new query on the table."""
        return self._client.table(self.table_name)

    def _remember_answer(self, response):
        """What supabase-py does not tell: the status, Retry-After, and whether the body was empty (which it reads
        as no rows, though PostgREST always answers at least `[]`). The body is read here, refused past
        MAX_ANSWER_BYTES before it is all in memory."""
        logger.debug("%s %s: HTTP %d", response.request.method, response.request.url, response.status_code)
        length = declared_length(response.headers)
        if length is not None and length > MAX_ANSWER_BYTES:
            response.close()
            raise SupabaseError(too_large(length, "Supabase: "))
        response.stream = _BoundedStream(response.stream)
        response.read()
        answer = _last_answer.get()
        answer.status = response.status_code
        answer.retry_after = response.headers.get("Retry-After")
        answer.location = response.headers.get("Location") if response.is_redirect else None
        answer.empty = not response.content.strip()

    def pages(self, new_query, what, page_size):
        """Yield the rows of `new_query()` page by page in id order, each page tried again on a transient failure.
        Keyset pagination (id > last id): rows leave the set while the run works, so offsets would skip rows."""
        last_id = None
        while True:
            def page_after(last_id=last_id):
                query = new_query() if last_id is None else new_query().gt("id", last_id)
                return self.execute(query.order("id").limit(page_size), what)
            page = self.retry.call(page_after, what, service="Supabase")
            if not all(isinstance(row, dict) and _usable_id(row.get("id")) for row in page):
                raise SupabaseError(f"{what}: Supabase answered a row without a usable id (a number or a text): "
                                    "check that SITES_TABLE's primary key is `id`")
            logger.debug("%s: a page of %d after id %s", what, len(page), last_id)
            yield page
            if len(page) < page_size:
                return
            last_id = page[-1]["id"]

    def update_where(self, site_id, values, conditions, what, dry_run=False):
        """Write `values` to the row only while it matches `conditions` (None: is null); True when it was written
        (in a dry run: would be; every write of a row comes here, so here is where a dry run writes nothing).

        When nothing matched, the row is read again: already as we meant to leave it, an earlier attempt landed
        but its answer was lost (True); still matching, the key may read but not write (row-level security), and
        every write of the run would fail the same way (SupabaseSetupError); otherwise someone changed it (False)."""
        if dry_run:
            shown = ", ".join(f"{column}={value}" for column, value in values.items())
            logger.info("Would %s: %s (dry run: nothing changed)", what, shown)
            return True
        attempts = []
        columns = list(dict.fromkeys([*values, *conditions]))

        def attempt():
            attempts.append(1)
            query = self.table().update(values).eq("id", site_id)
            for column, value in conditions.items():
                query = query.is_(column, "null") if value is None else query.eq(column, value)
            if self.execute(query, what):
                return True
            rows = self.execute(self.table().select(",".join(columns)).eq("id", site_id), f"re-read site {site_id}")
            current = rows[0] if rows else None
            if current is None:
                return False
            if len(attempts) > 1 and all(current.get(key) == value for key, value in values.items()):
                return True
            if all(current.get(key) == value for key, value in conditions.items()):
                raise SupabaseSetupError(
                    f"{what}: Supabase accepted the update but changed no row, though the row is still "
                    f"{_described(conditions)}: the key can read the table but not update it (row-level security?); "
                    "set SUPABASE_SERVICE_KEY to the service_role or sb_secret_ key")
            return False

        return self.retry.call(attempt, what, service="Supabase")

    def execute(self, query, what):
        """Run one supabase-py query; its rows. An update asks for the rows it changed back: none means the
        conditional update matched no row."""
        answer = _Answer()
        _last_answer.set(answer)  # the request's thread gets a copy of this context: the same object
        try:
            # the whole exchange within the timeout: httpx's own bounds each read, and a dripping answer meets none
            data = within(self.timeout, query.execute).data
        except DeadlineExceeded as err:
            raise SupabaseError(f"{what}: Supabase: {err}", transient=True) from err
        except APIError as err:
            raise self._translate(err, answer, what) from err
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
        if answer.empty:
            raise SupabaseError(f"{what}: Supabase answered HTTP {answer.status} with an empty body, where "
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

    def _translate(self, err, answer, what):
        """The error answer as the project's error, naming the fix. PostgREST's error body is {"code", "details",
        "hint", "message"}; a proxy in front of it may answer anything, which supabase-py turns into its reason
        phrase with the body as details."""
        status = answer.status
        code = str(err.code or "")
        if code == str(status):  # supabase-py's stand-in code for an answer that was not PostgREST's
            code = ""
        message = secret_values.excerpt(str(err.message or ""), 200)
        shown = f"HTTP {status}" if status else "error"
        if code:
            shown += f" {code}"
        if message:
            shown += f": {message}"
        if answer.location is not None:
            target = without_credentials(secret_values.excerpt(answer.location, 200))
            return SupabaseSetupError(f"{what}: Supabase answered HTTP {status}, a redirect to {target}: set "
                                      "SUPABASE_URL to the address it points to")
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
                                 retry_after=retry_after_seconds(answer.retry_after))
        if code == "23514":
            return SupabaseError(f"{what}: the table refused the value ({shown}); {MIGRATION_HINT}")
        return SupabaseError(f"{what}: {shown}")


class _Answer:
    """What one request's answer said that postgrest's APIError does not carry."""

    status = None
    retry_after = None
    location = None  # where a redirect points: never followed, a setting to fix
    empty = False


_last_answer = contextvars.ContextVar("last_supabase_answer", default=_Answer())


class _BoundedStream(httpx.SyncByteStream):
    """An answer's body, as httpx reads it, refused past MAX_ANSWER_BYTES."""

    def __init__(self, stream):
        self._stream = stream

    def __iter__(self):
        read = 0
        for chunk in self._stream:
            read += len(chunk)
            if read > MAX_ANSWER_BYTES:
                raise SupabaseError(too_large(None, "Supabase: "))
            yield chunk

    def close(self):
        self._stream.close()


def _usable_id(value):
    """A row's id as the table's contract has it: a bigint or a uuid; never null, a boolean or a structure."""
    return (isinstance(value, int) and not isinstance(value, bool)) or (isinstance(value, str) and value != "")


def _described(conditions):
    """`pending`, `pending and assigned to web-1`, `pending and unassigned`."""
    shown = [str(conditions.get("status_hosting"))]
    if "hosting_server" in conditions:
        server = conditions["hosting_server"]
        shown.append(f"assigned to {server}" if server else "unassigned")
    return " and ".join(shown)
