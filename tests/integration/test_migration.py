"""The migrations (hosting columns, then hosting_server), applied with psql to a real, throwaway PostgreSQL (15
preferred).

Skipped with the reason when no PostgreSQL can be started, except under CI=true, where that is a failure.
Each test gets its own database, so tests do not see each other's tables.
"""

from __future__ import annotations

import itertools

import pytest

from tests.support import postgres as pg
from tests.support.harness import REPO

MIGRATIONS_DIR = REPO / "supabase" / "migrations"
MIGRATION = MIGRATIONS_DIR / "20261125000000_hosting_columns.sql"
SERVER_MIGRATION = MIGRATIONS_DIR / "20261127000000_hosting_server.sql"
MACHINE_MIGRATION = MIGRATIONS_DIR / "20261202000000_hosting_machine.sql"

STAGE_ONE_TABLE = """
create table public.sites (
    id bigint generated always as identity primary key,
    domain text not null,
    status_dns text
);
"""

# column -> (data_type, is_nullable, column_default) in information_schema.columns, as the table's contract wants.
JOB_COLUMNS = {
    "id": ("bigint", "NO", None),
    "domain": ("text", "NO", None),
    "status_dns": ("text", "YES", None),
    "status_hosting": ("text", "NO", "'pending'::text"),
    "doc_root": ("text", "YES", None),
    "matomo_id": ("integer", "YES", None),
    "error_message": ("text", "YES", None),
}

_database_numbers = itertools.count(1)


@pytest.fixture(scope="module")
def postgres():
    try:
        server = pg.start_server()
    except pg.PostgresUnavailable as exc:
        pg.skip_or_fail(str(exc))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def db(postgres):
    """A fresh, empty database on the module's server."""
    return postgres.create_database(f"t_{next(_database_numbers)}")


def migrate(db) -> None:
    db.psql(file=MIGRATION, single_transaction=True)


def columns(db) -> dict[str, tuple[str, str, str | None]]:
    out = db.psql(
        "select column_name, data_type, is_nullable, coalesce(column_default, '<null>')"
        " from information_schema.columns"
        " where table_schema = 'public' and table_name = 'sites' order by ordinal_position"
    )
    result = {}
    for line in out.splitlines():
        name, data_type, nullable, default = line.split("|")
        result[name] = (data_type, nullable, None if default == "<null>" else default)
    return result


def rows(db) -> list[str]:
    return db.psql("select * from public.sites order by id").splitlines()


def test_adds_every_design_column_to_a_stage_one_table(db):
    db.psql(STAGE_ONE_TABLE + "insert into public.sites (domain, status_dns) values ('a.example', 'active'), ('b.example', null);")

    migrate(db)

    assert columns(db) == JOB_COLUMNS
    # id | domain | status_dns | status_hosting | doc_root | matomo_id | error_message
    assert rows(db) == ["1|a.example|active|pending|||", "2|b.example||pending|||"]
    # The earlier stage inserts without naming status_hosting: new rows must be pending too.
    db.psql("insert into public.sites (domain, status_dns) values ('c.example', 'active')")
    assert db.psql("select status_hosting from public.sites where domain = 'c.example'") == "pending"


def test_applying_twice_succeeds_without_duplicates_or_data_changes(db):
    db.psql(STAGE_ONE_TABLE + "insert into public.sites (domain, status_dns) values ('a.example', 'active');")
    migrate(db)
    db.psql("update public.sites set status_hosting = 'active', doc_root = '/home/a/htdocs/a.example', matomo_id = 3")
    before = rows(db)

    migrate(db)

    assert rows(db) == before == ["1|a.example|active|active|/home/a/htdocs/a.example|3|"]
    assert columns(db) == JOB_COLUMNS
    constraints = db.psql(
        "select conname from pg_constraint where conrelid = 'public.sites'::regclass and contype = 'c' order by conname"
    )
    assert constraints.splitlines() == ["sites_status_hosting_check"]
    indexes = db.psql("select indexname from pg_indexes where schemaname = 'public' and tablename = 'sites' order by indexname")
    assert indexes.splitlines() == ["sites_hosting_pending_idx", "sites_pkey"]


def test_check_constraint_rejects_unknown_states_and_accepts_known_ones(db):
    db.psql(STAGE_ONE_TABLE + "insert into public.sites (domain, status_dns) values ('a.example', 'active');")
    migrate(db)

    with pytest.raises(pg.PsqlError) as rejected:
        db.psql("update public.sites set status_hosting = 'done'")
    assert "23514" in rejected.value.stderr
    assert 'violates check constraint "sites_status_hosting_check"' in rejected.value.stderr
    with pytest.raises(pg.PsqlError, match="23514"):
        db.psql("insert into public.sites (domain, status_hosting) values ('b.example', 'Active')")
    assert rows(db) == ["1|a.example|active|pending|||"]

    for state in ("active", "failed", "pending"):
        db.psql(f"update public.sites set status_hosting = '{state}'")
        assert db.psql("select status_hosting from public.sites") == state


