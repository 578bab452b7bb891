"""SupabaseClient against a local HTTP server, so its real HTTP code builds and sends every request: the exact
query strings, headers and bodies supabase-py sends, and every error turned into the project's
own SupabaseError (or SupabaseSetupError) with a reason an operator can act on."""

import json
import socket
import threading
from urllib.parse import parse_qsl

import pytest
from werkzeug import Response

from hosting_automator.masking import secret_values
from hosting_automator.errors import SupabaseError, SupabaseSetupError
from hosting_automator.services.supabase_client import MIGRATION_HINT, SupabaseClient
from tests.support.retries import fast_retry_policy
from tests.support.sockets import closed_port

SERVICE_KEY = "sb_secret_Kq7vX2pLm9RtZw4YbN8cJd3F"
TABLE_PATH = "/rest/v1/sites"
COLUMNS = "select=id%2Cdomain%2Cstatus_hosting%2Chosting_server%2Chosting_machine%2Cerror_message"
PAGE_QUERY = COLUMNS + "&status_dns=eq.active&status_hosting=eq.pending&order=id.asc"
PAGE_AFTER_QUERY = COLUMNS + "&status_dns=eq.active&status_hosting=eq.pending&id=gt.{}&order=id.asc"


@pytest.fixture
def make_client(httpserver, retry):
    clients = []

    def make(timeout=5, table="sites", retry_policy=None, server_name=None):
        client = SupabaseClient(url=httpserver.url_for("").rstrip("/"), service_key=SERVICE_KEY, table=table,
                                timeout=timeout, retry=retry_policy or retry, server_name=server_name)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def json_response(status, body, headers=None):
    return Response(json.dumps(body), status=status, content_type="application/json", headers=headers)


def requests_seen(httpserver):
    return [(request.method, request.query_string.decode()) for request, _ in httpserver.log]


def error_of(status, code, message, details=None, hint=None):
    return json_response(status, {"code": code, "details": details, "hint": hint, "message": message})


class Table:
    """Just enough of PostgREST over a list of rows: id=gt., limit, order=id.asc."""

    def __init__(self, ids):
        self.rows = [{"id": site_id, "domain": f"site{site_id}.example.com", "status_hosting": "pending"}
                     for site_id in ids]

    def __call__(self, request):
        rows = self.rows
        after = request.args.get("id")
        if after:
            assert after.startswith("gt.")
            rows = [row for row in rows if row["id"] > int(after[3:])]
        return json_response(200, rows[: int(request.args["limit"])])


# --- reading the pending sites -------------------------------------------------------------------------------

def test_fetch_pending_hosting_sites_first_page_sends_exact_query_and_key_headers(httpserver, make_client):
    httpserver.expect_request(TABLE_PATH, method="GET").respond_with_handler(Table([1, 2]))

    rows = list(make_client().fetch_pending_hosting_sites())

    assert [row["id"] for row in rows] == [1, 2]
    (request, _), = httpserver.log
    assert request.query_string.decode() == PAGE_QUERY + "&limit=1000"
    assert request.headers["apikey"] == SERVICE_KEY
    assert request.headers["Authorization"] == f"Bearer {SERVICE_KEY}"


def test_fetch_pending_hosting_sites_several_pages_yields_every_row_once_by_keyset(httpserver, make_client):
    httpserver.expect_request(TABLE_PATH, method="GET").respond_with_handler(Table([3, 5, 8, 13, 21, 34, 55]))

    rows = list(make_client().fetch_pending_hosting_sites(page_size=3))

    assert [row["id"] for row in rows] == [3, 5, 8, 13, 21, 34, 55]
    assert requests_seen(httpserver) == [
        ("GET", PAGE_QUERY + "&limit=3"),
        ("GET", PAGE_AFTER_QUERY.format(8) + "&limit=3"),
        ("GET", PAGE_AFTER_QUERY.format(34) + "&limit=3"),
    ]
    assert all("offset" not in query for _, query in requests_seen(httpserver))


