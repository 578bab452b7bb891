"""The PostgREST stand-in's logic trees (`or=(...)`, `and=(...)`, `not.or=(...)`) and conditional PATCH, as the
several-servers read and claim use them: parsed as PostgREST parses them, evaluated as SQL evaluates them, and
checked through supabase-py itself, so that what the job sends is what the stand-in reads."""

import http.client
import json
import threading
from urllib.parse import quote

import httpx
import pytest
from postgrest.exceptions import APIError
from supabase import ClientOptions, create_client

from tests.standins.postgrest import DEFAULT_COLUMNS, FakePostgrest

SERVERS = ["web-1", None, "web-2", None, "a,b", "web-1"]  # hosting_server of rows 1..6


@pytest.fixture
def pg():
    with FakePostgrest() as started:
        for i, server in enumerate(SERVERS, start=1):
            started.insert({"domain": f"s{i}.example.test", "status_dns": "active", "status_hosting": "pending",
                            "hosting_server": server})
        yield started


def request(pg, method, query, body=None, prefer="return=representation"):
    """(status, JSON body) of one request; `query` is a list of (name, value) pairs, percent-encoded here."""
    client = http.client.HTTPConnection("127.0.0.1", pg.port, timeout=5)
    try:
        qs = "&".join(f"{quote(k, safe='.')}={quote(v, safe='')}" for k, v in query)
        headers = {"apikey": pg.service_key, "Authorization": f"Bearer {pg.service_key}", "Prefer": prefer,
                   "Content-Type": "application/json"}
        client.request(method, f"/rest/v1/sites?{qs}", body=None if body is None else json.dumps(body),
                       headers=headers)
        answer = client.getresponse()
        raw = answer.read()
        return answer.status, (json.loads(raw) if raw else None)
    finally:
        client.close()


def ids(pg, *query):
    status, body = request(pg, "GET", [("select", "id"), *query])
    assert status == 200, body
    return [row["id"] for row in body]


def test_hosting_server_is_a_default_column_and_starts_null():
    assert "hosting_server" in DEFAULT_COLUMNS
    with FakePostgrest() as pg:
        row = pg.insert({"domain": "new.example.test"})
        assert row["hosting_server"] is None
        status, body = request(pg, "GET", [("select", "*")])
        assert status == 200 and body[0]["hosting_server"] is None


def test_or_of_mine_and_unassigned(pg):
    assert ids(pg, ("or", "(hosting_server.eq.web-1,hosting_server.is.null)")) == [1, 2, 4, 6]
    # with the other filters of the job's read, ANDed, and keyset paging
    assert ids(pg, ("status_hosting", "eq.pending"), ("or", "(hosting_server.eq.web-1,hosting_server.is.null)"),
               ("id", "gt.2"), ("order", "id"), ("limit", "1")) == [4]
    assert ids(pg, ("or", "(hosting_server.eq.web-2,hosting_server.is.null)")) == [2, 3, 4]


@pytest.mark.parametrize("tree, expected", [
    # quoted values: the comma is part of the value, quotes are removed, a backslash takes the next character
    ('(hosting_server.eq."a,b")', [5]),
    ('(hosting_server.eq."web-\\1")', [1, 6]),
    ('(hosting_server.in.("a,b",web-2))', [3, 5]),
    # `is` is case-insensitive; negated leaves; whitespace around names, commas and parentheses
    ("(hosting_server.is.NULL)", [2, 4]),
    ("(hosting_server.not.is.null, id.eq.2)", [1, 2, 3, 5, 6]),
    (" ( hosting_server.eq.web-2,  id.lt.2) ", [1, 3]),
    ("(hosting_server.eq.web-2 ,id.lt.2)", [1]),  # but an unquoted value runs to the comma: "web-2 " here
    # nesting, and(...) inside or(...), not. on a group
    ("(and(hosting_server.eq.web-1,id.gt.1),id.eq.3)", [3, 6]),
    ("(id.gt.4,not.or(hosting_server.is.null,hosting_server.eq.web-1))", [3, 5, 6]),
    ("(like.eq.x,hosting_server.like.web*)", None),  # a column named `like` does not exist: 42703
])
def test_logic_tree_values_and_nesting(pg, tree, expected):
    if expected is None:
        status, body = request(pg, "GET", [("or", tree)])
        assert (status, body["code"]) == (400, "42703")
        return
    assert ids(pg, ("or", tree)) == expected