def test_partial_index_serves_the_jobs_pending_query(db):
    db.psql(STAGE_ONE_TABLE)
    migrate(db)
    # 3,000 rows, a third of them ready and pending; the rest done or still waiting for DNS.
    db.psql(
        "insert into public.sites (domain, status_dns, status_hosting)"
        " select 's' || g || '.example',"
        "        case when g % 3 = 2 then 'pending' else 'active' end,"
        "        case when g % 3 = 1 then 'active' else 'pending' end"
        " from generate_series(1, 3000) as g;"
        " analyze public.sites;"
    )

    indexdef = db.psql("select indexdef from pg_indexes where schemaname = 'public' and indexname = 'sites_hosting_pending_idx'")
    assert "ON public.sites USING btree (id)" in indexdef
    assert "status_hosting = 'pending'" in indexdef
    assert "status_dns = 'active'" in indexdef

    plan = db.psql(
        "set enable_seqscan = off;"
        " explain select id, domain from public.sites"
        " where status_dns = 'active' and status_hosting = 'pending' and id > 0 order by id limit 1000;"
    )
    assert "sites_hosting_pending_idx" in plan, plan
    # The keyset page itself: only ready, pending rows, in id order.
    page = db.psql(
        "select id from public.sites where status_dns = 'active' and status_hosting = 'pending'"
        " and id > 0 order by id limit 3"
    )
    assert page.splitlines() == ["3", "6", "9"]


def test_table_that_already_has_every_column_keeps_its_data_and_definition(db):
    db.psql(
        """
        create table public.sites (
            id bigint generated always as identity primary key,
            domain text not null,
            status_dns text,
            status_hosting text,
            doc_root text,
            matomo_id integer,
            error_message text
        );
        insert into public.sites (domain, status_dns, status_hosting, doc_root, matomo_id, error_message) values
            ('null.example', 'active', null, null, null, null),
            ('done.example', 'active', 'active', '/home/done/htdocs/done.example', 7, null),
            ('bad.example', 'active', 'failed', null, null, 'SSL: Domain could not be validated');
        """
    )
    before_rows = rows(db)
    before_columns = columns(db)

    migrate(db)

    assert rows(db) == before_rows
    assert rows(db)[0] == "1|null.example|active||||"  # the NULL stays NULL: no data rewrite
    # An existing status_hosting is not redefined: no NOT NULL forced, no default added.
    # An existing status_hosting is not forced NOT NULL, but new rows now start as pending.
    after_columns = columns(db)
    assert {k: v for k, v in after_columns.items() if k != "status_hosting"} == {
        k: v for k, v in before_columns.items() if k != "status_hosting"}
    assert after_columns["status_hosting"] == ("text", "YES", "'pending'::text")
    db.psql("insert into public.sites (domain, status_dns) values ('new.example', 'active')")
    assert db.psql("select status_hosting from public.sites where domain = 'new.example'") == "pending"
    # The constraint and the index are still added.
    assert db.psql(
        "select count(*) from pg_constraint where conrelid = 'public.sites'::regclass and conname = 'sites_status_hosting_check'"
    ) == "1"
    assert db.psql("select count(*) from pg_indexes where schemaname = 'public' and indexname = 'sites_hosting_pending_idx'") == "1"


# -- hosting_server (several servers, one table) ---------------------------------------------------------------------

SERVER_COLUMNS = {**JOB_COLUMNS, "hosting_server": ("text", "YES", None)}


def migrate_server(db) -> None:
    db.psql(file=SERVER_MIGRATION, single_transaction=True)


def indexes(db) -> list[str]:
    return db.psql(
        "select indexname from pg_indexes where schemaname = 'public' and tablename = 'sites' order by indexname"
    ).splitlines()


def test_every_migration_states_its_rules_in_its_own_header():
    files = sorted(MIGRATIONS_DIR.glob("*.sql"))
    assert {MIGRATION.name, SERVER_MIGRATION.name} <= {f.name for f in files}
    for path in files:
        text = path.read_text()
        name = path.stem.split("_", 1)[1]
        assert text.startswith(f"-- {name}: "), path.name
        header = text[: text.index("\n\n")]
        assert "idempotent" in header and "transaction-safe" in header, path.name
        assert "DESIGN" not in text, path.name  # the header says it all, it points nowhere else
        assert "concurrently" not in text.lower().replace("(no concurrently)", ""), path.name