def test_fetch_pending_hosting_sites_full_last_page_asks_once_more_and_stops_on_empty(httpserver, make_client):
    httpserver.expect_request(TABLE_PATH, method="GET").respond_with_handler(Table([1, 2, 3, 4]))

    rows = list(make_client().fetch_pending_hosting_sites(page_size=2))

    assert [row["id"] for row in rows] == [1, 2, 3, 4]
    assert [query for _, query in requests_seen(httpserver)][-1] == PAGE_AFTER_QUERY.format(4) + "&limit=2"
    assert len(httpserver.log) == 3


def test_fetch_pending_hosting_sites_retry_failed_asks_for_pending_and_failed(httpserver, make_client):
    httpserver.expect_request(TABLE_PATH, method="GET").respond_with_handler(Table([1]))

    list(make_client().fetch_pending_hosting_sites(statuses=("pending", "failed")))

    (request, _), = httpserver.log
    assert request.query_string.decode() == (
        "select=id%2Cdomain%2Cstatus_hosting%2Chosting_server%2Chosting_machine%2Cerror_message&status_dns=eq.active&status_hosting=in.%28pending%2Cfailed%29"
        "&order=id.asc&limit=1000")
    assert request.args["status_hosting"] == "in.(pending,failed)"


@pytest.mark.parametrize("row", [{"domain": "a.example.com"}, {"id": None, "domain": "a.example.com"},
                                 {"id": True, "domain": "a.example.com"}, {"id": [1], "domain": "a.example.com"},
                                 "a.example.com"])
def test_fetch_pending_hosting_sites_row_without_usable_id_raises_before_any_site_is_worked_on(httpserver,
                                                                                              make_client, row):
    httpserver.expect_request(TABLE_PATH).respond_with_json([{"id": 1, "domain": "ok.example.com"}, row])

    with pytest.raises(SupabaseError, match="a row without a usable id"):
        list(make_client().fetch_pending_hosting_sites())  # the whole page is refused, its good rows too


@pytest.mark.parametrize("method", ["GET", "PATCH"])
def test_supabase_client_empty_200_body_is_an_error_not_zero_rows(httpserver, make_client, sleeps, method):
    httpserver.expect_request(TABLE_PATH, method=method).respond_with_data("", content_type="application/json")
    client = make_client(retry_policy=fast_retry_policy(sleeps, attempts=1))

    with pytest.raises(SupabaseError) as caught:
        if method == "GET":
            list(client.fetch_pending_hosting_sites())
        else:
            client.update_site_hosting_status(3, "active", doc_root="/d", matomo_id=1)

    assert "Supabase answered HTTP 200 with an empty body, where PostgREST always sends JSON" in str(caught.value)
    assert not isinstance(caught.value, SupabaseSetupError)  # not taken for a key that cannot write


def test_fetch_pending_hosting_sites_json_object_instead_of_rows_says_so(httpserver, make_client):
    httpserver.expect_request(TABLE_PATH).respond_with_json({"id": 1, "domain": "a.example.com"})

    with pytest.raises(SupabaseError) as caught:
        list(make_client().fetch_pending_hosting_sites())

    assert str(caught.value) == ("read the pending sites: Supabase answered JSON that is not a list of rows (dict "
                                 "where a list was expected)")


def test_fetch_pending_hosting_sites_json_nested_too_deep_is_a_supabase_error_not_a_crash(httpserver, make_client):
    httpserver.expect_request(TABLE_PATH).respond_with_data("[" * 100_000 + "]" * 100_000,
                                                            content_type="application/json")

    with pytest.raises(SupabaseError) as caught:
        list(make_client().fetch_pending_hosting_sites())

    assert str(caught.value) == "read the pending sites: Supabase answered JSON that cannot be read (RecursionError)"


def test_fetch_pending_hosting_sites_html_200_raises_not_json_supabase_error(httpserver, make_client):
    httpserver.expect_request(TABLE_PATH).respond_with_data("<html><body>Welcome to nginx</body></html>",
                                                            content_type="text/html")

    with pytest.raises(SupabaseError) as caught:
        list(make_client().fetch_pending_hosting_sites())

    assert "not JSON" in str(caught.value)
    assert not caught.value.transient


