"""What every HTTP stand-in promises the tests (tests/standins/README.md): the request log, keep-alive, faults,
and stop() / start() again on the same port."""

import http.client
import json

import pytest

from tests.standins._http import HTTPStandin, json_response
from tests.standins.faults import Fault, once


class Echo(HTTPStandin):
    name = "echo"

    def handle(self, request):
        return json_response(200, {"path": request["path"]})


@pytest.fixture
def echo():
    with Echo() as started:
        yield started


def connect(standin):
    return http.client.HTTPConnection("127.0.0.1", standin.port, timeout=5)


def test_requests_are_logged_with_query_lists_lower_cased_headers_and_the_body(echo):
    client = connect(echo)
    client.request("POST", "/api/x?a=1&a=2&b=&x=%C3%A9", body="é=1".encode(), headers={"X-API-Key": "k", "Prefer": "p"})
    answer = client.getresponse()

    assert (answer.status, json.loads(answer.read())) == (200, {"path": "/api/x"})
    entry = echo.requests_log[-1]
    assert (entry["method"], entry["path"], entry["body"]) == ("POST", "/api/x", "é=1")
    assert entry["query"] == {"a": ["1", "2"], "b": [""], "x": ["é"]}
    assert entry["headers"]["x-api-key"] == "k" and entry["headers"]["prefer"] == "p"
    assert echo.request_count == 1


def test_one_connection_serves_request_after_request(echo):
    client = connect(echo)
    for path in ("/one", "/two", "/three"):
        client.request("GET", path)
        answer = client.getresponse()
        assert json.loads(answer.read()) == {"path": path}
        assert answer.getheader("Connection") is None  # kept alive
    assert echo.request_count == 3


def test_stop_cuts_kept_alive_connections_and_start_again_listens_on_the_same_port(echo):
    client = connect(echo)
    client.request("GET", "/before")
    client.getresponse().read()
    port = echo.port

    echo.stop()
    with pytest.raises((ConnectionError, http.client.HTTPException, OSError)):
        client.request("GET", "/while-stopped")
        client.getresponse()
    echo.start()

    assert echo.port == port
    again = connect(echo)
    again.request("GET", "/after")
    assert json.loads(again.getresponse().read()) == {"path": "/after"}


def test_faults_answer_instead_of_the_work_or_close_without_answering(echo):
    echo.fault = once(Fault.status(429, {"error": "slow down"}, {"Retry-After": "1"}))
    client = connect(echo)
    client.request("GET", "/limited")
    answer = client.getresponse()
    assert (answer.status, answer.getheader("Retry-After"), json.loads(answer.read())) == (
        429, "1", {"error": "slow down"})

    echo.fault = once(Fault.drop())
    client.request("GET", "/dropped")
    with pytest.raises((ConnectionError, http.client.HTTPException)):
        client.getresponse()
    assert [entry["path"] for entry in echo.requests_log] == ["/limited", "/dropped"]
