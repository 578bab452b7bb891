"""The CloudPanel client over real processes and sockets: the local clpctl transport against the fake clpctl
executable (its SQLite state, its control-file behaviours, a hang stopped with its children), the served
certificate looked at before an order, and the clpctl HTTP gateway over a real socket against the FakeGateway
stand-in. The derived site user and the gateway against `responses`: tests/unit/test_cloudpanel_client.py."""

import logging
import os
import stat
import string
import sys
import threading
import time
from pathlib import Path

import pytest

from hosting_automator.masking import MASK, secret_values
from hosting_automator.errors import CertificateError, CloudPanelError, CloudPanelSetupError, ServiceError
from hosting_automator.services import cloudpanel_client
from hosting_automator.services.cloudpanel_client import (PASSWORD_LENGTH, ClpctlClient, GatewayClient, StaticSite,
                                                          site_user_for)
from tests.standins import clpctl_state
from tests.standins.__main__ import FAKE_CLPCTL as standin_clpctl
from tests.standins.gateway import FakeGateway
from tests.support.cloudpanel import EXPIRING, GATEWAY_TOKEN, VALID

FAKE_CLPCTL = str(standin_clpctl)


@pytest.fixture
def clpctl_client(retry, served):
    """ClpctlClient(...) with the test's retry policy (sleeps recorded) and served-certificate stand-in."""
    def make(clpctl=FAKE_CLPCTL, db_path=None, **kwargs):
        return ClpctlClient(clpctl, db_path, retry=retry, served_certificate=served, **kwargs)

    return make


# --- local clpctl against the fake executable -----------------------------------------------------------------

@pytest.fixture
def fake_db(tmp_path, monkeypatch):
    db = tmp_path / "clp" / "db.sq3"
    db.parent.mkdir()
    monkeypatch.setenv("FAKE_CLPCTL_DB", str(db))
    monkeypatch.delenv("FAKE_CLPCTL_CONTROL", raising=False)
    monkeypatch.delenv("FAKE_CLPCTL_LATENCY_MS", raising=False)
    return str(db)


@pytest.fixture
def control(tmp_path, monkeypatch):
    path = str(tmp_path / "control.json")
    monkeypatch.setenv("FAKE_CLPCTL_CONTROL", path)

    def set_behaviour(domain, command, behaviour):
        clpctl_state.write_control(path, {domain: {command: behaviour}})

    return set_behaviour


@pytest.fixture
def started(monkeypatch):
    """Every process the clpctl client starts (Popen objects, with their argument lists)."""
    processes = []
    real = ClpctlClient._start

    def recording(self, command):
        processes.append(real(self, command))
        return processes[-1]

    monkeypatch.setattr(ClpctlClient, "_start", recording)
    return processes


def test_create_static_site_new_domain_adds_site_with_derived_user(clpctl_client, fake_db, caplog):
    caplog.set_level(logging.INFO)
    client = clpctl_client(clpctl=FAKE_CLPCTL, db_path=fake_db)

    site = client.create_static_site("example.com")

    user = site_user_for("example.com")
    assert site == StaticSite(f"/home/{user}/htdocs/example.com", created=True)
    row = clpctl_state.site(fake_db, "example.com")
    assert row["user"] == user and row["type"] == "static"
    assert f"CloudPanel site created (site user {user})" in caplog.messages


def test_create_static_site_second_time_reads_db_and_adds_nothing(clpctl_client, fake_db, caplog):
    caplog.set_level(logging.INFO)
    client = clpctl_client(clpctl=FAKE_CLPCTL, db_path=fake_db)
    first = client.create_static_site("example.com")

    second = client.create_static_site("example.com")

    assert second == first._replace(created=False)
    assert len(clpctl_state.read_sites(fake_db)) == 1
    assert [call["argv"][0] for call in clpctl_state.calls(fake_db)] == ["site:add:static"]
    assert f"CloudPanel site exists already (site user {site_user_for('example.com')})" in caplog.messages


def test_create_static_site_existing_with_other_user_returns_that_users_doc_root(clpctl_client, fake_db):
    clpctl_state.add_site(fake_db, "example.com", "handmade")

    site = clpctl_client(clpctl=FAKE_CLPCTL, db_path=fake_db).create_static_site("example.com")

    assert site == StaticSite("/home/handmade/htdocs/example.com", created=False)
    assert clpctl_state.calls(fake_db) == []


