"""--check against hostile ground: it creates no file, fails when this machine cannot verify a live site's
certificate, and names the setting or shows the gateway's own details when the gateway is not what it should be."""

from tests.standins import Fault
from tests.support.harness import add_pending, run_job


def test_check_creates_neither_the_log_file_nor_the_lock_file(standins, tmp_path):
    directory = tmp_path / "job"
    directory.mkdir()

    result = run_job(standins, "--check", overrides={"LOG_FILE": directory / "run.log",
                                                     "LOCK_FILE": directory / "run.lock"})

    assert result.returncode == 0, result.stdout
    assert list(directory.iterdir()) == []


def test_check_fails_when_this_machine_cannot_verify_the_certificate_a_live_site_serves(standins, tmp_path):
    import trustme

    add_pending(standins, "live.example.test")
    assert run_job(standins).returncode == 0
    other_ca = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca))

    result = run_job(standins, "--check", overrides={"SSL_CERT_FILE": other_ca})

    assert result.returncode == 1
    failed = [line for line in result.stdout.splitlines() if line.startswith("FAIL  HTTPS")]
    assert len(failed) == 1 and "live.example.test" in failed[0] and "SSL_CERT_FILE" in failed[0]


def test_check_names_the_setting_when_the_gateway_url_has_no_routes(gateway_standins):
    standins = gateway_standins

    result = run_job(standins, "--check", overrides={"CLOUDPANEL_API_URL": standins.gateway.url + "/v2"})

    assert result.returncode == 1
    failed = [line for line in result.stdout.splitlines() if line.startswith("FAIL  CloudPanel")]
    assert len(failed) == 1 and "set CLOUDPANEL_API_URL" in failed[0], failed


def test_check_shows_the_gateways_own_details_when_its_read_only_probe_fails(gateway_standins):
    standins = gateway_standins
    standins.gateway.fault = lambda request: (
        Fault.status(500, {"success": False, "error": "Failed to list users",
                           "details": "sudo: clpctl: command not found"})
        if request["path"] == "/api/user/list" else None)

    result = run_job(standins, "--check")

    assert result.returncode == 1
    assert "FAIL  CloudPanel: gateway answered HTTP 500 to a read-only request: sudo: clpctl: command not found" \
        in result.stdout