# --- errors, each with its class and a message that says what to do ------------------------------------------

def test_fetch_pending_hosting_sites_invalid_api_key_raises_setup_error_naming_the_setting(httpserver, make_client,
                                                                                           sleeps):
    httpserver.expect_request(TABLE_PATH).respond_with_response(json_response(
        401, {"message": "Invalid API key", "hint": "Double check your Supabase `anon` or `service_role` API key."}))

    with pytest.raises(SupabaseSetupError) as caught:
        list(make_client().fetch_pending_hosting_sites())

    message = str(caught.value)
    assert message.startswith("read the pending sites: Supabase refused the key (HTTP 401: Invalid API key)")
    assert "set SUPABASE_SERVICE_KEY" in message
    assert SERVICE_KEY not in message
    assert len(httpserver.log) == 1 and sleeps == []


def test_fetch_pending_hosting_sites_missing_table_raises_setup_error_naming_the_table(httpserver, make_client):
    httpserver.expect_request("/rest/v1/sitez").respond_with_response(error_of(
        404, "PGRST205", "Could not find the table 'public.sitez' in the schema cache",
        hint="Perhaps you meant the table 'public.sites'"))

    with pytest.raises(SupabaseSetupError) as caught:
        list(make_client(table="sitez").fetch_pending_hosting_sites())

    assert str(caught.value) == (
        "read the pending sites: table 'sitez' not found (HTTP 404 PGRST205: Could not find the table "
        "'public.sitez' in the schema cache); check SITES_TABLE, or create the table")


def test_check_table_missing_column_42703_raises_setup_error_naming_the_migration(httpserver, make_client):
    httpserver.expect_request(TABLE_PATH).respond_with_response(
        error_of(400, "42703", "column sites.doc_root does not exist"))

    with pytest.raises(SupabaseSetupError) as caught:
        make_client().check_table()

    assert str(caught.value) == ("read the table: a column is missing (HTTP 400 42703: column sites.doc_root does "
                                 f"not exist); {MIGRATION_HINT}")
    (request, _), = httpserver.log
    assert request.args["select"] == "id,domain,status_dns,hosting_server,hosting_machine,status_hosting,doc_root,matomo_id,error_message"
    assert request.args["limit"] == "1"


def test_update_site_hosting_status_missing_column_pgrst204_raises_setup_error_naming_the_migration(
        httpserver, make_client):
    httpserver.expect_request(TABLE_PATH, method="PATCH").respond_with_response(
        error_of(400, "PGRST204", "Could not find the 'matomo_id' column of 'sites' in the schema cache"))

    with pytest.raises(SupabaseSetupError) as caught:
        make_client().update_site_hosting_status(7, "active", doc_root="/home/u/htdocs/a.com", matomo_id=3)

    assert "a column is missing (HTTP 400 PGRST204: Could not find the 'matomo_id' column" in str(caught.value)
    assert str(caught.value).endswith(MIGRATION_HINT)
    assert "supabase/migrations/" in MIGRATION_HINT


def test_fetch_pending_hosting_sites_503_is_transient_and_retried_with_injected_sleeps(httpserver, make_client,
                                                                                      sleeps):
    httpserver.expect_ordered_request(TABLE_PATH).respond_with_response(
        error_of(503, "PGRST001", "Database client error. Retrying the connection."))
    httpserver.expect_ordered_request(TABLE_PATH).respond_with_response(
        Response("<html>503 Service Temporarily Unavailable</html>", status=503, content_type="text/html"))
    httpserver.expect_ordered_request(TABLE_PATH).respond_with_handler(Table([1, 2]))

    rows = list(make_client().fetch_pending_hosting_sites())

    assert [row["id"] for row in rows] == [1, 2]
    assert len(httpserver.log) == 3
    assert sleeps == [0.75, 1.5]


