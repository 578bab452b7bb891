"""The Supabase client's dry run: every write of a row says what it would write and sends nothing (a request here
would open a socket, which fails a unit test). What the client sends in a run: tests/integration/."""

import logging

import pytest

from hosting_automator.services.supabase_client import SupabaseClient

KEY = "sb_secret_4f1c9a7e2b8d6f3a5c0e"


@pytest.fixture
def client(retry):
    client = SupabaseClient("https://project.supabase.co", KEY, "sites", 5, retry, server_name="web-1")
    yield client
    client.close()


def test_every_write_of_a_dry_run_says_what_it_would_write_and_sends_nothing(client, caplog):
    caplog.set_level(logging.INFO)

    written = [client.claim(5, dry_run=True),
               client.note(5, "waiting for DNS: a.example resolves to 203.0.113.9", dry_run=True),
               client.update_site_hosting_status(5, "active", doc_root="/home/u/htdocs/a.example", matomo_id=3,
                                                 dry_run=True),
               client.record_matomo_id(6, 4, dry_run=True)]

    assert written == [True, True, True, True]  # as if each had been written: the dry run goes on as a run would
    assert caplog.messages == [
        "Would claim site 5 for web-1: hosting_server=web-1 (dry run: nothing changed)",
        "Would note why site 5 waits: error_message=waiting for DNS: a.example resolves to 203.0.113.9 (dry run: "
        "nothing changed)",
        "Would record the outcome of site 5: status_hosting=active, doc_root=/home/u/htdocs/a.example, matomo_id=3, "
        "error_message=None (dry run: nothing changed)",
        "Would record the Matomo site of site 6: matomo_id=4 (dry run: nothing changed)"]
