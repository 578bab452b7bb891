"""The CloudPanel client: the derived site user, the local clpctl transport against the fake clpctl executable
(its SQLite state, its control-file behaviours), and the clpctl HTTP gateway transport (against recorded answers
served by a local HTTP server, pytest-httpserver, and against the FakeGateway stand-in). Real sockets, so the
gateway tests hold for whichever HTTP client core/http.py is built on."""

import hashlib
import json
import logging
import os
import re
import stat
import sys
import threading
import time
from pathlib import Path

import pytest
from werkzeug import Response

from hosting_automator.core.http import new_session
from hosting_automator.core.logging_setup import MASK, secret_values
from hosting_automator.errors import CertificateError, CloudPanelError, ServiceError
from hosting_automator.services import cloudpanel_client
from hosting_automator.services.cloudpanel_client import (CERTIFICATE_COMMAND_TIMEOUT, ClpctlClient, GatewayClient,
                                                          StaticSite, document_root, site_user_for)
from tests.sockets import closed_port
from tests.standins import clpctl_state
from tests.standins.gateway import FakeGateway

FAKE_CLPCTL = str(Path(__file__).parent / "standins" / "fake_clpctl.py")
SITE_USER_RULE = re.compile(r"^[a-z][-a-z0-9_]+$")
GATEWAY_TOKEN = "gw-token-7f3a9c1e5b2d8f4a"


# --- the site user and the document root -----------------------------------------------------------------------

def test_site_user_for_example_com_is_readable_prefix_plus_sha256_digits():
    digest = hashlib.sha256(b"example.com").hexdigest()[:12]
    assert site_user_for("example.com") == f"example-com-{digest}"


@pytest.mark.parametrize("domain", [
    "a.io", "1password.com", "123.example.org", "www.example.com", "xn--r8jz45g.jp", "xn--bcher-kva.example",
    "my-very-long-subdomain-name.with-many-labels.example.co.uk", "a" * 63 + "." + "b" * 60 + ".com",
    "-.--.com", "0-0.9",
])
def test_site_user_for_any_domain_matches_cloudpanel_rule(domain):
    user = site_user_for(domain)
    assert SITE_USER_RULE.match(user), user
    assert 3 <= len(user) <= 32
    assert site_user_for(domain) == user


def test_site_user_for_domain_starting_with_a_digit_starts_with_a_letter():
    assert site_user_for("1password.com").startswith("s1password-com-")


def test_site_user_for_20000_generated_domains_gives_20000_valid_distinct_users():
    domains = set()
    for n in range(5000):
        domains.add(f"site{n}.example.com")
        domains.add(f"{n}shop.example.net")  # starts with a digit
        domains.add(f"xn--{n:x}bcher-kva.example")  # IDNA
        domains.add(f"an-extremely-long-shared-prefix-that-goes-on.{n}.example.org")  # same first 19 characters
    assert len(domains) == 20000
    users = {site_user_for(domain) for domain in domains}
    assert len(users) == 20000
    assert all(SITE_USER_RULE.match(user) and 3 <= len(user) <= 32 for user in users)


def test_document_root_is_home_user_htdocs_domain():
    assert document_root("example-com-0123456789ab", "example.com") == (
        "/home/example-com-0123456789ab/htdocs/example.com")


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
def passwords(monkeypatch):
    """Every password the client generates, by wrapping the real generator."""
    made = []
    real = cloudpanel_client.new_password

    def recording():
        made.append(real())
        return made[-1]

    monkeypatch.setattr(cloudpanel_client, "new_password", recording)
    return made


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


def test_create_static_site_new_domain_adds_site_with_derived_user(fake_db, caplog):
    caplog.set_level(logging.INFO)
    client = ClpctlClient(clpctl=FAKE_CLPCTL, db_path=fake_db)

    site = client.create_static_site("example.com")

    user = site_user_for("example.com")
    assert site == StaticSite(f"/home/{user}/htdocs/example.com", created=True)
    row = clpctl_state.site(fake_db, "example.com")
    assert row["user"] == user and row["type"] == "static"
    assert f"CloudPanel site created (site user {user})" in caplog.messages


def test_create_static_site_second_time_reads_db_and_adds_nothing(fake_db, caplog):
    caplog.set_level(logging.INFO)
    client = ClpctlClient(clpctl=FAKE_CLPCTL, db_path=fake_db)
    first = client.create_static_site("example.com")

    second = client.create_static_site("example.com")

    assert second == first._replace(created=False)
    assert len(clpctl_state.read_sites(fake_db)) == 1
    assert [call["argv"][0] for call in clpctl_state.calls(fake_db)] == ["site:add:static"]
    assert f"CloudPanel site exists already (site user {site_user_for('example.com')})" in caplog.messages


