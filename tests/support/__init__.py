"""Helpers several test modules use (no tests here): running the job and its secret scan, the fleet, PostgreSQL,
fast retries, the crash-resume end state, sockets and shared values."""