def test_create_static_site_db_unreadable_site_made_by_this_job_is_known_by_its_site_user(clpctl_client, fake_db,
                                                                                         tmp_path, caplog):
    caplog.set_level(logging.INFO)
    user = site_user_for("example.com")
    clpctl_state.add_site(fake_db, "example.com", user)
    client = clpctl_client(clpctl=FAKE_CLPCTL, db_path=str(tmp_path / "no-such-db.sq3"))

    site = client.create_static_site("example.com")

    assert site == StaticSite(f"/home/{user}/htdocs/example.com", created=False)
    assert len(clpctl_state.read_sites(fake_db)) == 1
    assert [call["exit_code"] for call in clpctl_state.calls(fake_db)] == [1]  # clpctl: both values exist already
    assert f"CloudPanel site exists already, made by this job (its site user {user} exists too)" in caplog.messages


def test_create_static_site_db_unreadable_site_made_by_hand_fails_saying_what_to_set(clpctl_client, fake_db,
                                                                                    tmp_path):
    clpctl_state.add_site(fake_db, "example.com", "handmade")
    client = clpctl_client(clpctl=FAKE_CLPCTL, db_path=str(tmp_path / "no-such-db.sq3"))

    with pytest.raises(CloudPanelError) as caught:
        client.create_static_site("example.com")

    assert str(caught.value) == (
        "example.com exists in CloudPanel under a site user this job did not make, and its document root cannot be "
        "read in CloudPanel's database (CLOUDPANEL_DB_PATH, read as root): write the row's doc_root "
        "(/home/<site user>/htdocs/example.com) and set status_hosting to active by hand, or delete the site in "
        "CloudPanel and set the row to pending")
    assert not caught.value.transient


def test_create_static_site_derived_user_taken_by_other_site_names_the_stale_user(clpctl_client, fake_db):
    user = site_user_for("example.com")
    clpctl_state.add_site(fake_db, "other.example", user)

    with pytest.raises(CloudPanelError) as caught:
        clpctl_client(clpctl=FAKE_CLPCTL, db_path=fake_db).create_static_site("example.com")

    assert str(caught.value).startswith(f"site user {user} exists already but not for example.com")


def test_create_static_site_fail_behaviour_puts_clpctl_message_in_error_and_is_not_retried(clpctl_client, fake_db,
                                                                                          control, sleeps):
    control("example.com", "site:add:static", "fail:domainName: This value is not valid.")

    with pytest.raises(CloudPanelError) as caught:
        clpctl_client(clpctl=FAKE_CLPCTL, db_path=fake_db).create_static_site("example.com")

    assert str(caught.value) == "clpctl site:add:static failed: domainName: This value is not valid."
    assert caught.value.transient is False
    assert clpctl_state.read_sites(fake_db) == []
    assert len(clpctl_state.calls(fake_db)) == 1 and sleeps == []


def test_create_static_site_silent_exit_1_says_it_printed_nothing(clpctl_client, fake_db, control):
    control("example.com", "site:add:static", "silent-exit1")

    with pytest.raises(CloudPanelError) as caught:
        clpctl_client(clpctl=FAKE_CLPCTL, db_path=fake_db).create_static_site("example.com")

    assert str(caught.value) == "clpctl site:add:static failed: it printed nothing and exited with code 1"


def test_create_static_site_error_with_exit_0_counts_as_failure(clpctl_client, fake_db, control):
    control("*", "site:add:static", "error-exit0:An error occurred while creating the site user.")

    with pytest.raises(CloudPanelError) as caught:
        clpctl_client(clpctl=FAKE_CLPCTL, db_path=fake_db).create_static_site("example.com")

    assert str(caught.value) == ("clpctl site:add:static reported no success: "
                                 "An error occurred while creating the site user.")