def test_and_and_negated_trees_follow_sql_three_valued_logic(pg):
    assert ids(pg, ("and", "(hosting_server.neq.web-1,id.lt.5)")) == [3]  # NULL <> 'web-1' is NULL, not true
    # NOT (NULL OR false) is NULL: rows 2 and 4 are in neither the tree nor its negation.
    assert ids(pg, ("or", "(hosting_server.eq.web-2,id.eq.0)")) == [3]
    assert ids(pg, ("not.or", "(hosting_server.eq.web-2,id.eq.0)")) == [1, 5, 6]
    assert ids(pg, ("not.and", "(hosting_server.is.null,id.gt.3)")) == [1, 2, 3, 5, 6]
    # two logic parameters and plain filters: all of them must hold
    assert ids(pg, ("or", "(id.eq.1,id.eq.2,id.eq.3)"), ("or", "(hosting_server.is.null,id.eq.3)"),
               ("id", "neq.3")) == [2]


@pytest.mark.parametrize("tree, column, details", [
    # an unquoted comma starts the next condition, and `1` is not one
    ("(hosting_server.eq.web,1,hosting_server.is.null)", 27, 'unexpected "," expecting "."'),
    ("(hosting_server.eq.a b,c)", 27, None),
    ('(hosting_server.eq."a,b"x)', None, None),  # a quoted value must end at "," or ")"
    ("(hosting_server.eq.web-1", 27, 'unexpected end of input expecting ")"'),
    ("()", 4, None),
    ("", 3, None),
    ("(hosting_server.is.nul)", 22, None),
    ("(hosting_server.noop.x)", 24, "unknown single value operator noop"),
    ("(xor(id.eq.1))", None, None),
    # what PostgREST would silently misread is refused too (strict_logic, the default)
    ("(hosting_server.eq.we)b,hosting_server.is.null)", 25, None),
    ("(hosting_server.eq.we(b,hosting_server.is.null)", 24, None),
])
def test_logic_trees_that_do_not_parse_are_400_pgrst100(pg, tree, column, details):
    status, body = request(pg, "GET", [("or", tree)])
    assert status == 400, body
    assert body["code"] == "PGRST100"
    assert body["message"].startswith(f'"failed to parse logic tree ({tree})"'), body
    if column is not None:
        assert body["message"].endswith(f"(line 1, column {column})"), body
    if details is not None:
        assert body["details"] == details


def test_without_strict_logic_trees_are_read_as_postgrest_reads_them(pg):
    pg.strict_logic = False
    # PostgREST stops at the tree's closing parenthesis and ignores the rest ...
    assert ids(pg, ("or", "(hosting_server.eq.web-1)b,hosting_server.is.null)")) == [1, 6]
    # ... and keeps an unquoted "(" in the value.
    pg.update_row(2, hosting_server="we(b")
    assert ids(pg, ("or", "(hosting_server.eq.we(b,id.eq.3)")) == [2, 3]


def test_conditional_patch_claims_only_an_unassigned_row(pg):
    claim = [("id", "eq.2"), ("hosting_server", "is.null"), ("status_hosting", "eq.pending")]
    status, body = request(pg, "PATCH", claim, {"hosting_server": "web-1"})
    assert status == 200 and [row["hosting_server"] for row in body] == ["web-1"]

    status, body = request(pg, "PATCH", claim, {"hosting_server": "web-2"})
    assert (status, body) == (200, [])  # claimed already: no row matched
    assert pg.get(2)["hosting_server"] == "web-1"

    # A logic tree in a PATCH, too: the outcome write of a row that is mine or unassigned.
    status, body = request(pg, "PATCH", [("id", "eq.4"), ("or", "(hosting_server.eq.web-2,hosting_server.is.null)")],
                           {"hosting_server": "web-2", "status_hosting": "active"})
    assert status == 200 and len(body) == 1
    status, body = request(pg, "PATCH", [("id", "eq.1"), ("or", "(hosting_server.eq.web-2,hosting_server.is.null)")],
                           {"status_hosting": "failed"})
    assert (status, body) == (200, [])
    assert pg.get(1)["status_hosting"] == "pending"