def test_create_static_site_existing_with_other_user_returns_that_users_doc_root(fake_db):
    clpctl_state.add_site(fake_db, "example.com", "handmade")

    site = ClpctlClient(clpctl=FAKE_CLPCTL, db_path=fake_db).create_static_site("example.com")

    assert site == StaticSite("/home/handmade/htdocs/example.com", created=False)
    assert clpctl_state.calls(fake_db) == []


def test_create_static_site_db_absent_already_exists_assumes_derived_doc_root_and_logs_it(fake_db, tmp_path,
                                                                                          caplog):
    caplog.set_level(logging.INFO)
    user = site_user_for("example.com")
    clpctl_state.add_site(fake_db, "example.com", user)
    client = ClpctlClient(clpctl=FAKE_CLPCTL, db_path=str(tmp_path / "no-such-db.sq3"))

    site = client.create_static_site("example.com")

    assert site == StaticSite(f"/home/{user}/htdocs/example.com", created=False)
    assert len(clpctl_state.read_sites(fake_db)) == 1
    assert [call["exit_code"] for call in clpctl_state.calls(fake_db)] == [1]  # clpctl said "already exists"
    assumed = [record for record in caplog.records if "is assumed" in record.getMessage()]
    assert len(assumed) == 1 and assumed[0].levelno == logging.INFO
    assert f"the document root of the derived site user {user} is assumed" in assumed[0].getMessage()


def test_create_static_site_derived_user_taken_by_other_site_names_the_stale_user(fake_db):
    user = site_user_for("example.com")
    clpctl_state.add_site(fake_db, "other.example", user)

    with pytest.raises(CloudPanelError) as caught:
        ClpctlClient(clpctl=FAKE_CLPCTL, db_path=fake_db).create_static_site("example.com")

    assert str(caught.value).startswith(f"site user {user} exists already but not for example.com")


def test_create_static_site_fail_behaviour_puts_clpctl_message_in_error(fake_db, control):
    control("example.com", "site:add:static", "fail:domainName: This value is not valid.")

    with pytest.raises(CloudPanelError) as caught:
        ClpctlClient(clpctl=FAKE_CLPCTL, db_path=fake_db).create_static_site("example.com")

    assert str(caught.value) == "clpctl site:add:static failed: domainName: This value is not valid."
    assert clpctl_state.read_sites(fake_db) == []


def test_create_static_site_silent_exit_1_says_it_printed_nothing(fake_db, control):
    control("example.com", "site:add:static", "silent-exit1")

    with pytest.raises(CloudPanelError) as caught:
        ClpctlClient(clpctl=FAKE_CLPCTL, db_path=fake_db).create_static_site("example.com")

    assert str(caught.value) == "clpctl site:add:static failed: it printed nothing and exited with code 1"


def test_create_static_site_error_with_exit_0_counts_as_failure(fake_db, control):
    control("*", "site:add:static", "error-exit0:An error occurred while creating the site user.")

    with pytest.raises(CloudPanelError) as caught:
        ClpctlClient(clpctl=FAKE_CLPCTL, db_path=fake_db).create_static_site("example.com")

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
def test_clpctl_hang_is_stopped_at_timeout_with_its_children(fake_db, control, started, monkeypatch, command,
                                                             timeout_name, error):
    monkeypatch.setattr(cloudpanel_client, timeout_name, 3)  # long enough for the fake to start on a busy machine
    clpctl_state.add_site(fake_db, "example.org", "someone")  # the certificate needs an existing site
    control("*", command, "hang")
    client = ClpctlClient(clpctl=FAKE_CLPCTL, db_path=str(Path(fake_db).with_name("absent.sq3")))
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


def test_provision_ssl_success_records_one_certificate_request(fake_db, caplog):
    caplog.set_level(logging.INFO)
    client = ClpctlClient(clpctl=FAKE_CLPCTL, db_path=fake_db)
    client.create_static_site("example.com")

    client.provision_ssl("example.com")

    assert [row["domain_name"] for row in clpctl_state.certificate_requests(fake_db)] == ["example.com"]
    assert clpctl_state.calls(fake_db)[-1]["argv"] == ["lets-encrypt:install:certificate",
                                                       "--domainName=example.com"]
    assert "Let's Encrypt certificate installed" in caplog.messages


