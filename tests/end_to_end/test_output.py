"""What the log, the console and --json show: control characters in a domain escaped everywhere, and the --json
document written also when the run stops with exit 2."""

import json

import pytest

from tests.support.harness import add_pending, no_traceback, run_job
from tests.support.standin_views import row


@pytest.mark.parametrize("character", ["\x1b", "\x07", "\x7f", "\x00"], ids=["ESC", "BEL", "DEL", "NUL"])
def test_control_characters_in_a_domain_are_shown_escaped_everywhere(standins, character):
    ids = add_pending(standins, f"shop{character}x.example.test")

    result = run_job(standins, "--json")

    assert result.returncode == 1
    error = row(standins, ids[0])["error_message"]
    escaped = repr(f"shop{character}x")
    assert error == f"invalid domain: label {escaped} may hold only letters, digits and hyphens"
    for text in (result.log, result.stdout, result.stderr, error, json.loads(result.stdout)["sites"][0]["error"]):
        assert character not in text
    assert escaped in result.log


@pytest.mark.parametrize("arguments, overrides, summary", [
    (["--json"], {"SUPABASE_SERVICE_KEY": None}, "Configuration problems:\n  - SUPABASE_SERVICE_KEY is not set"),
    (["--json", "--limit", "x"], {}, "argument --limit: must be a whole number of at least 1, got 'x'"),
    (["--json"], {"WORKERS": "0"}, "Configuration problems:\n  - WORKERS must be a whole number from 1 to 64"),
    (["--json"], {"LOG_FILE": "no-such-dir/run.log"}, "LOG_FILE no-such-dir/run.log cannot be written (No such file "
                                                      "or directory)"),
    (["--json"], {"LOCK_FILE": "no-such-dir/run.lock"}, "LOCK_FILE no-such-dir/run.lock cannot be opened (No such "
                                                        "file or directory)"),
], ids=["missing-setting", "usage-error", "setting-out-of-range", "log-file-in-a-missing-directory",
        "lock-file-in-a-missing-directory"])
def test_json_writes_its_document_also_when_the_run_stops_with_exit_2(standins, arguments, overrides, summary):
    ids = add_pending(standins, "one.example.test")

    result = run_job(standins, *arguments, overrides=overrides)

    assert result.returncode == 2
    document = json.loads(result.stdout)
    assert document["exit_code"] == 2 and document["sites"] == []
    assert document["summary"].startswith(summary)
    assert row(standins, ids[0])["status_hosting"] == "pending"
    no_traceback(result)
