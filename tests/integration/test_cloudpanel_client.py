"""What only one CloudPanel transport has, over real processes and sockets: the local clpctl's own failures against
the fake clpctl executable (its control-file behaviours, a hang stopped with its children, a missing or unrunnable
executable, an unreadable database, a Ctrl-C), and the gateway's key check over a real socket against the
FakeGateway stand-in. What both transports do alike: tests/integration/test_cloudpanel_transports.py; the derived
site user and the gateway against `responses`: tests/unit/test_cloudpanel_client.py."""

import logging
import os
import stat
import sys
import threading
import time
from pathlib import Path

import pytest

from hosting_automator.masking import MASK
from hosting_automator.errors import CertificateError, CloudPanelError, CloudPanelSetupError, ServiceError
from hosting_automator.services import cloudpanel_client
from hosting_automator.services.cloudpanel_client import ClpctlClient, GatewayClient, StaticSite, site_user_for
from tests.standins import clpctl_state
from tests.standins.__main__ import FAKE_CLPCTL as standin_clpctl
from tests.standins.gateway import FakeGateway
from tests.support.cloudpanel import GATEWAY_TOKEN

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


def test_clpctl_check_not_root_says_site_commands_need_root(clpctl_client, fake_db, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)

    with pytest.raises(CloudPanelError) as caught:
        clpctl_client(clpctl=FAKE_CLPCTL).check()

    assert str(caught.value) == ("CloudPanel 2.5.0 (fake) found, but this job runs as uid 1000, and clpctl's site "
                                 "and certificate commands exist only for root")


def test_clpctl_check_as_root_reports_the_version(clpctl_client, fake_db, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 0)

    assert clpctl_client(clpctl=FAKE_CLPCTL).check() == "CloudPanel 2.5.0 (fake), run as root"


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


def test_clpctl_killed_by_a_signal_is_transient_and_not_sent_again(clpctl_client, fake_db, tmp_path):
    """A Ctrl-C can reach clpctl in the moment it starts: that says nothing about the site."""
    killed = tmp_path / "killed-clpctl"
    killed.write_text("#!/bin/sh\nkill -INT $$\n")
    killed.chmod(0o755)

    with pytest.raises(CloudPanelError) as caught:
        clpctl_client(clpctl=str(killed), db_path=fake_db).create_static_site("example.com")

    assert str(caught.value) == "clpctl site:add:static was stopped by SIGINT before it finished"
    assert caught.value.transient and caught.value.may_have_acted