def test_provision_ssl_domain_not_validated_raises_certificate_error_with_acme_detail(fake_db, control):
    clpctl_state.add_site(fake_db, "example.com", "someone")
    message = ("example.com: Domain could not be validated, error message: error type: "
               "urn:ietf:params:acme:error:connection, error detail: 203.0.113.9: Fetching "
               "http://example.com/.well-known/acme-challenge/x: Connection refused")
    control("example.com", "lets-encrypt:install:certificate", f"fail:{message}")

    with pytest.raises(CertificateError) as caught:
        ClpctlClient(clpctl=FAKE_CLPCTL, db_path=fake_db).provision_ssl("example.com")

    assert str(caught.value) == f"clpctl lets-encrypt:install:certificate failed: {message}"
    assert clpctl_state.certificate_requests(fake_db) == []


def test_provision_ssl_for_missing_site_raises_certificate_error(fake_db):
    with pytest.raises(CertificateError, match=r'failed: Site "nosite.example" does not exist\.$'):
        ClpctlClient(clpctl=FAKE_CLPCTL, db_path=fake_db).provision_ssl("nosite.example")


def test_clpctl_without_shebang_exec_format_error_falls_back_to_bin_bash(fake_db, tmp_path, started):
    wrapper = tmp_path / "clpctl"
    wrapper.write_text("# no shebang, like /usr/bin/clpctl before v2.5.0\n"
                       f'exec "{sys.executable}" "{FAKE_CLPCTL}" "$@"\n')
    wrapper.chmod(0o755)

    site = ClpctlClient(clpctl=str(wrapper), db_path=fake_db).create_static_site("example.com")

    assert site == StaticSite(f"/home/{site_user_for('example.com')}/htdocs/example.com", created=True)
    assert clpctl_state.site(fake_db, "example.com") is not None
    assert [process.args[:2] for process in started] == [["/bin/bash", str(wrapper)]]


def test_clpctl_not_found_names_cloudpanel_clpctl(tmp_path):
    with pytest.raises(CloudPanelError) as caught:
        ClpctlClient(clpctl=str(tmp_path / "nowhere" / "clpctl")).create_static_site("example.com")

    assert str(caught.value) == (f"clpctl not found ({tmp_path / 'nowhere' / 'clpctl'}): is this a CloudPanel "
                                 "server? Set CLOUDPANEL_CLPCTL to its path")


def test_clpctl_not_executable_says_it_cannot_run_it(tmp_path):
    clpctl = tmp_path / "clpctl"
    clpctl.write_text("#!/bin/bash\nexit 0\n")
    clpctl.chmod(stat.S_IRUSR)
    if os.access(clpctl, os.X_OK):
        pytest.skip("this user may execute anything")

    with pytest.raises(CloudPanelError, match=r"^cannot run .*clpctl: Permission denied$"):
        ClpctlClient(clpctl=str(clpctl)).create_static_site("example.com")


def test_create_static_site_password_is_long_masked_and_stored_redacted(fake_db, passwords, caplog):
    caplog.set_level(logging.DEBUG)

    ClpctlClient(clpctl=FAKE_CLPCTL, db_path=fake_db).create_static_site("example.com")

    password, = passwords
    assert len(password) >= 24 and password.isalnum()
    # masked while clpctl runs (see the echo test below), then forgotten: masking must not grow with every site
    assert secret_values.mask(f"pw={password}") == f"pw={password}"
    call, = clpctl_state.calls(fake_db)
    assert "--siteUserPassword=<redacted>" in call["argv"]
    assert password not in call["argv_json"]
    assert all(password not in record.getMessage() for record in caplog.records)


def test_create_static_site_clpctl_echoing_its_arguments_never_puts_password_in_error(fake_db, tmp_path, passwords,
                                                                                      caplog):
    caplog.set_level(logging.DEBUG)
    clpctl = tmp_path / "clpctl"
    clpctl.write_text('#!/bin/bash\necho "Unexpected error while running: $*"\nexit 1\n')
    clpctl.chmod(0o755)

    with pytest.raises(CloudPanelError) as caught:
        ClpctlClient(clpctl=str(clpctl), db_path=fake_db).create_static_site("example.com")

    password, = passwords
    assert str(caught.value) == ("clpctl site:add:static failed: Unexpected error while running: site:add:static "
                                 f"--domainName=example.com --siteUser={site_user_for('example.com')} "
                                 f"--siteUserPassword={MASK}")
    assert password not in str(caught.value)
    assert all(password not in record.getMessage() for record in caplog.records)


