-- hosting_columns: give public.sites the columns the hosting job reads and writes: the site's hosting state,
-- where CloudPanel serves it from, its Matomo id, and why it failed.
--
-- The table already exists: an earlier pipeline stage created it with at least id and domain.
-- Every statement is idempotent (safe to apply twice) and transaction-safe (no CONCURRENTLY), so it
-- runs as Supabase's CLI runs it (one transaction per file) and as `psql -1 -f` runs it.
--
-- status_dns      the earlier stage's "DNS points here" flag; added only in case that stage has not yet.
-- status_hosting  this job's state, pending -> active | failed; a new column's default fills existing rows
--                 with 'pending'. An already existing status_hosting keeps its data (no rewrite, no forced
--                 NOT NULL), but gets the default 'pending', so rows the earlier stage inserts later are
--                 picked up by the job instead of sitting at NULL forever.
-- doc_root        where CloudPanel serves the site from; null until the CloudPanel site exists.
-- matomo_id       the Matomo idSite for the tracking snippet; null when the Matomo step failed.
-- error_message   why the site failed; null otherwise.
-- sites_status_hosting_check  rejects any state but the three the job knows (NULL passes, as in any CHECK);
--                 added in a DO block because Postgres has no "add constraint if not exists".
-- sites_hosting_pending_idx   partial index for the job's keyset-paged read
--                 (where status_dns = 'active' and status_hosting = 'pending' and id > :last order by id),
--                 small because it holds only the rows still to do.

alter table public.sites add column if not exists status_dns text;
alter table public.sites add column if not exists status_hosting text not null default 'pending';
alter table public.sites alter column status_hosting set default 'pending';
alter table public.sites add column if not exists doc_root text;
alter table public.sites add column if not exists matomo_id integer;
alter table public.sites add column if not exists error_message text;

do $$
begin
  if not exists (
    select 1
    from pg_catalog.pg_constraint
    where conrelid = 'public.sites'::regclass
      and conname = 'sites_status_hosting_check'
  ) then
    alter table public.sites
      add constraint sites_status_hosting_check
      check (status_hosting in ('pending', 'active', 'failed'));
  end if;
end
$$;

create index if not exists sites_hosting_pending_idx
  on public.sites (id)
  where status_dns = 'active' and status_hosting = 'pending';
