"""Helpers for tests: read the fake clpctl's SQLite state and write its control file."""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile

from . import fake_clpctl


def _query(db_path, sql, params=()):
    if not os.path.exists(db_path):
        return []
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=60)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql, params)]
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []
        raise
    finally:
        conn.close()


def ensure_db(db_path):
    """Create the file and its tables if missing."""
    fake_clpctl.connect(db_path).close()


def read_sites(db_path):
    """Every row of the `site` table (dicts), by id."""
    return _query(db_path, "SELECT * FROM site ORDER BY id")


def site(db_path, domain):
    rows = _query(db_path, "SELECT * FROM site WHERE domain_name = ?", (domain,))
    return rows[0] if rows else None


def add_site(db_path, domain, user, type_="static", home=None):
    """Pre-seed a site as if it had been created earlier (no call is recorded); with `home` (the folder that stands
    for /home, FAKE_CLPCTL_HOME) also its <home>/<user>/htdocs/<domain>, which the real gateway's listing reads (the
    gateway stand-in lists the sites of the SQLite file)."""
    conn = fake_clpctl.connect(db_path)
    try:
        conn.execute("INSERT INTO site (domain_name, user, type, root_directory, created_at) VALUES (?, ?, ?, ?, ?)",
                     (domain, user, type_, f"/home/{user}/htdocs/{domain}", fake_clpctl._now()))
    finally:
        conn.close()
    if home:
        os.makedirs(os.path.join(home, user, "htdocs", domain), exist_ok=True)


def add_certificate_request(db_path, domain, requested_at=None):
    """Pre-seed a certificate request; requested_at 'YYYY-MM-DD HH:MM:SS' UTC (default now)."""
    conn = fake_clpctl.connect(db_path)
    try:
        conn.execute("INSERT INTO certificate_request (domain_name, requested_at) VALUES (?, ?)",
                     (domain, requested_at or fake_clpctl._now()))
    finally:
        conn.close()


def certificate_requests(db_path, domain=None):
    if domain is None:
        return _query(db_path, "SELECT * FROM certificate_request ORDER BY id")
    return _query(db_path, "SELECT * FROM certificate_request WHERE domain_name = ? ORDER BY id", (domain,))


def calls(db_path):
    """Every recorded call: dicts with id, argv (list, password redacted), argv_json, exit_code, at."""
    rows = _query(db_path, "SELECT * FROM call ORDER BY id")
    for r in rows:
        r["argv"] = json.loads(r["argv_json"])
    return rows


def received_passwords(db_path):
    """Every site password clpctl (or the gateway, which runs the same logic) was given: test-only, for the secret
    scan, since the `call` table keeps them redacted."""
    return [r["password"] for r in _query(db_path, "SELECT password FROM received_password")]


def write_control(path, mapping):
    """Atomically write the control file: {domain or "*": {command: behaviour}}."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".control-", suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(mapping, fh)
    os.replace(tmp, path)