def test_racing_claims_of_one_row_have_exactly_one_winner(pg):
    pg.latency = 0.01  # every request waits, so the claims pile up and meet in the handler
    rows, servers = [2, 4], [f"web-{i}" for i in range(10)]
    winners = {row: [] for row in rows}
    errors = []
    barrier = threading.Barrier(len(servers))

    def claim(server):
        try:
            barrier.wait(timeout=5)
            for row in rows:
                status, body = request(pg, "PATCH", [("id", f"eq.{row}"), ("hosting_server", "is.null"),
                                                     ("status_hosting", "eq.pending")], {"hosting_server": server})
                assert status == 200, body
                if body:
                    winners[row].append(server)
        except Exception as exc:  # noqa: BLE001 - reported by the test's thread below
            errors.append(exc)

    threads = [threading.Thread(target=claim, args=(server,)) for server in servers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert not errors and not any(t.is_alive() for t in threads)
    for row in rows:
        assert len(winners[row]) == 1, winners
        assert pg.get(row)["hosting_server"] == winners[row][0]
    assert sorted(row_id for row_id, _ in pg.patches) == rows  # one change per row, the winner's


def test_supabase_py_sends_or_as_postgrest_reads_it(pg):
    urls = []
    http_client = httpx.Client(event_hooks={"request": [lambda req: urls.append(req.url)]})
    client = create_client(pg.url, pg.service_key,
                           options=ClientOptions(httpx_client=http_client, postgrest_client_retry=False))
    try:
        # the job's read of one page, as SERVER_NAME web-1
        page = (client.table("sites").select("id,domain,status_hosting").eq("status_dns", "active")
                .eq("status_hosting", "pending").or_("hosting_server.eq.web-1,hosting_server.is.null")
                .gt("id", 1).order("id").limit(2).execute())
        assert [row["id"] for row in page.data] == [2, 4]
        sent = pg.requests_log[-1]["query"]
        assert sent["or"] == ["(hosting_server.eq.web-1,hosting_server.is.null)"]
        assert (sent["status_hosting"], sent["id"], sent["order"], sent["limit"]) == (
            ["eq.pending"], ["gt.1"], ["id.asc"], ["2"])
        assert urls[-1].params["or"] == "(hosting_server.eq.web-1,hosting_server.is.null)"

        # the claim: a conditional update that answers the row, or no row when another server was first
        won = (client.table("sites").update({"hosting_server": "web-1"}).eq("id", 2)
               .is_("hosting_server", "null").eq("status_hosting", "pending").execute())
        assert [row["hosting_server"] for row in won.data] == ["web-1"]
        assert pg.requests_log[-1]["query"]["hosting_server"] == ["is.null"]
        lost = (client.table("sites").update({"hosting_server": "web-2"}).eq("id", 2)
                .is_("hosting_server", "null").eq("status_hosting", "pending").execute())
        assert lost.data == []

        # not_.or_ and quoted values
        negated = (client.table("sites").select("id")
                   .not_.or_('hosting_server.eq."a,b",hosting_server.is.null').execute())
        assert [row["id"] for row in negated.data] == [1, 2, 3, 6]
        assert pg.requests_log[-1]["query"]["not.or"] == ['(hosting_server.eq."a,b",hosting_server.is.null)']

        # a server name holding a comma, unquoted, breaks the filter: PostgREST's own 400
        with pytest.raises(APIError) as refused:
            client.table("sites").select("id").or_("hosting_server.eq.a,b,hosting_server.is.null").execute()
        assert refused.value.code == "PGRST100"
        assert "failed to parse logic tree" in refused.value.message
    finally:
        http_client.close()