def test_hosting_server_applies_on_top_of_the_first_migration_twice_and_keeps_data(db):
    db.psql(STAGE_ONE_TABLE + "insert into public.sites (domain, status_dns) values"
                              " ('a.example', 'active'), ('b.example', null), ('c.example', 'active');")
    migrate(db)
    db.psql("update public.sites set status_hosting = 'active', doc_root = '/home/a/htdocs/a.example', matomo_id = 3"
            " where domain = 'a.example';"
            " update public.sites set status_hosting = 'failed', error_message = 'SSL: no' where domain = 'c.example'")
    before = rows(db)

    migrate_server(db)

    assert columns(db) == SERVER_COLUMNS
    assert list(columns(db))[-1] == "hosting_server"
    # Every existing row keeps its data and starts unassigned (NULL, shown as an empty last field).
    assert rows(db) == [row + "|" for row in before] == [
        "1|a.example|active|active|/home/a/htdocs/a.example|3||",
        "2|b.example||pending||||",
        "3|c.example|active|failed|||SSL: no|",
    ]
    assert db.psql("select count(*) from public.sites where hosting_server is null") == "3"

    # A claimed row, then the file again (and both files again, in order): nothing changes.
    db.psql("update public.sites set hosting_server = 'web-1' where domain = 'b.example'")
    claimed = rows(db)
    migrate_server(db)
    migrate(db)
    migrate_server(db)
    assert rows(db) == claimed
    assert claimed[1] == "2|b.example||pending||||web-1"
    assert columns(db) == SERVER_COLUMNS
    assert indexes(db) == ["sites_hosting_pending_idx", "sites_pkey"]  # this file adds no index
    assert db.psql(
        "select conname from pg_constraint where conrelid = 'public.sites'::regclass order by conname"
    ).splitlines() == ["sites_pkey", "sites_status_hosting_check"]

    # The earlier stage inserts without naming hosting_server: new rows start unassigned.
    db.psql("insert into public.sites (domain, status_dns) values ('d.example', 'active')")
    assert db.psql("select coalesce(hosting_server, '<null>') from public.sites where domain = 'd.example'") == "<null>"
    # Any server name fits (text), and a row can be handed back (NULL): the column is nullable.
    db.psql("update public.sites set hosting_server = 'web-2.example.net' where domain = 'd.example';"
            " update public.sites set hosting_server = null where domain = 'b.example'")
    comment = db.psql("select col_description('public.sites'::regclass, attnum) from pg_attribute"
                      " where attrelid = 'public.sites'::regclass and attname = 'hosting_server'")
    assert comment.startswith("SERVER_NAME of the hosting-automator server"), comment


def test_hosting_server_that_already_exists_keeps_its_values(db):
    db.psql(STAGE_ONE_TABLE + "alter table public.sites add column hosting_server text;"
                              " insert into public.sites (domain, status_dns, hosting_server) values"
                              " ('a.example', 'active', 'web-1'), ('b.example', 'active', null);")
    migrate(db)
    before = rows(db)

    migrate_server(db)

    assert rows(db) == before == ["1|a.example|active|web-1|pending|||", "2|b.example|active||pending|||"]
    assert columns(db)["hosting_server"] == ("text", "YES", None)


# The job's read of one page, as supabase-py sends it for SERVER_NAME web-1 (PostgREST turns `or=(...)` into the OR).
FLEET_READ = (
    "select id, domain, status_hosting from public.sites"
    " where status_dns = 'active' and status_hosting {status}"
    " and (hosting_server = '{server}' or hosting_server is null) and id > {last} order by id limit {limit}"
)
PENDING = "= 'pending'"
PENDING_OR_FAILED = "in ('pending', 'failed')"  # --retry-failed