def test_two_created_sites_get_different_passwords(fake_db, passwords):
    client = ClpctlClient(clpctl=FAKE_CLPCTL, db_path=fake_db)
    client.create_static_site("one.example.com")
    client.create_static_site("two.example.com")

    assert len(passwords) == 2 and passwords[0] != passwords[1]


def test_password_characters_come_evenly_from_random_bytes_skipping_the_uneven_top(monkeypatch):
    reads = iter([bytes([0, 61, 62, 247, 248, 255] * 6), bytes(range(32))])  # the first read gives only 24
    monkeypatch.setattr(cloudpanel_client.secrets, "token_bytes", lambda n: next(reads))

    password = cloudpanel_client.new_password()
    secret_values.discard(password)

    assert password == "a9a9" * 6 + "abcdefgh"  # 0 -> a, 61 -> 9, 62 -> a, 247 -> 9; 248 and 255 skipped


def test_clpctl_check_not_root_says_site_commands_need_root(fake_db, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)

    with pytest.raises(CloudPanelError) as caught:
        ClpctlClient(clpctl=FAKE_CLPCTL).check()

    assert str(caught.value) == ("CloudPanel 2.5.0 (fake) found, but this job runs as uid 1000, and clpctl's site "
                                 "and certificate commands exist only for root")


def test_clpctl_check_as_root_reports_the_version(fake_db, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 0)

    assert ClpctlClient(clpctl=FAKE_CLPCTL).check() == "CloudPanel 2.5.0 (fake), run as root"


# --- the clpctl HTTP gateway, against a local HTTP server -------------------------------------------------------

ADD_PATH = "/api/site/add/static"
CERT_PATH = "/api/letsencrypt/install-certificate"


@pytest.fixture
def gateway_session():
    with new_session(timeout=7) as session:
        yield session


@pytest.fixture
def gateway(httpserver, gateway_session):
    yield GatewayClient(httpserver.url_for("").rstrip("/"), GATEWAY_TOKEN, gateway_session)
    httpserver.check()


def only_request(httpserver):
    (request, _), = httpserver.log
    return request


def test_gateway_create_static_site_posts_exact_json_with_api_key(httpserver, gateway, passwords, socket_timeouts):
    httpserver.expect_request(ADD_PATH, method="POST").respond_with_json(
        {"success": True, "message": "Site example.com has been added.", "data": {}})

    site = gateway.create_static_site("example.com")

    user = site_user_for("example.com")
    assert site == StaticSite(f"/home/{user}/htdocs/example.com", created=True)
    request = only_request(httpserver)
    assert json.loads(request.get_data()) == {"domainName": "example.com", "siteUser": user,
                                              "siteUserPassword": passwords[0]}
    assert request.headers["X-API-Key"] == GATEWAY_TOKEN
    assert request.headers["Content-Type"] == "application/json"
    assert socket_timeouts[-1] == 7


def test_gateway_create_static_site_already_exists_assumes_derived_doc_root_and_logs(httpserver, gateway, caplog):
    caplog.set_level(logging.INFO)
    httpserver.expect_request(ADD_PATH, method="POST").respond_with_json(
        {"success": False, "error": "Failed to add static site", "details": "domainName: This value already exists.\n"},
        status=500)

    site = gateway.create_static_site("example.com")

    user = site_user_for("example.com")
    assert site == StaticSite(f"/home/{user}/htdocs/example.com", created=False)
    assert len(httpserver.log) == 1
    assert any(f"derived site user {user} is assumed" in message for message in caplog.messages)


@pytest.mark.parametrize("details, reason", [({"code": 1, "out": "boom"}, '{"code": 1, "out": "boom"}'), (5, "5")])
def test_gateway_details_of_another_shape_are_shown_not_a_crash(httpserver, gateway, details, reason):
    httpserver.expect_request(ADD_PATH, method="POST").respond_with_json(
        {"success": False, "error": "Failed to add static site", "details": details}, status=500)
    with pytest.raises(CloudPanelError) as caught:
        gateway.create_static_site("example.com")
    assert str(caught.value) == f"gateway: add the static site: HTTP 500: {reason}"


