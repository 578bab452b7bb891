-- hosting_machine: record which machine claimed a row, beside the SERVER_NAME it claimed it for, so that two
-- machines running under one name (servers cloned from one image share a host name, the default SERVER_NAME)
-- are found out and refused instead of both building the same sites.
--
-- Apply after 20261127000000_hosting_server.sql. Every statement is idempotent (safe to apply twice) and
-- transaction-safe (no CONCURRENTLY), so it runs as Supabase's CLI runs it (one transaction per file) and as
-- `psql -1 -f` runs it. It rewrites no data: adding a nullable column without a default only changes the catalog.
--
-- hosting_machine  an identity of the machine that claimed the row (16 hex digits derived from its
--                  /etc/machine-id, never the machine-id itself); null while no machine has, and on rows claimed
--                  before this file or assigned by hand. A server sets it when it claims a row, or when it first
--                  works on a row assigned to its name that has none. A server that meets a row assigned to its
--                  name under another machine's identity stops its run, naming SERVER_NAME, and changes nothing.
--                  After replacing a server's machine under the same name, clear it on that server's rows:
--                      update public.sites set hosting_machine = null where hosting_server = '<SERVER_NAME>';
--
-- No index: the column is read with the rows the job reads already, and written only with hosting_server.

alter table public.sites add column if not exists hosting_machine text;

comment on column public.sites.hosting_machine is
  'Identity of the machine whose hosting-automator claimed this row for hosting_server; null while none has.';
