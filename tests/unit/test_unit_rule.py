"""The rule of tests/unit (tests/unit/conftest.py): a test that starts a process, opens a connection or looks a name
up fails, even when the code under test catches the refusal."""

import socket
import subprocess

import pytest


def test_a_connection_a_name_and_a_process_are_refused_and_each_is_noted(_no_process_and_no_socket):
    tried = _no_process_and_no_socket

    with socket.socket() as sock, pytest.raises(AssertionError, match="used a socket"):
        sock.connect(("127.0.0.1", 9))
    with pytest.raises(AssertionError, match="looked a name up"):
        socket.getaddrinfo("example.com", 443)
    with pytest.raises(AssertionError, match="started a process"):
        subprocess.run(["true"], check=False)

    assert tried == ["used a socket (connect)", "looked a name up", "started a process"]
    tried.clear()  # each was refused: the rule held, and this test is not failed for having tried