def test_gateway_create_static_site_500_without_details_says_failed_to_add(httpserver, gateway):
    httpserver.expect_request(ADD_PATH, method="POST").respond_with_json(
        {"success": False, "error": "Failed to add static site"}, status=500)

    with pytest.raises(CloudPanelError) as caught:
        gateway.create_static_site("example.com")

    assert str(caught.value) == "gateway: add the static site: HTTP 500: Failed to add static site"
    assert caught.value.transient is False


def test_gateway_create_static_site_400_validation_details_are_listed(httpserver, gateway):
    httpserver.expect_request(ADD_PATH, method="POST").respond_with_json(
        {"success": False, "error": "Validation Error", "details": [
            {"type": "field", "value": "x", "msg": "Invalid domain name", "path": "domainName", "location": "body"},
            {"type": "field", "msg": "siteUser must be 3-32 characters", "path": "siteUser", "location": "body"}]},
        status=400)

    with pytest.raises(CloudPanelError) as caught:
        gateway.create_static_site("example.com")

    assert str(caught.value) == ("gateway: add the static site: HTTP 400: Invalid domain name; "
                                 "siteUser must be 3-32 characters")


def test_gateway_create_static_site_400_joi_details_strings_are_listed(httpserver, gateway):
    """cloudpanel-api's validate() answers Joi messages as plain strings, without a "success" key."""
    httpserver.expect_request(ADD_PATH, method="POST").respond_with_json(
        {"error": "Validation Error", "details": ['"siteUserPassword" length must be at least 6 characters long']},
        status=400)

    with pytest.raises(CloudPanelError) as caught:
        gateway.create_static_site("example.com")

    assert str(caught.value) == ('gateway: add the static site: HTTP 400: "siteUserPassword" length must be at '
                                 "least 6 characters long")