def test_fetch_pending_hosting_sites_503_every_time_gives_up_after_four_attempts(httpserver, make_client, sleeps):
    httpserver.expect_request(TABLE_PATH).respond_with_response(
        error_of(503, "PGRST001", "Database client error. Retrying the connection."))

    with pytest.raises(SupabaseError) as caught:
        list(make_client().fetch_pending_hosting_sites())

    assert caught.value.transient is True
    assert not isinstance(caught.value, SupabaseSetupError)
    assert str(caught.value) == ("read the pending sites: HTTP 503 PGRST001: Database client error. "
                                 "Retrying the connection.")
    assert len(httpserver.log) == 4
    assert sleeps == [0.75, 1.5, 3.0]


def test_fetch_pending_hosting_sites_429_waits_the_retry_after_header(httpserver, make_client, sleeps):
    httpserver.expect_ordered_request(TABLE_PATH).respond_with_response(
        json_response(429, {"message": "Too many requests"}, headers={"Retry-After": "9"}))
    httpserver.expect_ordered_request(TABLE_PATH).respond_with_handler(Table([1]))

    assert [row["id"] for row in make_client().fetch_pending_hosting_sites()] == [1]
    assert sleeps == [9.0]


def test_fetch_pending_hosting_sites_500_is_not_retried_and_names_status_and_message(httpserver, make_client,
                                                                                     sleeps):
    httpserver.expect_request(TABLE_PATH).respond_with_response(
        error_of(500, "XX000", "could not open relation with OID 16384"))

    with pytest.raises(SupabaseError) as caught:
        list(make_client().fetch_pending_hosting_sites())

    assert str(caught.value) == "read the pending sites: HTTP 500 XX000: could not open relation with OID 16384"
    assert caught.value.transient is False
    assert len(httpserver.log) == 1 and sleeps == []


def test_fetch_pending_hosting_sites_slow_answer_raises_transient_timeout_error(httpserver, make_client, sleeps):
    released = threading.Event()

    def slow(request):
        released.wait(1)  # the server being slow; released as soon as the client has given up
        return json_response(200, [])

    httpserver.expect_request(TABLE_PATH).respond_with_handler(slow)
    client = make_client(timeout=0.2, retry_policy=fast_retry_policy(sleeps, attempts=1))

    with pytest.raises(SupabaseError) as caught:
        list(client.fetch_pending_hosting_sites())
    released.set()

    assert str(caught.value) == "read the pending sites: Supabase: no answer within 0.2 s (timeout)"
    assert caught.value.transient is True


def test_fetch_pending_hosting_sites_nothing_listening_raises_transient_cannot_reach(retry, sleeps):
    client = SupabaseClient(url=f"http://127.0.0.1:{closed_port()}", service_key=SERVICE_KEY, table="sites", timeout=2,
                            retry=retry)
    try:
        with pytest.raises(SupabaseError) as caught:
            list(client.fetch_pending_hosting_sites())
    finally:
        client.close()

    assert str(caught.value).startswith("read the pending sites: Supabase: cannot connect (")
    assert caught.value.transient is True
    assert sleeps == [0.75, 1.5, 3.0]
    assert SERVICE_KEY not in str(caught.value)


def test_supabase_client_fractional_timeout_is_kept_and_requests_succeed(httpserver, make_client, socket_timeouts):
    httpserver.expect_request(TABLE_PATH).respond_with_handler(Table([1]))
    client = make_client(timeout=0.5)

    assert [row["id"] for row in client.fetch_pending_hosting_sites()] == [1]
    assert socket_timeouts[-1] == 0.5  # supabase-py's own client truncated it to 0: every request failed


# --- writing an outcome ----------------------------------------------------------------------------------------