def _group_members(pgid):
    """Live (non-zombie) processes of process group `pgid`, as (pid, command name)."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                text = fh.read()
        except OSError:
            continue
        name = text[text.index("(") + 1:text.rindex(")")]
        state, _ppid, group = text[text.rindex(")") + 2:].split()[:3]
        if int(group) == pgid and state != "Z":
            members.append((int(entry), name))
    return members


@pytest.mark.parametrize("command, timeout_name, error", [
    ("site:add:static", "SITE_COMMAND_TIMEOUT", CloudPanelError),
    ("lets-encrypt:install:certificate", "CERTIFICATE_COMMAND_TIMEOUT", CertificateError),
])
def test_clpctl_hang_is_stopped_at_timeout_with_its_children(clpctl_client, fake_db, control, started, monkeypatch,
                                                             command, timeout_name, error):
    monkeypatch.setattr(cloudpanel_client, timeout_name, 3)  # long enough for the fake to start on a busy machine
    clpctl_state.add_site(fake_db, "example.org", "someone")  # the certificate needs an existing site
    control("*", command, "hang")
    client = clpctl_client(clpctl=FAKE_CLPCTL, db_path=str(Path(fake_db).with_name("absent.sq3")))
    caught = []

    def work():
        try:
            if command == "site:add:static":
                client.create_static_site("example.org2.com")
            else:
                client.provision_ssl("example.org")
        except ServiceError as err:
            caught.append(err)

    worker = threading.Thread(target=work)
    worker.start()
    deadline = time.monotonic() + 8
    seen_sleep = False
    while time.monotonic() < deadline and not seen_sleep and worker.is_alive():
        seen_sleep = bool(started) and any(name == "sleep" for _, name in _group_members(started[0].pid))
        time.sleep(0.02)
    worker.join(15)

    assert seen_sleep, "the fake's `sleep 600` child never appeared: the test would prove nothing"
    assert not worker.is_alive()
    assert len(caught) == 1 and type(caught[0]) is error
    assert str(caught[0]) == f"clpctl {command} did not finish within 3 s and was stopped"
    gone_by = time.monotonic() + 2  # SIGKILL was sent to the whole group; the kernel takes a moment to finish it
    while _group_members(started[0].pid) and time.monotonic() < gone_by:
        time.sleep(0.02)
    assert _group_members(started[0].pid) == []
    assert started[0].returncode is not None


def test_provision_ssl_success_records_one_certificate_request(clpctl_client, fake_db, served, caplog):
    caplog.set_level(logging.INFO)
    client = clpctl_client(clpctl=FAKE_CLPCTL, db_path=fake_db)
    client.create_static_site("example.com")

    client.provision_ssl("example.com")

    assert served.looks == ["example.com", "example.com"]  # before the order, and after it to see it served
    assert [row["domain_name"] for row in clpctl_state.certificate_requests(fake_db)] == ["example.com"]
    assert clpctl_state.calls(fake_db)[-1]["argv"] == ["lets-encrypt:install:certificate",
                                                       "--domainName=example.com"]
    assert (f"Let's Encrypt certificate installed, clpctl says (not served yet: {served.answers[0].reason})"
            in caplog.messages)


def test_provision_ssl_domain_not_validated_raises_certificate_error_with_acme_detail(clpctl_client, fake_db,
                                                                                      control):
    clpctl_state.add_site(fake_db, "example.com", "someone")
    message = ("example.com: Domain could not be validated, error message: error type: "
               "urn:ietf:params:acme:error:connection, error detail: 203.0.113.9: Fetching "
               "http://example.com/.well-known/acme-challenge/x: Connection refused")
    control("example.com", "lets-encrypt:install:certificate", f"fail:{message}")

    with pytest.raises(CertificateError) as caught:
        clpctl_client(clpctl=FAKE_CLPCTL, db_path=fake_db).provision_ssl("example.com")

    assert str(caught.value) == f"clpctl lets-encrypt:install:certificate failed: {message}"
    assert caught.value.transient is False
    assert clpctl_state.certificate_requests(fake_db) == []


def test_provision_ssl_for_missing_site_raises_certificate_error(clpctl_client, fake_db):
    with pytest.raises(CertificateError, match=r'failed: Site "nosite.example" does not exist\.$'):
        clpctl_client(clpctl=FAKE_CLPCTL, db_path=fake_db).provision_ssl("nosite.example")


def test_clpctl_without_shebang_exec_format_error_falls_back_to_bin_bash(clpctl_client, fake_db, tmp_path, started):
    wrapper = tmp_path / "clpctl"
    wrapper.write_text("# no shebang, like /usr/bin/clpctl before v2.5.0\n"
                       f'exec "{sys.executable}" "{FAKE_CLPCTL}" "$@"\n')
    wrapper.chmod(0o755)

    site = clpctl_client(clpctl=str(wrapper), db_path=fake_db).create_static_site("example.com")

    assert site == StaticSite(f"/home/{site_user_for('example.com')}/htdocs/example.com", created=True)
    assert clpctl_state.site(fake_db, "example.com") is not None
    assert [process.args[:2] for process in started] == [["/bin/bash", str(wrapper)]]


def test_clpctl_not_found_names_cloudpanel_clpctl(clpctl_client, tmp_path):
    with pytest.raises(CloudPanelError) as caught:
        clpctl_client(clpctl=str(tmp_path / "nowhere" / "clpctl")).create_static_site("example.com")

    assert str(caught.value) == (f"clpctl not found ({tmp_path / 'nowhere' / 'clpctl'}): is this a CloudPanel "
                                 "server? Set CLOUDPANEL_CLPCTL to its path")


def test_clpctl_not_executable_says_it_cannot_run_it(clpctl_client, tmp_path):
    clpctl = tmp_path / "clpctl"
    clpctl.write_text("#!/bin/bash\nexit 0\n")
    clpctl.chmod(stat.S_IRUSR)
    if os.access(clpctl, os.X_OK):
        pytest.skip("this user may execute anything")

    with pytest.raises(CloudPanelError, match=r"^cannot run .*clpctl: Permission denied$"):
        clpctl_client(clpctl=str(clpctl)).create_static_site("example.com")


def test_create_static_site_password_is_32_letters_and_digits_masked_and_redacted(clpctl_client, fake_db, passwords,
                                                                                  caplog):
    caplog.set_level(logging.DEBUG)

    clpctl_client(clpctl=FAKE_CLPCTL, db_path=fake_db).create_static_site("example.com")

    password, = passwords
    assert len(password) == PASSWORD_LENGTH == 32
    assert set(password) <= set(string.ascii_letters + string.digits)
    # masked for the rest of the run: a service may still echo it in a later message
    assert secret_values.mask(f"pw={password}") == f"pw={MASK}"
    call, = clpctl_state.calls(fake_db)
    assert "--siteUserPassword=<redacted>" in call["argv"]
    assert password not in call["argv_json"]
    assert all(password not in record.getMessage() for record in caplog.records)


def test_create_static_site_clpctl_echoing_its_arguments_never_puts_password_in_error(clpctl_client, fake_db,
                                                                                      tmp_path, passwords, caplog):
    caplog.set_level(logging.DEBUG)
    clpctl = tmp_path / "clpctl"
    clpctl.write_text('#!/bin/bash\necho "Unexpected error while running: $*"\nexit 1\n')
    clpctl.chmod(0o755)

    with pytest.raises(CloudPanelError) as caught:
        clpctl_client(clpctl=str(clpctl), db_path=fake_db).create_static_site("example.com")

    password, = passwords
    assert str(caught.value) == ("clpctl site:add:static failed: Unexpected error while running: site:add:static "
                                 f"--domainName=example.com --siteUser={site_user_for('example.com')} "
                                 f"--siteUserPassword={MASK}")
    assert password not in str(caught.value)
    assert all(password not in record.getMessage() for record in caplog.records)


def test_two_created_sites_get_different_passwords(clpctl_client, fake_db, passwords):
    client = clpctl_client(clpctl=FAKE_CLPCTL, db_path=fake_db)
    client.create_static_site("one.example.com")
    client.create_static_site("two.example.com")

    assert len(passwords) == 2 and passwords[0] != passwords[1]


def test_clpctl_check_not_root_says_site_commands_need_root(clpctl_client, fake_db, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)

    with pytest.raises(CloudPanelError) as caught:
        clpctl_client(clpctl=FAKE_CLPCTL).check()

    assert str(caught.value) == ("CloudPanel 2.5.0 (fake) found, but this job runs as uid 1000, and clpctl's site "
                                 "and certificate commands exist only for root")


def test_clpctl_check_as_root_reports_the_version(clpctl_client, fake_db, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 0)

    assert clpctl_client(clpctl=FAKE_CLPCTL).check() == "CloudPanel 2.5.0 (fake), run as root"


# --- the served certificate before any order (what both transports share) ------------------------------------

def test_provision_ssl_valid_served_certificate_orders_none(clpctl_client, fake_db, served,
                                                                             caplog):
    caplog.set_level(logging.INFO)
    clpctl_state.add_site(fake_db, "example.com", "someone")
    served.answers = [VALID]

    clpctl_client(db_path=fake_db).provision_ssl("example.com")

    assert served.looks == ["example.com"]
    assert clpctl_state.calls(fake_db) == [] and clpctl_state.certificate_requests(fake_db) == []
    assert "SSL: a valid certificate is served already (80 days left); not requesting another" in caplog.messages


def test_provision_ssl_expiring_served_certificate_orders_one_saying_why(clpctl_client, fake_db, served, caplog):
    caplog.set_level(logging.INFO)
    clpctl_state.add_site(fake_db, "example.com", "someone")
    served.answers = [EXPIRING]

    clpctl_client(db_path=fake_db).provision_ssl("example.com")

    assert served.looks == ["example.com", "example.com"]
    assert len(clpctl_state.certificate_requests(fake_db, "example.com")) == 1
    assert ("SSL: requesting a Let's Encrypt certificate (the certificate served expires in 5 days)"
            in caplog.messages)


def test_provision_ssl_new_site_orders_without_looking_at_what_is_served(clpctl_client, fake_db, served, caplog):
    caplog.set_level(logging.INFO)
    clpctl_state.add_site(fake_db, "example.com", "someone")
    served.answers = [VALID]  # what a look would find: a site made a moment ago serves another name's certificate

    clpctl_client(db_path=fake_db).provision_ssl("example.com", new_site=True)

    assert served.looks == ["example.com"]  # only after the order, to see it served
    assert len(clpctl_state.certificate_requests(fake_db, "example.com")) == 1
    assert "SSL: requesting a Let's Encrypt certificate (the site was just created)" in caplog.messages


# --- the gateway over the wire, against the FakeGateway stand-in -------------------------------------------------

@pytest.fixture
def fake_gateway(tmp_path):
    with FakeGateway(tmp_path / "gateway.sq3", api_key=GATEWAY_TOKEN) as server:
        yield server



def test_gateway_check_against_fake_gateway_reports_key_accepted(fake_gateway, session, retry, served):
    answer = GatewayClient(fake_gateway.url, GATEWAY_TOKEN, session, retry=retry, served_certificate=served).check()

    assert answer == f"gateway {fake_gateway.url} reachable, key accepted; its site listing shows 0 sites"
    assert [(r["method"], r["path"]) for r in fake_gateway.requests_log] == [("GET", "/health"),
                                                                             ("GET", "/api/user/list"),
                                                                             ("GET", "/lists/api/sites")]
    assert fake_gateway.requests_log[1]["headers"]["x-api-key"] == GATEWAY_TOKEN


def test_gateway_check_against_fake_gateway_wrong_key_names_cloudpanel_api_token(fake_gateway, session, retry,
                                                                                 served):
    client = GatewayClient(fake_gateway.url, "wrong-key-0000", session, retry=retry, served_certificate=served)

    with pytest.raises(CloudPanelSetupError) as caught:
        client.check()

    assert str(caught.value) == ("gateway: list users (read-only): the gateway refused CLOUDPANEL_API_TOKEN (HTTP "
                                 "401): set it to the gateway's API key")


def test_gateway_create_and_certificate_against_fake_gateway_leave_one_site_and_one_request(fake_gateway, session,
                                                                                            retry, served):
    client = GatewayClient(fake_gateway.url, GATEWAY_TOKEN, session, retry=retry, served_certificate=served)

    first = client.create_static_site("example.com")
    second = client.create_static_site("example.com")
    client.provision_ssl("example.com", new_site=first.created)

    doc_root = f"/home/{site_user_for('example.com')}/htdocs/example.com"
    assert (first, second) == (StaticSite(doc_root, created=True), StaticSite(doc_root, created=False))
    assert [row["domain_name"] for row in clpctl_state.read_sites(fake_gateway.db_path)] == ["example.com"]
    assert len(clpctl_state.certificate_requests(fake_gateway.db_path, "example.com")) == 1


def test_clpctl_killed_by_a_signal_is_transient_and_not_sent_again(clpctl_client, fake_db, tmp_path):
    """A Ctrl-C can reach clpctl in the moment it starts: that says nothing about the site."""
    killed = tmp_path / "killed-clpctl"
    killed.write_text("#!/bin/sh\nkill -INT $$\n")
    killed.chmod(0o755)

    with pytest.raises(CloudPanelError) as caught:
        clpctl_client(clpctl=str(killed), db_path=fake_db).create_static_site("example.com")

    assert str(caught.value) == "clpctl site:add:static was stopped by SIGINT before it finished"
    assert caught.value.transient and caught.value.may_have_acted