def _fleet_table(db, n=20_000):
    """n rows, as a table looks after a while: 1 % ready and pending (a third each for web-1, web-2 and nobody),
    1 % failed (web-1 or web-2), 1 % pending but DNS not ready (unassigned), the rest live on web-1..3."""
    db.psql(STAGE_ONE_TABLE)
    migrate(db)
    migrate_server(db)
    db.psql(
        "insert into public.sites (domain, status_dns, status_hosting, hosting_server)"
        " select 's' || g || '.example',"
        "        case when g % 100 = 2 then 'pending' else 'active' end,"
        "        case when g % 100 in (0, 2) then 'pending' when g % 100 = 1 then 'failed' else 'active' end,"
        "        case when g % 100 = 0 then (array['web-1', 'web-2', null])[1 + (g / 100) % 3]"
        "             when g % 100 = 1 then (array['web-1', 'web-2'])[1 + (g / 100) % 2]"
        "             when g % 100 = 2 then null"
        "             else (array['web-1', 'web-2', 'web-3'])[1 + g % 3] end"
        f" from generate_series(1, {n}) as g;"
        " analyze public.sites;"
    )
    pending_ready = {g: ["web-1", "web-2", None][(g // 100) % 3] for g in range(100, n + 1, 100)}
    failed = {g: ["web-1", "web-2"][(g // 100) % 2] for g in range(1, n + 1, 100)}
    return pending_ready, failed


def _read_all(db, server, status, page=50):
    """Every id the job reads, keyset page after keyset page."""
    ids, last = [], 0
    for _ in range(10_000):  # bounded: far more pages than the table holds
        got = [int(line.split("|")[0]) for line in db.psql(
            FLEET_READ.format(status=status, server=server, last=last, limit=page)).splitlines()]
        ids += got
        if len(got) < page:
            return ids
        last = got[-1]
    raise AssertionError("keyset paging did not end")


def _assert_ordered_index_scan(plan):
    assert "Index Scan using sites_hosting_pending_idx on sites" in plan, plan
    assert "Index Cond: (id > " in plan, plan
    for node in ("Seq Scan", "Sort", "Bitmap", "sites_pkey"):
        assert node not in plan, plan


def test_the_fleet_read_pages_mine_and_unassigned_rows_by_id(db):
    pending_ready, failed = _fleet_table(db)

    mine = sorted(g for g, server in pending_ready.items() if server in ("web-1", None))
    assert _read_all(db, "web-1", PENDING) == mine
    assert _read_all(db, "web-2", PENDING) == sorted(g for g, s in pending_ready.items() if s in ("web-2", None))
    # --retry-failed: the failed rows of this server too, and still none of another's.
    assert _read_all(db, "web-1", PENDING_OR_FAILED) == sorted(mine + [g for g, s in failed.items() if s == "web-1"])


def test_the_fleet_read_is_one_ordered_scan_of_the_pending_index(db):
    _fleet_table(db)

    for last, limit in ((0, 1000), (10_000, 1000), (0, 20)):
        read = FLEET_READ.format(status=PENDING, server="web-1", last=last, limit=limit)
        plan = db.psql("explain (costs off) " + read)
        _assert_ordered_index_scan(plan)
        assert "Filter: ((hosting_server = 'web-1'::text) OR (hosting_server IS NULL))" in plan, plan

    # A page of 20 stops after 20 matches: the scan reads the pending set in id order, not all of it.
    analyzed = db.psql("explain (analyze, costs off, timing off, summary off) "
                       + FLEET_READ.format(status=PENDING, server="web-1", last=0, limit=20))
    assert "Index Scan using sites_hosting_pending_idx on sites (actual rows=20 loops=1)" in analyzed, analyzed

    # PostgREST binds filter values as parameters of a prepared statement; after five executions PostgreSQL may
    # switch to a generic plan, which cannot use a partial index. With the pending set a small part of the table,
    # the custom plan (on the partial index) stays far cheaper, so it is kept.
    out = db.psql(
        "prepare page(text, text, text, bigint) as select id, domain, status_hosting from public.sites"
        " where status_dns = $1 and status_hosting = $2 and (hosting_server = $3 or hosting_server is null)"
        " and id > $4 order by id limit 1000;"
        + "execute page('active', 'pending', 'web-1', 0);" * 8
        + "explain (costs off) execute page('active', 'pending', 'web-1', 0);"
    )
    plan = out[out.index("Limit"):]
    _assert_ordered_index_scan(plan)


@pytest.mark.parametrize("ci, outcome", [("true", pytest.fail.Exception), ("", pytest.skip.Exception)])
def test_unavailable_postgres_skips_locally_but_fails_under_ci(monkeypatch, ci, outcome):
    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match="PostgreSQL 15 not available: no initdb"):
        pg.skip_or_fail("no initdb")


def test_hosting_machine_applies_on_top_of_the_others_twice_and_keeps_every_row_as_it_was(db):
    db.psql(STAGE_ONE_TABLE + "insert into public.sites (domain, status_dns) values ('a.example', 'active');")
    migrate(db)
    migrate_server(db)
    db.psql("update public.sites set hosting_server = 'web-1'")
    before = rows(db)

    for _ in range(2):
        db.psql(file=MACHINE_MIGRATION, single_transaction=True)

    assert columns(db) == {**SERVER_COLUMNS, "hosting_machine": ("text", "YES", None)}
    assert rows(db) == [row + "|" for row in before]  # the claimed row keeps its server, with no machine yet
    assert indexes(db) == ["sites_hosting_pending_idx", "sites_pkey"]


def test_on_a_project_without_the_table_the_files_in_order_make_the_whole_table(db):
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        db.psql(file=path, single_transaction=True)
    db.psql("insert into public.sites (domain, status_dns) values ('a.example', 'active')")
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):  # and again: nothing changes
        db.psql(file=path, single_transaction=True)

    assert columns(db) == {**SERVER_COLUMNS, "hosting_machine": ("text", "YES", None)}
    assert rows(db) == ["1|a.example|active|pending|||||"]