def test_update_site_hosting_status_sends_exact_body_filters_and_prefer_and_returns_true(httpserver, make_client):
    httpserver.expect_request(TABLE_PATH, method="PATCH").respond_with_json(
        [{"id": 42, "status_hosting": "active"}])

    written = make_client().update_site_hosting_status(
        42, "active", doc_root="/home/example-com-0a1b2c3d4e5f/htdocs/example.com", matomo_id=5)

    assert written is True
    (request, _), = httpserver.log
    assert request.query_string.decode() == "id=eq.42&status_hosting=eq.pending"
    assert request.headers["Prefer"] == "return=representation"
    assert request.headers["apikey"] == SERVICE_KEY
    assert request.headers["Authorization"] == f"Bearer {SERVICE_KEY}"
    assert json.loads(request.get_data()) == {"status_hosting": "active",
                                              "doc_root": "/home/example-com-0a1b2c3d4e5f/htdocs/example.com",
                                              "matomo_id": 5, "error_message": None}


def test_update_site_hosting_status_uses_the_status_it_was_read_with(httpserver, make_client):
    httpserver.expect_request(TABLE_PATH, method="PATCH").respond_with_json([{"id": 9}])

    make_client().update_site_hosting_status(9, "failed", error_message="CloudPanel: boom", read_status="failed")

    (request, _), = httpserver.log
    assert dict(parse_qsl(request.query_string.decode())) == {"id": "eq.9", "status_hosting": "eq.failed"}
    assert json.loads(request.get_data()) == {"status_hosting": "failed", "doc_root": None, "matomo_id": None,
                                              "error_message": "CloudPanel: boom"}


def test_update_site_hosting_status_no_row_matched_and_row_changed_returns_false(httpserver, make_client):
    httpserver.expect_request(TABLE_PATH, method="PATCH").respond_with_json([])
    httpserver.expect_request(TABLE_PATH, method="GET").respond_with_json(
        [{"status_hosting": "active", "doc_root": "/other", "matomo_id": 9, "error_message": None}])

    assert make_client().update_site_hosting_status(3, "active", doc_root="/d", matomo_id=1) is False
    assert [method for method, _ in requests_seen(httpserver)] == ["PATCH", "GET"]


def test_update_site_hosting_status_row_still_as_read_means_the_key_cannot_write(httpserver, make_client):
    """Row-level security lets an anon key read but silently update nothing: every write of the run would fail."""
    httpserver.expect_request(TABLE_PATH, method="PATCH").respond_with_json([])
    httpserver.expect_request(TABLE_PATH, method="GET").respond_with_json(
        [{"status_hosting": "pending", "doc_root": None, "matomo_id": None, "error_message": None}])

    with pytest.raises(SupabaseSetupError) as caught:
        make_client().update_site_hosting_status(3, "active", doc_root="/d", matomo_id=1)

    assert str(caught.value) == (
        "record the outcome of site 3: Supabase accepted the update but changed no row, though the row is still "
        "pending: the key can read the table but not update it (row-level security?); set SUPABASE_SERVICE_KEY "
        "to the service_role or sb_secret_ key")


def test_update_site_hosting_status_html_200_raises_not_json_instead_of_counting_as_written(httpserver,
                                                                                           make_client):
    httpserver.expect_request(TABLE_PATH, method="PATCH").respond_with_data(
        "<html><body>maintenance</body></html>", content_type="text/html")

    with pytest.raises(SupabaseError) as caught:
        make_client().update_site_hosting_status(3, "active", doc_root="/d", matomo_id=1)

    assert str(caught.value).startswith("record the outcome of site 3: Supabase answered something that is not JSON")


