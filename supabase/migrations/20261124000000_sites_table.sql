-- sites_table: create public.sites for a project that has none yet, with the columns the earlier pipeline stage
-- writes (id, domain, status_dns). The files after this one add what the hosting job reads and writes.
--
-- Apply first. Every statement is idempotent (safe to apply twice) and transaction-safe (no CONCURRENTLY), so it
-- runs as Supabase's CLI runs it (one transaction per file) and as `psql -1 -f` runs it. On a project whose
-- sites table exists already it changes nothing: `create table if not exists` leaves that table as it is.
--
-- id          the row's identity; rows are read in id order. A bigint here; the job takes a uuid too.
-- domain      the host name to serve, as the earlier stage writes it (the job checks and normalises it).
-- status_dns  the earlier stage's "DNS points here" flag: the job takes rows where it is 'active'.
--
-- Row-level security: the job uses the service_role (or sb_secret_) key, which bypasses it; enable it and add
-- policies for whatever else reads the table.

create table if not exists public.sites (
    id bigint generated always as identity primary key,
    domain text not null,
    status_dns text
);
