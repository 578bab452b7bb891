"""Settings: every problem named at once, .env read with the real environment winning. The command run with
settings that stop it: tests/end_to_end/test_config.py."""

import base64
import itertools
import json
import re
from pathlib import Path

import pytest
from dotenv import dotenv_values

from hosting_automator.core import config
from hosting_automator.core.config import env_file_readable_by_others, load_settings, matomo_api_endpoint
from hosting_automator.errors import ConfigurationError
from tests.support.settings import LONG_LABEL, REQUIRED


def problems_of(environ, env_file=None):
    with pytest.raises(ConfigurationError) as caught:
        load_settings(env_file=env_file, environ=environ)
    return caught.value.problems


def test_load_settings_nothing_set_names_every_missing_setting(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert problems_of({}) == [
        "SUPABASE_URL is not set",
        "SUPABASE_SERVICE_KEY is not set",
        "MATOMO_API_URL is not set",
        "MATOMO_API_TOKEN is not set",
    ]


def test_load_settings_malformed_values_are_all_reported_together(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    environ = dict(REQUIRED, SUPABASE_URL="project.supabase.co", HTTP_TIMEOUT="soon", WORKERS="0",
                   MAX_SITES_PER_RUN="-1", CLOUDPANEL_HTTPS_ADDRESS="localhost", SITES_TABLE="sites; drop",
                   MATOMO_SITE_CURRENCY="euro")
    problems = problems_of(environ)
    assert [problem.split()[0] for problem in problems] == [  # in the order of the settings table
        "SUPABASE_URL", "SITES_TABLE", "MATOMO_SITE_CURRENCY", "CLOUDPANEL_HTTPS_ADDRESS", "HTTP_TIMEOUT",
        "MAX_SITES_PER_RUN", "WORKERS"]
    assert "SUPABASE_URL must be an http:// or https:// URL, got 'project.supabase.co'" in problems
    assert "HTTP_TIMEOUT must be a positive number of seconds up to 600 (e.g. 30 or 0.5), got 'soon'" in problems
    assert "WORKERS must be a whole number from 1 to 64, got '0'" in problems
    assert "MAX_SITES_PER_RUN must be a whole number from 0 to 10000, got '-1'" in problems


@pytest.mark.parametrize("present", ["CLOUDPANEL_API_URL", "CLOUDPANEL_API_TOKEN"])
def test_load_settings_gateway_url_and_token_go_together(present, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    value = "https://panel.example:3000" if present == "CLOUDPANEL_API_URL" else "gateway-token"
    problems = problems_of(dict(REQUIRED, **{present: value}))
    assert problems == ["CLOUDPANEL_API_URL and CLOUDPANEL_API_TOKEN must be set together "
                        "(both to use a clpctl HTTP gateway, neither to run clpctl on this server)"]


def test_load_settings_defaults_and_fractional_timeout(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = load_settings(environ=dict(REQUIRED, HTTP_TIMEOUT="0.5"))
    assert settings.http_timeout == 0.5
    assert settings.matomo_api_url == "https://stats.example.org/index.php"
    assert settings.sites_table == "sites"
    assert settings.log_file == "hosting_automator.log"
    assert settings.cloudpanel_db_path == "/home/clp/htdocs/app/data/db.sq3"
    assert (settings.cloudpanel_https_host, settings.cloudpanel_https_port) == ("127.0.0.1", 443)
    assert settings.max_sites_per_run == 20
    assert (settings.workers, settings.cloudpanel_concurrency) == (1, 1)
    assert not settings.uses_gateway
    assert settings.lock_file.endswith(".lock")


def test_load_settings_environment_wins_over_env_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text(
        "SUPABASE_URL=https://from-file.supabase.co\nSUPABASE_SERVICE_KEY=file-key\n"
        "MATOMO_API_URL=https://stats.example.org/index.php\nMATOMO_API_TOKEN=file-token\nWORKERS=3\n"
    )
    settings = load_settings(environ={"SUPABASE_SERVICE_KEY": "env-key", "WORKERS": ""})
    assert settings.supabase_url == "https://from-file.supabase.co"
    assert settings.supabase_service_key.get_secret_value() == "env-key"
    assert settings.workers == 3  # an empty variable does not hide the file's value
    assert settings.env_file == ".env"


def test_load_settings_env_file_option_reads_that_file_and_not_dot_env(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("SUPABASE_URL=https://wrong.example\n")
    other = tmp_path / "prod.env"
    other.write_text("\n".join(f"{key}={value}" for key, value in REQUIRED.items()))
    assert load_settings(env_file=str(other), environ={}).supabase_url == "https://project.supabase.co"
    assert problems_of({}, env_file=str(tmp_path / "missing.env"))[0] == f"--env-file {tmp_path / 'missing.env'}: no such file"


def test_settings_repr_hides_secrets(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = load_settings(environ=dict(REQUIRED, CLOUDPANEL_API_URL="https://p.example", CLOUDPANEL_API_TOKEN="gw-tok"))
    shown = repr(settings)
    assert "service-key-value" not in shown and "matomo-token-value" not in shown and "gw-tok" not in shown
    assert settings.secrets == ["service-key-value", "matomo-token-value", "gw-tok"]


def test_matomo_api_endpoint_accepts_base_or_index_php():
    assert matomo_api_endpoint("https://m.example/") == "https://m.example/index.php"
    assert matomo_api_endpoint("https://m.example/matomo/index.php") == "https://m.example/matomo/index.php"


def test_env_file_readable_by_others_looks_at_group_and_other_bits(tmp_path):
    env = tmp_path / ".env"
    env.write_text("X=1")
    env.chmod(0o600)
    assert not env_file_readable_by_others(env)
    env.chmod(0o644)
    assert env_file_readable_by_others(env)


def test_load_settings_unreadable_env_file_line_is_a_problem_that_never_shows_the_value(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text(
        "SUPABASE_URL=https://project.supabase.co\n"
        "SUPABASE_SERVICE_KEY='sb_secret_unterminated\n"
        "MATOMO_API_URL=https://stats.example.org\nMATOMO_API_TOKEN=t\n")
    problems = problems_of({})
    assert ".env line 2 cannot be read (variable SUPABASE_SERVICE_KEY)" in problems
    assert not any("sb_secret_unterminated" in problem for problem in problems)


def test_a_bad_line_without_a_name_is_named_by_its_number_only(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text(
        "\n".join(f"{key}={value}" for key, value in REQUIRED.items())
        + "\nsb_secret_Zq81vTtoken9 pasted without a name\n")
    problems = problems_of({})
    assert problems == [".env line 5 cannot be read"]
    assert caplog.records == []  # python-dotenv's own warning went into the message, not to the log


def test_env_file_bad_lines_are_all_reported_and_the_good_lines_still_read(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    env = tmp_path / "prod.env"
    env.write_text("export SUPABASE_URL=https://project.supabase.co\nY= 'a' b\n%% tok-secret-1\nWORKERS=4\n")
    environ = {key: value for key, value in REQUIRED.items() if key != "SUPABASE_URL"}
    assert problems_of(environ, env_file=str(env)) == [f"{env} line 2 cannot be read (variable Y)",
                                                       f"{env} line 3 cannot be read"]
    env.write_text("export SUPABASE_URL=https://project.supabase.co\nWORKERS=4\n")
    settings = load_settings(env_file=str(env), environ=environ)
    assert (settings.supabase_url, settings.workers) == ("https://project.supabase.co", 4)


@pytest.mark.parametrize("kind", ["not UTF-8", "a directory", "no permission"])
def test_an_env_file_that_cannot_be_read_is_a_problem_not_a_traceback(kind, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    env = tmp_path / ".env"
    if kind == "not UTF-8":
        env.write_bytes(b"SUPABASE_URL=https://project.supabase.co\nMATOMO_API_TOKEN=tok\xff\xfesecret\n")
    elif kind == "a directory":
        env.mkdir()
    else:
        env.write_text("SUPABASE_URL=https://project.supabase.co\n")
        env.chmod(0)
        # root reads it anyway, and the tests may run as root
        monkeypatch.setattr(config, "open", _permission_denied, raising=False)
    problems = problems_of(REQUIRED)
    expected = {"not UTF-8": ".env cannot be read: it is not UTF-8 text",
                "a directory": ".env cannot be read: Is a directory",
                "no permission": ".env cannot be read: Permission denied"}[kind]
    assert problems == [expected]


def _permission_denied(path, *args, **kwargs):
    raise PermissionError(13, "Permission denied", str(path))


def test_load_settings_non_ascii_digits_are_refused_not_a_traceback(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert problems_of(dict(REQUIRED, MAX_SITES_PER_RUN="²")) == [
        "MAX_SITES_PER_RUN must be a whole number from 0 to 10000, got '²'"]


def test_settings_secrets_include_a_password_written_into_a_service_url(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = load_settings(environ=dict(REQUIRED, MATOMO_API_URL="https://ops:m4tomo-basic-pw@stats.example.org",
                                          HEALTHCHECK_URL="https://hc:ping-pw-77@hc.example/ping/abc"))
    assert settings.secrets == ["service-key-value", "matomo-token-value", "m4tomo-basic-pw", "ping-pw-77"]


@pytest.mark.parametrize("url", ["https://abcd.supabase.co/rest/v1", "https://abcd.supabase.co/rest/v1/",
                                 "https://abcd.supabase.co/rest/v1/sites"])
def test_load_settings_supabase_url_with_its_rest_path_is_refused_naming_the_project_url(tmp_path, monkeypatch, url):
    monkeypatch.chdir(tmp_path)
    assert problems_of(dict(REQUIRED, SUPABASE_URL=url)) == [
        f"SUPABASE_URL must be the project's URL (like https://abcd.supabase.co), without the /rest/v1 of its API, "
        f"got {url!r}"]


def test_load_settings_counts_and_timeouts_beyond_what_can_help_are_refused_together(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    environ = dict(REQUIRED, WORKERS="1000000000000", CLOUDPANEL_CONCURRENCY="65", HTTP_TIMEOUT="1e10",
                   MAX_SITES_PER_RUN="9" * 5000)
    assert problems_of(environ) == [
        "HTTP_TIMEOUT must be a positive number of seconds up to 600 (e.g. 30 or 0.5), got '1e10'",
        "MAX_SITES_PER_RUN must be a whole number from 0 to 10000, got '9999999999999999999999999999999999999…' "
        "(5000 characters)",
        "WORKERS must be a whole number from 1 to 64, got '1000000000000'",
        "CLOUDPANEL_CONCURRENCY must be a whole number from 1 to 64, got '65'",
    ]
    settings = load_settings(environ=dict(REQUIRED, WORKERS="64", CLOUDPANEL_CONCURRENCY="64", HTTP_TIMEOUT="600",
                                          MAX_SITES_PER_RUN="10000"))
    assert (settings.workers, settings.cloudpanel_concurrency, settings.http_timeout,
            settings.max_sites_per_run) == (64, 64, 600.0, 10000)


@pytest.mark.parametrize("name", ["SUPABASE_URL", "MATOMO_API_URL", "CLOUDPANEL_API_URL", "HEALTHCHECK_URL"])
def test_load_settings_a_service_url_whose_host_name_cannot_be_used_is_refused_without_its_password(
        name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    url = f"https://ops:pa55-in-url@{LONG_LABEL}.example/x"
    environ = dict(REQUIRED, CLOUDPANEL_API_TOKEN="gateway-token", **{name: url})
    if name != "CLOUDPANEL_API_URL":
        environ["CLOUDPANEL_API_URL"] = "https://panel.example:3000"
    problems = problems_of(environ)
    assert problems == [f"{name} has a host name that cannot be used (label 'aaaaaaaaaaaaaaaaaaaa…' is 64 characters "
                        f"long, more than the 63 allowed), got 'https://***@{LONG_LABEL}.example/x'"]
    assert "pa55-in-url" not in "".join(problems)


def test_load_settings_host_names_are_refused_exactly_when_they_cannot_be_used(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    unusable = [f"{LONG_LABEL}.example", "a..example", ".".join(["a" * 63] * 4), "bad host.example",
                "ex\N{NO-BREAK SPACE}ample.org"]  # the last: IDNA refuses it
    usable = ["a" * 63 + ".example", "stats.example.org.", "bücher.example", "supabase_kong", "localhost",
              "10.0.0.7", "[2001:db8::1]"]
    refused = {}
    for host in unusable + usable:
        environ = dict(REQUIRED, SUPABASE_URL=f"http://{host}:8000", CLOUDPANEL_HTTPS_ADDRESS=f"{host}:443")
        try:
            settings = load_settings(environ=environ)
        except ConfigurationError as err:
            refused[host] = [problem.split(" (")[0] for problem in err.problems]
        else:
            assert settings.cloudpanel_https_host == host.strip("[]")
    assert refused == {host: ["SUPABASE_URL has a host name that cannot be used",
                              "CLOUDPANEL_HTTPS_ADDRESS has a host name that cannot be used"] for host in unusable}


def test_load_settings_a_refused_url_is_shown_without_the_password_written_into_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    problems = problems_of(dict(REQUIRED, MATOMO_API_URL="ftp://ops:m4tomo/pw@stats.example.org",
                                SUPABASE_URL="https://svc:supa-pw-1@abcd.supabase.co/rest/v1"))
    assert problems == [
        "SUPABASE_URL must be the project's URL (like https://abcd.supabase.co), without the /rest/v1 of its API, "
        "got 'https://***@abcd.supabase.co/rest/v1'",
        "MATOMO_API_URL must be an http:// or https:// URL, got 'ftp://***@stats.example.org'",
    ]


@pytest.mark.parametrize("workers", ["0", "65", "1000000000000"])
def test_workers_option_outside_1_to_64_is_a_usage_error(workers, capsys):
    from hosting_automator.main import parse_arguments

    with pytest.raises(SystemExit) as exited:
        parse_arguments(["--workers", workers])
    assert exited.value.code == 2
    assert f"error: argument --workers: must be a whole number from 1 to 64, got '{workers}'" in capsys.readouterr().err
    assert parse_arguments(["--workers", "64"]).workers == 64


def jwt_of(claims):
    """A JWT as Supabase's legacy keys are (the signature is not looked at)."""
    def part(value):
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")
    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJlLW5vdC1jaGVja2Vk"


@pytest.mark.parametrize("key, kind", [
    ("sb_publishable_Kq7vX2pLm9RtZw4YbN8cJd3F", "a publishable key (sb_publishable_…)"),
    (jwt_of({"iss": "supabase", "ref": "abcd", "role": "anon"}), "a key of the role 'anon', not service_role"),
    (jwt_of({"role": "authenticated"}), "a key of the role 'authenticated', not service_role"),
])
def test_a_key_that_row_level_security_limits_is_refused_naming_the_setting_never_the_key(tmp_path, monkeypatch,
                                                                                          key, kind):
    monkeypatch.chdir(tmp_path)
    (problem,) = problems_of(dict(REQUIRED, SUPABASE_SERVICE_KEY=key))
    assert problem.startswith(f"SUPABASE_SERVICE_KEY is {kind}, which row-level security limits")
    assert "sb_secret_" in problem and "service_role" in problem
    assert key[-12:] not in problem and key.split(".")[0][-12:] not in problem


@pytest.mark.parametrize("key", ["sb_secret_Kq7vX2pLm9RtZw4YbN8cJd3F", jwt_of({"role": "service_role"}),
                                 "a-key-of-another-shape", "a.b.c"])
def test_a_secret_or_service_role_key_or_one_of_unknown_shape_is_taken(tmp_path, monkeypatch, key):
    monkeypatch.chdir(tmp_path)
    assert load_settings(environ=dict(REQUIRED, SUPABASE_SERVICE_KEY=key)).supabase_service_key.get_secret_value() == key


@pytest.mark.parametrize("value", ["[::1", "[::1]x", "[::1]:", "1.1.1.1:", "[1.1.1.1"])
def test_dns_resolvers_that_do_not_parse_are_refused(tmp_path, monkeypatch, value):
    monkeypatch.chdir(tmp_path)
    (problem,) = problems_of(dict(REQUIRED, DNS_RESOLVERS=value))
    assert problem.startswith("DNS_RESOLVERS must be name servers as ip or ip:port")


@pytest.mark.parametrize("claims", [{"iss": "supabase"}, {"role": None}, {"role": ["anon"]}, {"role": ""}])
def test_a_jwt_without_the_service_role_is_refused_as_postgrest_would_take_it_as_anon(tmp_path, monkeypatch, claims):
    monkeypatch.chdir(tmp_path)
    (problem,) = problems_of(dict(REQUIRED, SUPABASE_SERVICE_KEY=jwt_of(claims)))
    assert problem.startswith("SUPABASE_SERVICE_KEY is a key without a role (PostgREST takes it as anon)")


@pytest.mark.parametrize("name", ["SUPABASE_SERVICE_KEY", "CLOUDPANEL_API_TOKEN"])
@pytest.mark.parametrize("value", ["ключключключ", "key with spaces", "tab\tkey"])
def test_a_key_sent_in_a_header_must_be_printable_ascii_never_shown(tmp_path, monkeypatch, name, value):
    monkeypatch.chdir(tmp_path)
    environ = dict(REQUIRED, **{name: value})
    if name == "CLOUDPANEL_API_TOKEN":
        environ["CLOUDPANEL_API_URL"] = "https://panel.example:3000"
    problems = problems_of(environ)
    assert f"{name} must be printable ASCII without spaces (a key copied with other characters?)" in problems
    assert all(value not in problem for problem in problems)


def test_the_examples_placeholders_copied_unedited_are_settings_not_made(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    example = (Path(__file__).resolve().parents[2] / ".env.example").read_text()
    (tmp_path / ".env").write_text(example)

    problems = problems_of({})

    assert "SUPABASE_URL is not set (it still holds .env.example's placeholder)" in problems
    assert "MATOMO_API_URL is not set (it still holds .env.example's placeholder)" in problems


ROOT = Path(__file__).resolve().parents[2]
# Rows of README's settings table for variables that requests, httpx and ssl read, not the job's settings model
READ_BY_LIBRARIES = {"https_proxy", "http_proxy", "no_proxy", "SSL_CERT_FILE", "SSL_CERT_DIR"}


def readme_settings():
    """{variable: required?} from README's table of settings (`| name | required | meaning |`)."""
    lines = (ROOT / "README.md").read_text().split("\n")
    start = lines.index("| name | required | meaning |") + 2
    documented = {}
    for line in itertools.takewhile(lambda line: line.startswith("|"), lines[start:]):
        names, required = line.split("|")[1:3]
        documented.update({name: required.strip() == "yes" for name in re.findall(r"`([A-Za-z_]+)`", names)})
    return documented


def test_readme_settings_table_names_exactly_the_models_settings_and_which_are_required():
    documented = readme_settings()
    assert set(documented) >= READ_BY_LIBRARIES
    assert sorted(name for name in documented if name not in READ_BY_LIBRARIES) == sorted(config.SETTING_NAMES)
    assert sorted(name for name, required in documented.items() if required) == sorted(config.REQUIRED_SETTINGS)


def test_env_example_holds_every_setting_of_the_model_and_nothing_else():
    example = dotenv_values(ROOT / ".env.example")
    assert sorted(example) == sorted(config.SETTING_NAMES)


@pytest.mark.parametrize("hostname, server_name, expected", [
    ("web-1", None, "web-1"),
    ("web_1", "web-1.example", "web-1.example"),
    ("web-1", "web-1,hosting_server.is.null", "SERVER_NAME must be letters, digits, dots and dashes (at most 63, "
                                              "starting with a letter or digit), got 'web-1,hosting_server.is.null'"),
    ("web_1", None, "SERVER_NAME must be letters, digits, dots and dashes (at most 63, starting with a letter or "
                    "digit), the host's name 'web_1' is not one"),
])
def test_server_name_goes_into_filters_so_only_names_that_cannot_change_one_are_taken(
        tmp_path, monkeypatch, hostname, server_name, expected):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(config.socket, "gethostname", lambda: hostname)
    environ = dict(REQUIRED, **({"SERVER_NAME": server_name} if server_name else {}))
    if expected.startswith("SERVER_NAME"):
        assert problems_of(environ) == [expected]
    else:
        assert load_settings(environ=environ).server_name == expected