def test_update_site_hosting_status_dropped_answer_then_row_already_written_counts_true(httpserver, make_client,
                                                                                        sleeps):
    """The first PATCH lands but its answer is lost; the retry matches nothing and re-reads the row."""
    row = {"id": 11, "status_hosting": "pending", "doc_root": None, "matomo_id": None, "error_message": None}
    patches = []

    def patch(request):
        patches.append(request.args.to_dict())
        if row["status_hosting"] != request.args["status_hosting"][3:]:
            return json_response(200, [])
        row.update(json.loads(request.get_data()))
        if len(patches) == 1:
            request.environ["werkzeug.socket"].shutdown(socket.SHUT_RDWR)  # written, but no answer
        return json_response(200, [row])

    def read(request):
        return json_response(200, [{key: row[key] for key in request.args["select"].split(",")}])

    httpserver.expect_request(TABLE_PATH, method="PATCH").respond_with_handler(patch)
    httpserver.expect_request(TABLE_PATH, method="GET").respond_with_handler(read)

    written = make_client().update_site_hosting_status(11, "active", doc_root="/home/u/htdocs/d.com", matomo_id=4)

    assert written is True
    assert [method for method, _ in requests_seen(httpserver)] == ["PATCH", "PATCH", "GET"]
    assert requests_seen(httpserver)[2][1] == "select=status_hosting%2Cdoc_root%2Cmatomo_id%2Cerror_message&id=eq.11"
    assert sleeps == [0.75]


def test_update_site_hosting_status_retry_finds_row_changed_by_someone_else_returns_false(httpserver, make_client,
                                                                                          sleeps):
    httpserver.expect_ordered_request(TABLE_PATH, method="PATCH").respond_with_response(
        error_of(503, "PGRST002", "Could not query the database for the schema cache. Retrying."))
    httpserver.expect_ordered_request(TABLE_PATH, method="PATCH").respond_with_json([])
    httpserver.expect_ordered_request(TABLE_PATH, method="GET").respond_with_json(
        [{"status_hosting": "failed", "doc_root": None, "matomo_id": None, "error_message": "set by hand"}])

    assert make_client().update_site_hosting_status(11, "active", doc_root="/d", matomo_id=4) is False
    assert [method for method, _ in requests_seen(httpserver)] == ["PATCH", "PATCH", "GET"]


def test_update_site_hosting_status_long_error_message_masks_secret_then_cuts_to_500(httpserver, make_client):
    password = "Gen3ratedPassw0rdXyZ1234567890ab"
    secret_values.add(password)
    httpserver.expect_request(TABLE_PATH, method="PATCH").respond_with_json([{"id": 1}])
    # the secret straddles the cut: cutting first and masking after would send its first ten characters
    message = "CloudPanel: " + "x" * 478 + password + " tail" * 100

    make_client().update_site_hosting_status(1, "failed", error_message=message)

    (request, _), = httpserver.log
    sent = json.loads(request.get_data())["error_message"]
    assert sent == "CloudPanel: " + "x" * 478 + "***" + " tail …"
    assert len(sent) == 500
    assert password[:10] not in request.get_data(as_text=True)


def test_update_site_hosting_status_500_raises_final_error_without_key(httpserver, make_client, sleeps):
    httpserver.expect_request(TABLE_PATH, method="PATCH").respond_with_response(
        error_of(500, "XX000", "internal error"))

    with pytest.raises(SupabaseError) as caught:
        make_client().update_site_hosting_status(5, "active", doc_root="/d", matomo_id=1)

    assert str(caught.value) == "record the outcome of site 5: HTTP 500 XX000: internal error"
    assert caught.value.transient is False and sleeps == []
    assert SERVICE_KEY not in str(caught.value)


def test_update_site_hosting_status_check_violation_names_the_migration(httpserver, make_client):
    httpserver.expect_request(TABLE_PATH, method="PATCH").respond_with_response(error_of(
        400, "23514", 'new row for relation "sites" violates check constraint "sites_status_hosting_check"'))

    with pytest.raises(SupabaseError) as caught:
        make_client().update_site_hosting_status(5, "active", doc_root="/d", matomo_id=1)

    assert not isinstance(caught.value, SupabaseSetupError)
    assert "the table refused the value (HTTP 400 23514: new row for relation" in str(caught.value)
    assert str(caught.value).endswith(MIGRATION_HINT)


# --- several servers: one read for mine and unassigned, claims, notes ---------------------------------------------

