"""The whole command (`python -m hosting_automator.main`) against the real Matomo and the real gateway, with the
Supabase table and CloudPanel's HTTPS endpoint stood in for: the rows, the exit code and the log, as an operator
reads them."""

import secrets
import time
from pathlib import Path

import idna
import pytest
import requests

from hosting_automator.services.cloudpanel_client import document_root, site_user_for
from tests.conformance.conftest import matomo_api
from tests.standins import clpctl_state, start_all
from tests.support.harness import add_pending, run_job


@pytest.fixture
def real_standins(tmp_path, real):
    """Supabase and the HTTPS endpoint stood in for; Matomo and CloudPanel (the gateway) the real ones. The HTTPS
    endpoint serves what the fake clpctl behind the real gateway installed."""
    standins = start_all(tmp_path / "standins")
    standins.db_path = standins.tls.db_path = real.clpctl_db  # the secret scan reads its passwords there too
    for name in ("CLOUDPANEL_CLPCTL", "CLOUDPANEL_DB_PATH"):
        standins.env.pop(name)
    standins.env.update(MATOMO_API_URL=real.matomo_url, MATOMO_API_TOKEN=real.matomo_token,
                        CLOUDPANEL_API_URL=real.gateway_url, CLOUDPANEL_API_TOKEN=real.gateway_token)
    yield standins
    standins.stop()


def outcome(standins, row_id):
    row = standins.postgrest.get(row_id)
    return row["status_hosting"], row["doc_root"], row["matomo_id"], row["error_message"]


def live_root(domain):
    return document_root(site_user_for(domain), domain)


def matomo_urls(real, site_id):
    return matomo_api(real, "SitesManager.getSiteUrlsFromId", idSite=site_id).json()


def adds_of(real, domain):
    return [call for call in clpctl_state.calls(real.clpctl_db)
            if call["argv"][0] == "site:add:static" and f"--domainName={domain}" in call["argv"]]


def test_pending_rows_go_live_with_analytics_and_a_rerun_duplicates_nothing(real, real_standins, unique):
    standins = real_standins
    domains = [f"{unique}.example.test", f"www.{unique}.example.test",
               idna.encode(f"bücher-{unique}.example.test", uts46=True).decode()]
    ids = add_pending(standins, *domains)

    first = run_job(standins)

    assert first.returncode == 0, first.log
    rows = [outcome(standins, row_id) for row_id in ids]
    assert [row[:2] for row in rows] == [("active", live_root(domain)) for domain in domains]
    assert rows[0][2] == rows[1][2]  # a name and its www. twin share one Matomo site
    assert matomo_urls(real, rows[0][2]) == [f"https://{domains[0]}", f"https://www.{domains[0]}"]
    assert matomo_urls(real, rows[2][2])[0] == f"https://{domains[2]}"
    assert [len(clpctl_state.certificate_requests(real.clpctl_db, domain)) for domain in domains] == [1, 1, 1]

    # a run killed after every service acted, before it wrote the rows: the rows are pending again
    for row_id in ids:
        standins.postgrest.update_row(row_id, status_hosting="pending", doc_root=None, matomo_id=None)
    second = run_job(standins)

    assert second.returncode == 0, second.log
    assert [outcome(standins, row_id) for row_id in ids] == rows
    assert [len(adds_of(real, domain)) for domain in domains] == [1, 1, 1]
    assert [len(clpctl_state.certificate_requests(real.clpctl_db, domain)) for domain in domains] == [1, 1, 1]


def check_lines(result):
    return {line.split(":", 1)[0]: line for line in result.stdout.splitlines() if line[:4] in ("PASS", "FAIL")}


def test_check_passes_against_the_real_services(real, real_standins):
    result = run_job(real_standins, "--check")

    lines = check_lines(result)
    assert result.returncode == 0, result.stdout
    assert lines["PASS  Matomo"] == f"PASS  Matomo: Matomo 5.0.2 at {real.matomo_url}/index.php, token of a super user"
    assert lines["PASS  CloudPanel"].startswith(
        f"PASS  CloudPanel: gateway {real.gateway_url} reachable, key accepted; its site listing shows ")


