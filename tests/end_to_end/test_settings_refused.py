"""Settings the command refuses before it reads or locks anything (exit 2, one message, no traceback): counts and
waits beyond what can help, a .env that cannot be read, a timeout that would overflow, host names and ports that
cannot be used."""

import os
import subprocess
from pathlib import Path

import pytest

from tests.support.harness import add_pending, no_traceback, run_job
from tests.support.settings import LONG_LABEL
from tests.support.standin_views import row


@pytest.mark.parametrize("arguments, overrides, named", [
    (["--workers", "1000000000000"], {}, "argument --workers: must be a whole number from 1 to 64"),
    ([], {"WORKERS": "1000000000000"}, "WORKERS must be a whole number from 1 to 64"),
    (["--workers", "65"], {}, "argument --workers: must be a whole number from 1 to 64"),
    ([], {"CLOUDPANEL_CONCURRENCY": "1000000000000"}, "CLOUDPANEL_CONCURRENCY must be a whole number from 1 to 64"),
    ([], {"HTTP_TIMEOUT": "601"}, "HTTP_TIMEOUT must be a positive number of seconds up to 600"),
    ([], {"MAX_SITES_PER_RUN": "10001"}, "MAX_SITES_PER_RUN must be a whole number from 0 to 10000"),
], ids=["--workers-10^12", "WORKERS-10^12", "--workers-65", "CLOUDPANEL_CONCURRENCY-10^12", "HTTP_TIMEOUT-601",
        "MAX_SITES_PER_RUN-10001"])
def test_a_count_or_wait_beyond_what_can_help_is_refused_before_anything_happens(standins, arguments, overrides,
                                                                                 named):
    ids = add_pending(standins, "one.example.test", "two.example.test")
    overrides = {**overrides, "MAX_SITES_PER_RUN": overrides.get("MAX_SITES_PER_RUN", "0")}

    result = run_job(standins, *arguments, overrides=overrides, timeout=30)

    assert result.returncode == 2
    assert named in result.stderr
    assert standins.postgrest.request_count == 0
    assert [row(standins, i)["status_hosting"] for i in ids] == ["pending", "pending"]
    assert not Path(standins.env["LOCK_FILE"]).exists()
    no_traceback(result)


def unreadable(path):
    """Make `path` unreadable for the job; the command prefix the job must then run under. Root reads any file, so
    as root the file goes to another user and the job runs in a user namespace, where root has no power over it."""
    path.chmod(0)
    if not os.access(path, os.R_OK):
        return ()
    os.chown(path, 65534, 65534)
    prefix = ("unshare", "--user", "--map-root-user")
    probe = subprocess.run([*prefix, "cat", str(path)], capture_output=True, text=True)
    if "Permission denied" not in probe.stderr:
        pytest.skip("no way to make a file unreadable for root here (user namespaces unavailable)")
    return prefix


@pytest.mark.parametrize("kind", ["permission denied", "not UTF-8"])
def test_a_dot_env_that_cannot_be_read_is_one_message_and_exit_2(standins, kind):
    env_file = Path(standins.dir) / ".env"
    env_file.write_bytes(b"MATOMO_API_TOKEN=tok\xff\xfesecret\n")
    prefix, reason = (), "it is not UTF-8 text"
    if kind == "permission denied":
        env_file.write_text("MATOMO_API_TOKEN=tok-in-dot-env\n")
        prefix, reason = unreadable(env_file), "Permission denied"

    result = run_job(standins, prefix=prefix)

    assert result.returncode == 2
    assert f"  - .env cannot be read: {reason}" in result.stderr
    no_traceback(result)


@pytest.mark.parametrize("value", ["1e10"])
def test_an_http_timeout_that_would_overflow_is_refused(standins, value):
    add_pending(standins, "one.example.test")

    result = run_job(standins, overrides={"HTTP_TIMEOUT": value}, timeout=30)

    assert result.returncode == 2
    assert f"HTTP_TIMEOUT must be a positive number of seconds up to 600 (e.g. 30 or 0.5), got '{value}'" \
        in result.stderr
    no_traceback(result)


@pytest.mark.parametrize("name", ["SUPABASE_URL", "MATOMO_API_URL", "CLOUDPANEL_API_URL", "HEALTHCHECK_URL",
                                  "CLOUDPANEL_HTTPS_ADDRESS"])
def test_a_host_name_with_a_64_character_label_is_refused_naming_the_setting(gateway_standins, name):
    standins = gateway_standins
    add_pending(standins, "one.example.test")
    value = f"{LONG_LABEL}.example:443" if name == "CLOUDPANEL_HTTPS_ADDRESS" else f"http://{LONG_LABEL}.example/"

    result = run_job(standins, overrides={name: value}, timeout=60)

    assert result.returncode == 2
    assert f"  - {name} has a host name that cannot be used (label 'aaaaaaaaaaaaaaaaaaaa…' is 64 characters long" \
        in result.stderr
    assert standins.postgrest.request_count == 0
    no_traceback(result)


def test_supabase_port_out_of_range_is_refused(standins):
    result = run_job(standins, overrides={"SUPABASE_URL": "http://127.0.0.1:99999"}, timeout=60)
    assert result.returncode == 2
    assert "SUPABASE_URL has a port that cannot be used" in result.stderr
    no_traceback(result)
