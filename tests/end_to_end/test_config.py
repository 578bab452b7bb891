"""The command (`python -m hosting_automator.main`) run with settings that stop it, without stand-ins: every
problem named, exit 2, no traceback, no password shown, and the --json document all the same. The settings
themselves: tests/unit/test_config.py."""

import json
import os
import subprocess
import sys

import pytest

from tests.support.harness import job_pythonpath
from tests.support.settings import LONG_LABEL, REQUIRED


def run_command(directory, *arguments, **settings):
    """The command, run in `directory` with the machine's environment without REQUIRED's settings, then `settings`."""
    environ = {key: value for key, value in os.environ.items() if key not in REQUIRED}
    environ.update(settings, PYTHONPATH=job_pythonpath())
    return subprocess.run([sys.executable, "-m", "hosting_automator.main", *arguments], cwd=directory, env=environ,
                          capture_output=True, text=True, timeout=60)


def test_command_without_settings_prints_every_missing_one_and_exits_2(tmp_path):
    result = run_command(tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    for name in REQUIRED:
        assert f"{name} is not set" in result.stderr
    assert result.stderr.count("hosting-automator:") == 1


def test_command_with_an_unreadable_env_file_prints_the_problem_and_exits_2(tmp_path):
    (tmp_path / ".env").write_bytes(b"SUPABASE_SERVICE_KEY=\xff\xfe\n")
    result = run_command(tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert ".env cannot be read: it is not UTF-8 text" in result.stderr


def test_command_with_unusable_settings_names_every_one_and_exits_2_without_a_traceback(tmp_path):
    result = run_command(tmp_path, **dict(
        REQUIRED, SUPABASE_URL=f"https://svc:supa-pw-1@{LONG_LABEL}.supabase.co",
        CLOUDPANEL_HTTPS_ADDRESS=f"{LONG_LABEL}.example:443", HTTP_TIMEOUT="1e10", WORKERS="1000000000000",
        LOG_FILE=str(tmp_path / "run.log"), LOCK_FILE=str(tmp_path / "run.lock")))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.count("hosting-automator:") == 1
    for name in ("SUPABASE_URL has a host name", "CLOUDPANEL_HTTPS_ADDRESS has a host name", "HTTP_TIMEOUT must",
                 "WORKERS must"):
        assert f"  - {name}" in result.stderr
    assert "supa-pw-1" not in result.stderr
    assert not (tmp_path / "run.lock").exists()


def test_command_with_an_env_file_it_may_not_read_exits_2_naming_it(tmp_path):
    """An --env-file the job may not read (chmod 000) is one configuration message and exit 2, not a traceback.

    The tests may run as root, which reads a chmod 000 file anyway; there the file is replaced by a directory, which
    open() refuses with an OSError as well (Is a directory), so the same path through the code is taken."""
    env = tmp_path / "prod.env"
    env.write_text("SUPABASE_SERVICE_KEY=sb_secret_in_the_file\n")
    env.chmod(0)
    if os.access(env, os.R_OK):  # root
        env.unlink()
        env.mkdir()
        reason = "Is a directory"
    else:
        reason = "Permission denied"
    result = run_command(tmp_path, "--env-file", str(env))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert f"  - {env} cannot be read: {reason}\n" in result.stderr
    assert result.stderr.count("hosting-automator:") == 1


def test_json_option_writes_the_document_when_settings_stop_the_run(tmp_path):
    result = run_command(tmp_path, "--json", "--dry-run", MATOMO_API_TOKEN="tok-en-in-env",
                         SUPABASE_URL="https://svc:supa-pw-1@abcd.supabase.co/rest/v1")
    assert result.returncode == 2
    document = json.loads(result.stdout)
    assert document == {
        "summary": "Configuration problems:\n"
                   "  - SUPABASE_URL must be the project's URL (like https://abcd.supabase.co), without the /rest/v1 "
                   "of its API, got 'https://***@abcd.supabase.co/rest/v1'\n"
                   "  - SUPABASE_SERVICE_KEY is not set\n  - MATOMO_API_URL is not set",
        "exit_code": 2, "dry_run": True, "counts": {}, "sites": []}


@pytest.mark.parametrize("arguments", [["--json", "--workers", "0"], ["--js", "--limit", "x"]])
def test_json_option_writes_the_document_on_a_usage_error(arguments, tmp_path):
    result = run_command(tmp_path, *arguments)
    assert result.returncode == 2
    document = json.loads(result.stdout)
    assert (document["exit_code"], document["dry_run"], document["sites"]) == (2, False, [])
    assert document["summary"] in result.stderr  # the same words argparse printed after its usage line
    assert document["summary"].startswith(f"argument {arguments[1]}: ")


@pytest.mark.parametrize("arguments", [(), ("--check",)], ids=["run", "check"])
def test_a_key_row_level_security_limits_stops_a_run_and_check_alike_naming_the_setting(tmp_path, arguments):
    result = run_command(tmp_path, *arguments, **dict(REQUIRED, SUPABASE_SERVICE_KEY="sb_publishable_Xy7" + "q" * 20))

    assert result.returncode == 2
    assert "SUPABASE_SERVICE_KEY is a publishable key (sb_publishable_…), which row-level security limits" in (
        result.stderr)
    assert "Xy7qqq" not in result.stderr + result.stdout


def test_version_and_help_say_the_version_where_settings_come_from_and_the_exit_codes(tmp_path):
    version = run_command(tmp_path, "--version")
    usage = run_command(tmp_path, "--help")

    assert (version.returncode, version.stdout.strip()) == (0, "hosting-automator 0.1.0")
    assert usage.returncode == 0
    assert ".env file in the working directory (--env-file names another)" in usage.stdout
    assert "cp .env.example .env" in usage.stdout
    assert "  2  a setting or an option is wrong" in usage.stdout


@pytest.mark.parametrize("combined", [["--dry-run"], ["--domain", "a.example"], ["--limit", "3"], ["--retry-failed"],
                                      ["--workers", "2"]])
def test_check_with_an_option_that_means_nothing_beside_it_is_refused_with_exit_2(tmp_path, combined):
    result = run_command(tmp_path, "--check", *combined, **REQUIRED)

    assert result.returncode == 2
    assert f"--check looks at the settings and the services and processes no site: {combined[0]} means nothing" in (
        result.stderr)


def test_without_settings_the_message_says_where_they_go(tmp_path):
    result = run_command(tmp_path)

    assert result.returncode == 2
    assert "Settings come from the environment or from .env in the working directory (--env-file PATH" in result.stderr
    assert "cp .env.example .env" in result.stderr


@pytest.mark.parametrize("as_json", [False, True], ids=["lines", "json"])
def test_check_with_unusable_settings_fails_the_settings_line_and_checks_nothing_else(tmp_path, as_json):
    result = run_command(tmp_path, "--check", *(["--json"] if as_json else []),
                         **dict(REQUIRED, SUPABASE_URL="", WORKERS="0"))

    assert result.returncode == 2
    assert "Traceback" not in result.stdout + result.stderr
    if as_json:
        document = json.loads(result.stdout)
        checks = [(check["name"], check["passed"]) for check in document["checks"]]
        assert checks[0] == ("settings", False)
        assert document["checks"][0]["detail"].startswith("SUPABASE_URL is not set")
        assert "WORKERS must" in document["checks"][0]["detail"]
        assert {passed for _, passed in checks[1:]} == {None} and len(checks) == 10
        assert (document["passed"], document["failed"], document["exit_code"]) == (0, 1, 2)
        return
    lines = result.stdout.splitlines()
    assert lines[0].startswith("FAIL  settings: SUPABASE_URL is not set") and "WORKERS must" in lines[0]
    assert lines[1:-1] == [f"----  {name}: not checked (the settings are not usable)" for name in (
        "Supabase", "servers", "Matomo backfill", "CloudPanel", "Matomo", "HTTPS", "log file", "run time",
        "lock file")]
    assert lines[-1] == "0 passed, 1 failed, 9 not checked"