def test_a_timezone_matomo_refuses_fails_check_and_a_run_says_it_once(real, real_standins, unique):
    standins = real_standins
    overrides = {"MATOMO_SITE_TIMEZONE": "US/Eastern", "MATOMO_BACKFILL_PER_RUN": "0"}
    ids = add_pending(standins, *(f"{unique}-{n}.example.test" for n in range(3)))

    check = run_job(standins, "--check", overrides=overrides)
    run = run_job(standins, overrides=overrides)

    assert check.returncode == 1
    assert "MATOMO_SITE_TIMEZONE=US/Eastern is not a value Matomo accepts" in check_lines(check)["FAIL  Matomo"]
    assert run.returncode == 0, run.log  # a Matomo failure is a warning: the sites still go live
    assert [outcome(standins, row_id)[::2] for row_id in ids] == [("active", None)] * 3
    assert run.log.count("Matomo refuses MATOMO_SITE_TIMEZONE=US/Eastern:") == 1
    assert run.log.count('The timezone "US/Eastern" is not valid') == 1


def test_a_certificate_the_gateway_reports_without_its_success_line_goes_live(real, real_standins, clpctl_control,
                                                                              unique):
    standins = real_standins
    domain = f"{unique}.example.test"
    clpctl_control({domain: {"lets-encrypt:install:certificate":
                             f"say:Certificate installation was successful.\nDomain: {domain}"}})
    ids = add_pending(standins, domain)

    result = run_job(standins)

    assert result.returncode == 0, result.log
    assert outcome(standins, ids[0])[:2] == ("active", live_root(domain))


def test_a_site_made_by_hand_goes_live_with_its_true_doc_root(real, real_standins, unique):
    standins = real_standins
    domain = f"{unique}.example.test"
    clpctl_state.add_site(real.clpctl_db, domain, f"{unique}-hand")
    Path(real.clpctl_home, f"{unique}-hand", "htdocs", domain).mkdir(parents=True)
    ids = add_pending(standins, domain)

    result = run_job(standins)

    assert result.returncode == 0, result.log
    assert outcome(standins, ids[0])[:2] == ("active", f"/home/{unique}-hand/htdocs/{domain}")
    assert adds_of(real, domain) == []


def test_a_429_on_the_certificate_call_leaves_every_row_for_the_next_run_without_a_traceback(real, real_standins,
                                                                                          unique):
    standins = real_standins
    domains = [f"{unique}-a.example.test", f"{unique}-b.example.test"]
    for domain in domains:  # made already: the limited gateway is asked for nothing but the certificates
        requests.post(real.gateway_url + "/api/site/add/static", headers={"X-API-Key": real.gateway_token},
                      json={"domainName": domain, "siteUser": site_user_for(domain),
                            "siteUserPassword": secrets.token_hex(16)}, timeout=30).raise_for_status()
    while requests.get(real.limited_gateway_url + "/api/user/list", timeout=30,
                       headers={"X-API-Key": real.limited_gateway_token}).status_code != 429:
        pass  # its window allows 3 requests: spend them
    ids = add_pending(standins, *domains)

    result = run_job(standins, overrides={"CLOUDPANEL_API_URL": real.limited_gateway_url,
                                          "CLOUDPANEL_API_TOKEN": real.limited_gateway_token})

    assert result.returncode == 1
    assert [outcome(standins, row_id)[0] for row_id in ids] == ["pending", "pending"]
    assert "Traceback" not in result.log + result.stderr and "internal error" not in result.log
    assert "not asked: CloudPanel asked this run to wait" in result.log


def test_a_clpctl_the_gateway_kills_at_120_s_leaves_the_row_pending_and_the_next_run_converges(real, real_standins,
                                                                                              clpctl_control,
                                                                                              unique):
    """Slow (the gateway's 120 s limit cannot be set): the gateway answers HTTP 500 "Command failed", and through
    Debian's /bin/sh the kill ends only the shell: clpctl finishes the site moments later."""
    standins = real_standins
    domain = f"{unique}.example.test"
    clpctl_control({domain: {"site:add:static": "slow:123"}})
    ids = add_pending(standins, domain)

    first = run_job(standins, timeout=200)
    status_after_the_kill = outcome(standins, ids[0])
    deadline = time.monotonic() + 60
    while not clpctl_state.site(real.clpctl_db, domain) and time.monotonic() < deadline:
        time.sleep(0.2)  # clpctl goes on after the gateway has answered
    clpctl_control({})
    second = run_job(standins)

    assert first.returncode == 1
    assert status_after_the_kill == ("pending", None, None, None)
    assert "clpctl printed nothing" in first.log and "the next run" in first.log
    assert second.returncode == 0, second.log
    assert outcome(standins, ids[0])[:2] == ("active", live_root(domain))
    assert len(adds_of(real, domain)) == 1
