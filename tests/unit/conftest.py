"""Fixtures of the unit tests, and their rule enforced: a test here that starts a process or opens a connection
fails (it belongs in tests/integration/). HTTP is answered by `responses`, in front of the real requests session."""

import os
import socket
import subprocess

import pytest
import responses
from responses.registries import OrderedRegistry


@pytest.fixture(autouse=True)
def _no_process_and_no_socket(monkeypatch):
    tried = []

    def refuse(what):
        def refused(*args, **kwargs):
            tried.append(what)
            raise AssertionError(f"a unit test {what}: move it to tests/integration/")
        return refused

    monkeypatch.setattr(subprocess.Popen, "_execute_child", refuse("started a process"))
    monkeypatch.setattr(os, "fork", refuse("forked"))
    for name in ("connect", "connect_ex", "sendto", "listen"):
        monkeypatch.setattr(socket.socket, name, refuse(f"used a socket ({name})"))
    monkeypatch.setattr(socket, "getaddrinfo", refuse("looked a name up"))
    yield tried
    # the code under test may have caught the AssertionError: fail the test all the same
    assert not tried, f"a unit test {tried[0]}: move it to tests/integration/"


@pytest.fixture
def mocked():
    """Every request the session sends is answered by what the test registered, in that order, and every
    registered answer must have been asked for."""
    with responses.RequestsMock(assert_all_requests_are_fired=True, registry=OrderedRegistry) as mock:
        yield mock
