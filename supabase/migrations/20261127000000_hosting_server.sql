-- hosting_server: record which CloudPanel server builds each site, so that several servers can share one sites
-- table without two of them building the same site.
--
-- Apply after 20261125000000_hosting_columns.sql. Every statement is idempotent (safe to apply twice) and
-- transaction-safe (no CONCURRENTLY), so it runs as Supabase's CLI runs it (one transaction per file) and as
-- `psql -1 -f` runs it. It rewrites no data: adding a nullable column without a default only changes the catalog.
--
-- hosting_server  the SERVER_NAME of the server that has claimed the row; null while no server has. No default, no
--                 NOT NULL: existing rows, and rows the earlier stage inserts later, start unassigned. A server
--                 claims a row before it calls any service, with a conditional update (hosting_server is null and
--                 status_hosting still as read -> its own name), and reads only the rows that are its own or
--                 unassigned; a row stays claimed through crashes and reruns. To hand a pending row to another
--                 server, set this to that server's name (or back to null, for whichever server DNS points to).
--
-- No new index: sites_hosting_pending_idx (the first file's partial index on (id) where status_dns = 'active' and
-- status_hosting = 'pending') serves the job's read, which is now
--     where status_dns = 'active' and status_hosting = 'pending'
--       and (hosting_server = :name or hosting_server is null) and id > :last order by id limit :n
-- Both arms of the OR lie in the same pending set, so one ordered range scan of that index (id > :last) covers
-- them: no sort, and the scan stops after :n matches. hosting_server is checked on each row of the pending set; the
-- only rows read and skipped are pending rows claimed by other servers, which are few (the sites those servers
-- are building or waiting for DNS for). An index keyed on hosting_server would serve one arm per range:
-- (hosting_server, id) gives a BitmapOr of two ranges followed by a sort of every match, which a keyset page
-- cannot stop early; and every claim, which changes only hosting_server, could then no longer be a HOT update.
-- tests/integration/test_migration.py checks on PostgreSQL 15, with enough rows and ANALYZE, that the read is an Index Scan
-- on sites_hosting_pending_idx with no sort, both with literal values and with bound parameters (as PostgREST sends
-- filter values, in a prepared statement executed repeatedly). Only when pending rows are a large share of the
-- table may PostgreSQL prefer a generic plan on the primary key for the prepared form; matching rows are then
-- dense enough for that scan to fill a page soon.
-- The --retry-failed read (status_hosting in ('pending', 'failed')) is not covered by that partial index, before or
-- after this file: PostgreSQL reads it through the primary key or a sequential scan, and since this file adds no
-- index, that plan stays as it was.

alter table public.sites add column if not exists hosting_server text;

comment on column public.sites.hosting_server is
  'SERVER_NAME of the hosting-automator server that has claimed this row; null while no server has.';
