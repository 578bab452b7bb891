"""The hostile-row corpus: each domain value is normalised correctly or refused with a precise reason."""

import pytest

from hosting_automator.domains import apex_of, normalise_domain, twin_of
from hosting_automator.errors import InvalidDomainError

VALID = [
    ("EXAMPLE.COM.", "example.com"),
    ("  Example.com  ", "example.com"),
    ("www.example.com", "www.example.com"),
    ("例え.jp", "xn--r8jz45g.jp"),
    ("Bücher.example", "xn--bcher-kva.example"),
    ("xn--r8jz45g.jp", "xn--r8jz45g.jp"),
    ("a-b.example.org", "a-b.example.org"),
]

INVALID = [
    ("", "domain is empty"),
    ("   ", "domain is empty"),
    (None, "domain is empty (NULL)"),
    (42, "domain must be text, got int 42"),
    ("example.com; rm -rf /", "characters not allowed in a host name (;)"),
    ("$(reboot).com", "characters not allowed in a host name ($ ( ))"),
    ("`id`.com", "characters not allowed in a host name (`)"),
    ("exa mple.com", "domain contains whitespace"),
    ("http://example.com/", "must be a bare host name, not a URL"),
    ("example.com:8080", "must not contain a port"),
    ("example.com/path", "must not contain a path"),
    ("*.example.com", "wildcard domains are not supported"),
    ("-bad.com", "label '-bad' must not start or end with a hyphen"),
    ("bad-.com", "label 'bad-' must not start or end with a hyphen"),
    ("a..b.com", "empty label"),
    ("a" * 64 + ".com", "is 64 characters long, more than the 63 allowed"),
    (".".join(["abcdefghij"] * 24) + ".com", "is 267 characters long, more than the 253 allowed"),
    (".".join(["abcdefghij"] * 12) + ".com", "CloudPanel accepts at most 128"),
    ("xn--zz.com", "label 'xn--zz' is not valid punycode"),
    ("exam\nple.com", "domain contains whitespace: 'exam\\nple.com'"),
    ("localhost", "needs at least two labels"),
    ("10.0.0.1", "an IP address is not a domain name"),
    ("under_score.com", "may hold only letters, digits and hyphens"),
]


@pytest.mark.parametrize("raw, expected", VALID)
def test_normalise_domain_valid_names_are_normalised(raw, expected):
    assert normalise_domain(raw) == expected


@pytest.mark.parametrize("raw, reason", INVALID)
def test_normalise_domain_invalid_names_say_why(raw, reason):
    with pytest.raises(InvalidDomainError) as caught:
        normalise_domain(raw)
    assert reason in str(caught.value)


def test_normalise_domain_message_stays_on_one_line():
    with pytest.raises(InvalidDomainError) as caught:
        normalise_domain("evil.com\nINFO forged log line")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("raw", ["exa\x1bmple.com", "ab\x07c.example", "a\x7fb.example", "a\x00b.example",
                                 "\x1b[31mred.example", "ok.exa\x9bmple"])
def test_normalise_domain_control_characters_are_shown_escaped_never_raw(raw):
    with pytest.raises(InvalidDomainError) as caught:
        normalise_domain(raw)
    message = str(caught.value)
    assert message.isprintable()
    assert any(escape in message for escape in ("\\x1b", "\\x07", "\\x7f", "\\x00", "\\x9b"))


@pytest.mark.parametrize("written, standard", [
    ("ｆｕｌｌｗｉｄｔｈ.example", "fullwidth.example"),
    ("soft\xadhyphen.example", "softhyphen.example"),
    ("zw\u200bsp.example", "zwsp.example"),
    ("nfd-u\u0308.example", "nfd-ü.example"),
    ("dot\u3002example", "dot.example"),
    ("\ufb01le.example", "file.example"),
])
def test_a_name_not_in_its_standard_spelling_is_refused_naming_that_spelling(written, standard):
    """Another row of the same site is looked for under its two standard spellings: a name only a compatibility
    mapping turns into one would not be found, and its site would be built twice."""
    with pytest.raises(InvalidDomainError) as caught:
        normalise_domain(written)
    assert str(caught.value).startswith("domain is not written in its standard form: ")
    assert f"write it as {standard}" in str(caught.value)


@pytest.mark.parametrize("written, normalised", [("bücher.example", "xn--bcher-kva.example"),
                                                 ("BÜCHER.Example.", "xn--bcher-kva.example"),
                                                 ("straße.example", "xn--strae-oqa.example")])
def test_a_unicode_name_in_its_standard_spelling_any_case_is_taken(written, normalised):
    assert normalise_domain(written) == normalised


@pytest.mark.parametrize("domain, apex, twin", [("example.com", "example.com", "www.example.com"),
                                                ("www.example.com", "example.com", "example.com"),
                                                ("www2.example.com", "www2.example.com", "www.www2.example.com"),
                                                ("wwwexample.com", "wwwexample.com", "www.wwwexample.com")])
def test_a_name_and_its_www_twin_share_one_apex(domain, apex, twin):
    assert (apex_of(domain), twin_of(domain)) == (apex, twin)
    assert apex_of(twin) == apex
