"""The stand-ins' own HTTP parsing reads requests as the standard library does: every end-to-end test relies on
it, and it takes shortcuts for speed."""

import http.client
import io
from urllib.parse import parse_qs

import pytest

from tests.standins._http import _parse_headers, parse_query

QUERIES = ["", "a=1", "a=1&a=2&b=", "a", "a=&b", "&&a=1&", "x=%C3%A9", "x=%zz%2", "a+b=c+d", "k=v=w", "%ff=1",
           "urls%5B0%5D=https%3A%2F%2Fsite1.example.test&token_auth=abc", "a=1;b=2"]


@pytest.mark.parametrize("text", QUERIES)
def test_parse_query_reads_a_query_as_parse_qs_keeping_blank_values(text):
    assert parse_query(text) == parse_qs(text, keep_blank_values=True)


HEADER_BLOCKS = [
    b"Host: 127.0.0.1\r\nContent-Length: 12\r\nX-API-Key:  k e y \r\n\r\n",
    b"Accept:\r\nPrefer:\treturn=representation\n\n",
    b"Folded: one\r\n  two\r\n\r\n",  # a continuation line
    b"Bad Name: x\r\n\r\n",  # a space in the name
    b"Bare: a\rb\r\n\r\n",  # a bare CR inside the value
    b"Latin: caf\xe9\r\n\r\n",
    b"\r\n",
]


@pytest.mark.parametrize("block", HEADER_BLOCKS)
def test_headers_are_read_as_the_standard_library_reads_them(block):
    lines = [line for line in io.BytesIO(block)]
    expected = http.client.parse_headers(io.BytesIO(block))

    parsed = _parse_headers(lines)

    assert list(parsed.items()) == list(expected.items())
    for name in ("host", "X-API-KEY", "prefer", "folded", "absent"):
        assert parsed.get(name) == expected.get(name)