def test_fetch_pending_hosting_sites_of_a_server_is_one_query_for_its_rows_and_unassigned_ones(httpserver,
                                                                                               make_client):
    httpserver.expect_request(TABLE_PATH).respond_with_handler(Table([1]))

    list(make_client(server_name="web-1").fetch_pending_hosting_sites())

    (method, query), = requests_seen(httpserver)
    assert query == (COLUMNS + "&status_dns=eq.active&status_hosting=eq.pending"
                     "&or=%28hosting_server.eq.web-1%2Chosting_server.is.null%29&order=id.asc&limit=1000")


def test_claim_is_a_conditional_update_on_unassigned_and_the_status_read(httpserver, make_client):
    httpserver.expect_request(TABLE_PATH, method="PATCH").respond_with_json([{"id": 7, "hosting_server": "web-1"}])

    assert make_client(server_name="web-1").claim(7) is True

    (request, _), = httpserver.log
    assert request.query_string.decode() == "id=eq.7&status_hosting=eq.pending&hosting_server=is.null"
    assert json.loads(request.get_data()) == {"hosting_server": "web-1"}


def test_claim_won_by_another_server_first_is_false(httpserver, make_client):
    httpserver.expect_request(TABLE_PATH, method="PATCH").respond_with_json([])
    httpserver.expect_request(TABLE_PATH, method="GET").respond_with_json(
        [{"hosting_server": "web-2", "status_hosting": "pending"}])

    assert make_client(server_name="web-1").claim(7) is False


def test_claim_whose_answer_was_lost_finds_it_landed_and_is_true(httpserver, make_client, sleeps):
    row = {"hosting_server": None, "status_hosting": "pending"}
    patches = []

    def patch(request):
        patches.append(1)
        if row["hosting_server"] is not None:
            return json_response(200, [])
        row["hosting_server"] = "web-1"
        request.environ["werkzeug.socket"].shutdown(socket.SHUT_RDWR)  # written, but no answer
        return json_response(200, [row])

    httpserver.expect_request(TABLE_PATH, method="PATCH").respond_with_handler(patch)
    httpserver.expect_request(TABLE_PATH, method="GET").respond_with_handler(lambda request: json_response(200, [row]))

    assert make_client(server_name="web-1").claim(7) is True
    assert len(patches) == 2 and sleeps == [0.75]


def test_outcome_of_a_server_is_written_only_while_the_row_is_still_assigned_to_it(httpserver, make_client):
    httpserver.expect_request(TABLE_PATH, method="PATCH").respond_with_json([{"id": 7}])

    make_client(server_name="web-1").update_site_hosting_status(7, "active", doc_root="/d", matomo_id=3)

    (request, _), = httpserver.log
    assert request.query_string.decode() == "id=eq.7&status_hosting=eq.pending&hosting_server=eq.web-1"


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_stops_the_run_naming_supabase_url_and_is_not_followed(httpserver, make_client, status):
    httpserver.expect_request(TABLE_PATH).respond_with_response(
        Response("", status=status, headers={"Location": "https://moved.example/rest/v1/sites"}))

    with pytest.raises(SupabaseSetupError) as caught:
        list(make_client().fetch_pending_hosting_sites())

    assert str(caught.value) == (f"read the pending sites: Supabase answered HTTP {status}, a redirect to "
                                 "https://moved.example/rest/v1/sites: set SUPABASE_URL to the address it points to")
    assert len(httpserver.log) == 1


@pytest.mark.parametrize("read", ["fetch_active_without_matomo", "pending_by_server"])
def test_a_page_asked_again_after_a_503_is_the_same_request_not_one_that_grew(httpserver, make_client, sleeps, read):
    """postgrest-py's query builders change themselves: a page tried again is built anew, or its second request
    would carry order and limit twice."""
    httpserver.expect_ordered_request(TABLE_PATH).respond_with_response(
        error_of(503, "PGRST001", "Database client error. Retrying the connection."))
    httpserver.expect_ordered_request(TABLE_PATH).respond_with_handler(Table([1, 2]))

    list(getattr(make_client(), read)())

    first, second = (request.query_string.decode() for request, _ in httpserver.log)
    assert second == first and first.count("order=") == 1 and first.count("limit=") == 1