def test_gateway_500_details_echoing_the_command_line_never_show_the_password(httpserver, gateway, caplog):
    """When clpctl prints nothing, cloudpanel-api answers its exec error: the whole command line, password too."""
    def echo_command(request):
        body = json.loads(request.get_data())
        command = ("Command failed: clpctl site:add:static --domainName={domainName} --siteUser={siteUser} "
                   "--siteUserPassword='{siteUserPassword}'\n").format(**body)
        return Response(json.dumps({"success": False, "error": "Failed to add static site", "details": command}),
                        500)

    httpserver.expect_request(ADD_PATH, method="POST").respond_with_handler(echo_command)

    with pytest.raises(CloudPanelError) as caught:
        gateway.create_static_site("example.com")

    password = json.loads(only_request(httpserver).get_data())["siteUserPassword"]
    assert str(caught.value) == ("gateway: add the static site: HTTP 500: Command failed: clpctl site:add:static "
                                 f"--domainName=example.com --siteUser={site_user_for('example.com')} "
                                 f"--siteUserPassword='{MASK}'")
    assert password not in str(caught.value)
    assert all(password not in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize("body, content_type", [
    (json.dumps({"success": False, "error": "Unauthorized"}), "application/json"),
    ("<html><body>401 Authorization Required</body></html>", "text/html"),
])
def test_gateway_create_static_site_401_names_cloudpanel_api_token(httpserver, gateway, body, content_type):
    httpserver.expect_request(ADD_PATH, method="POST").respond_with_data(body, 401, content_type=content_type)

    with pytest.raises(CloudPanelError) as caught:
        gateway.create_static_site("example.com")

    assert str(caught.value) == "gateway refused CLOUDPANEL_API_TOKEN (HTTP 401)"
    assert GATEWAY_TOKEN not in str(caught.value)


def test_gateway_create_static_site_429_is_transient_with_json_retry_after(httpserver, gateway):
    httpserver.expect_request(ADD_PATH, method="POST").respond_with_json(
        {"success": False, "error": "Too many requests", "retryAfter": 42}, status=429)

    with pytest.raises(ServiceError) as caught:
        gateway.create_static_site("example.com")

    assert isinstance(caught.value, CloudPanelError)
    assert caught.value.transient is True
    assert caught.value.retry_after == 42


def test_gateway_create_static_site_html_200_says_not_json(httpserver, gateway):
    httpserver.expect_request(ADD_PATH, method="POST").respond_with_data(
        "<html><head><title>Welcome</title></head><body>It works!</body></html>", content_type="text/html")

    with pytest.raises(CloudPanelError) as caught:
        gateway.create_static_site("example.com")

    assert str(caught.value) == ("gateway: add the static site: HTTP 200 with a body that is not JSON: "
                                 "'Welcome It works!'")


def test_gateway_create_static_site_connection_refused_is_transient(gateway_session):
    gateway = GatewayClient(f"http://127.0.0.1:{closed_port()}", GATEWAY_TOKEN, gateway_session)

    with pytest.raises(CloudPanelError) as caught:
        gateway.create_static_site("example.com")

    assert caught.value.transient is True
    assert str(caught.value).startswith("gateway: add the static site: cannot connect (")


def test_gateway_provision_ssl_waits_certificate_minutes_and_posts_domain(httpserver, gateway, socket_timeouts):
    httpserver.expect_request(CERT_PATH, method="POST").respond_with_json(
        {"success": True, "message": "Certificate installation was successful."})

    gateway.provision_ssl("example.com")

    request = only_request(httpserver)
    assert json.loads(request.get_data()) == {"domainName": "example.com"}
    assert request.headers["X-API-Key"] == GATEWAY_TOKEN
    assert socket_timeouts[-1] == CERTIFICATE_COMMAND_TIMEOUT >= 300


def test_gateway_provision_ssl_failure_raises_certificate_error_with_clpctl_output(httpserver, gateway):
    httpserver.expect_request(CERT_PATH, method="POST").respond_with_json({
        "success": False, "error": "Failed to install certificate",
        "details": "example.com: Domain could not be validated, error message: error type: "
                   "urn:ietf:params:acme:error:dns, error detail: DNS problem: NXDOMAIN"}, status=500)

    with pytest.raises(CertificateError) as caught:
        gateway.provision_ssl("example.com")

    assert str(caught.value) == ("gateway: install the certificate: HTTP 500: example.com: Domain could not be "
                                 "validated, error message: error type: urn:ietf:params:acme:error:dns, error "
                                 "detail: DNS problem: NXDOMAIN")


# --- the gateway over the wire, against the FakeGateway stand-in -------------------------------------------------

@pytest.fixture
def fake_gateway(tmp_path):
    with FakeGateway(tmp_path / "gateway.sq3", api_key=GATEWAY_TOKEN) as server:
        yield server


def test_gateway_check_against_fake_gateway_reports_key_accepted(fake_gateway):
    with new_session(timeout=5) as session:
        answer = GatewayClient(fake_gateway.url, GATEWAY_TOKEN, session).check()

    assert answer == f"gateway {fake_gateway.url} reachable, key accepted"
    assert [(r["method"], r["path"]) for r in fake_gateway.requests_log] == [("GET", "/health"),
                                                                             ("GET", "/api/user/list")]
    assert fake_gateway.requests_log[1]["headers"]["x-api-key"] == GATEWAY_TOKEN


def test_gateway_check_against_fake_gateway_wrong_key_names_cloudpanel_api_token(fake_gateway):
    with new_session(timeout=5) as session:
        with pytest.raises(CloudPanelError) as caught:
            GatewayClient(fake_gateway.url, "wrong-key-0000", session).check()

    assert str(caught.value) == ("the gateway refused CLOUDPANEL_API_TOKEN (HTTP 401); "
                                 "set it to the gateway's API key")


def test_gateway_create_and_certificate_against_fake_gateway_leave_one_site_and_one_request(fake_gateway):
    with new_session(timeout=5) as session:
        client = GatewayClient(fake_gateway.url, GATEWAY_TOKEN, session)
        first = client.create_static_site("example.com")
        second = client.create_static_site("example.com")
        client.provision_ssl("example.com")

    doc_root = f"/home/{site_user_for('example.com')}/htdocs/example.com"
    assert (first, second) == (StaticSite(doc_root, created=True), StaticSite(doc_root, created=False))
    assert [row["domain_name"] for row in clpctl_state.read_sites(fake_gateway.db_path)] == ["example.com"]
    assert len(clpctl_state.certificate_requests(fake_gateway.db_path, "example.com")) == 1


def test_gateway_error_field_echoing_the_password_is_masked(httpserver, gateway, passwords):
    def echo(request):
        password = json.loads(request.get_data())["siteUserPassword"]
        return Response(json.dumps({"success": False, "error": f"bad password {password}"}), 500)

    httpserver.expect_request(ADD_PATH, method="POST").respond_with_handler(echo)
    with pytest.raises(CloudPanelError) as caught:
        gateway.create_static_site("example.com")
    password, = passwords
    assert str(caught.value) == "gateway: add the static site: HTTP 500: bad password ***"
