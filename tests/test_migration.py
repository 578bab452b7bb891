"""The hosting-columns migration, applied with psql to a real, throwaway PostgreSQL (15 preferred).

Skipped with the reason when no PostgreSQL can be started, except under CI=true, where that is a failure.
Each test gets its own database, so tests do not see each other's tables.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

try:  # tests/ importable as a (namespace) package: the repository root is on sys.path
    from tests import postgres as pg
except ImportError:  # pytest's default import mode puts tests/ itself on sys.path
    import postgres as pg

MIGRATION = (
    Path(__file__).resolve().parent.parent / "supabase" / "migrations" / "20261125000000_hosting_columns.sql"
)

STAGE_ONE_TABLE = """
create table public.sites (
    id bigint generated always as identity primary key,
    domain text not null,
    status_dns text
);
"""

# column -> (data_type, is_nullable, column_default) in information_schema.columns, as the table's contract wants.
DESIGN_COLUMNS = {
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

    assert columns(db) == DESIGN_COLUMNS
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
    assert columns(db) == DESIGN_COLUMNS
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


@pytest.mark.parametrize("ci, outcome", [("true", pytest.fail.Exception), ("", pytest.skip.Exception)])
def test_unavailable_postgres_skips_locally_but_fails_under_ci(monkeypatch, ci, outcome):
    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match="PostgreSQL 15 not available: no initdb"):
        pg.skip_or_fail("no initdb")
