#!/usr/bin/env python3
"""Fake CloudPanel `clpctl`: same commands, messages and exit codes as the real one (site:add:static,
lets-encrypt:install:certificate, site:delete, user:list, --version), state in a SQLite file shaped like
CloudPanel's.

Environment: FAKE_CLPCTL_DB (the SQLite file, created if missing), FAKE_CLPCTL_CONTROL (optional JSON file,
re-read at every call: {domain or "*": {command: behaviour}}), FAKE_CLPCTL_LATENCY_MS (sleep per call),
FAKE_CLPCTL_HOME (optional: site:add:static makes <home>/<siteUser>/htdocs/<domain>, as CloudPanel does under
/home, and site:delete removes <home>/<siteUser>; the gateway's site listing reads those folders).
Behaviours: "fail:<msg>", "error-exit0:<msg>", "silent-exit1", "hang", "kill-parent-after", "fail-once:<msg>",
"fail-echo:<msg>" (exit 1, <msg> and then the whole command line, password included, as a verbose wrapper might),
"slow:<seconds>" (sleeps that long, then does the work), "gate:<path>" (recorded as running, then waits until
<path> exists, then does the work), "say:<text>" (does the work; when it succeeds, prints
<text> instead of the usual line, nothing at all for an empty <text>).
`run(argv, db_path, control_path=None)` holds the logic and is importable without side effects (the gateway
stand-in uses it). Standard library only.
"""

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

VERSION_LINE = "CloudPanel 2.5.0 (fake)"
SCHEMA = """
CREATE TABLE IF NOT EXISTS site (
    id INTEGER PRIMARY KEY,
    domain_name TEXT NOT NULL UNIQUE,
    user TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    root_directory TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS certificate_request (
    id INTEGER PRIMARY KEY,
    domain_name TEXT NOT NULL,
    subject_alternative_name TEXT,
    requested_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS certificate_request_domain_name ON certificate_request (domain_name, requested_at);
CREATE TABLE IF NOT EXISTS call (
    id INTEGER PRIMARY KEY,
    argv_json TEXT NOT NULL,
    exit_code INTEGER,
    at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS received_password (
    password TEXT PRIMARY KEY
);
CREATE TABLE IF NOT EXISTS control_state (
    domain_name TEXT NOT NULL,
    command TEXT NOT NULL,
    failures INTEGER NOT NULL,
    PRIMARY KEY (domain_name, command)
);
"""
COMMANDS = {
    "site:add:static": {"options": ("domainName", "siteUser", "siteUserPassword"),
                        "required": ("domainName", "siteUser", "siteUserPassword"), "flags": ()},
    "lets-encrypt:install:certificate": {"options": ("domainName", "subjectAlternativeName"),
                                         "required": ("domainName",), "flags": ()},
    "site:delete": {"options": ("domainName",), "required": ("domainName",), "flags": ("force",)},
    "user:list": {"options": (), "required": (), "flags": ()},
}
# The CloudPanel (admin) users user:list shows, in clpctl's Symfony table (the columns the gateway's docs show).
PANEL_USERS = (("User Name", "First Name", "Last Name", "E-Mail", "Role", "Status"),
               ("admin", "John", "Doe", "john.doe@example.test", "Admin", "Active"))
GLOBAL_FLAGS = ("no-interaction", "n", "quiet", "q", "verbose", "v", "vv", "vvv", "ansi", "no-ansi")
SYSTEM_USERS = {"root", "daemon", "bin", "sys", "sync", "nobody", "www-data", "clp", "mysql", "nginx",
                "proftpd", "varnish", "ubuntu", "debian", "admin", "postfix"}
PASSWORD_OPTION = "siteUserPassword"
_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")
_USER = re.compile(r"[a-z][-a-z0-9_]{2,31}")


def valid_domain(domain):
    """Lower-case host name of at most 128 characters: two labels or more, each of up to 63 letters, digits and
    inner hyphens, the last one not starting with a digit."""
    if not domain or len(domain) > 128:
        return False
    labels = domain.split(".")
    return (len(labels) >= 2 and not labels[-1][:1].isdigit()
            and all(len(label) <= 63 and _LABEL.fullmatch(label) for label in labels))


def valid_user(user):
    """^[a-z][-a-z0-9_]+$, 3 to 32 characters."""
    return _USER.fullmatch(user) is not None


def _now():
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())


def connect(db_path):
    """Open (and create if needed) the fake's SQLite file. Autocommit mode; writers use BEGIN IMMEDIATE."""
    conn = sqlite3.connect(db_path, timeout=60, isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")
    conn.executescript(SCHEMA)
    return conn


def redact(argv):
    """argv with the value of --siteUserPassword replaced by <redacted> (both --opt=v and --opt v forms)."""
    out, hide_next = [], False
    for tok in argv:
        if hide_next:
            out.append("<redacted>")
            hide_next = False
        elif tok.startswith("--" + PASSWORD_OPTION + "="):
            out.append("--" + PASSWORD_OPTION + "=<redacted>")
        elif tok == "--" + PASSWORD_OPTION:
            out.append(tok)
            hide_next = True
        else:
            out.append(tok)
    return out


class _Usage(Exception):
    pass


def parse(argv):
    """(command or None, options dict, flags set). Raises _Usage with clpctl's message."""
    command, options, flags, i = None, {}, set(), 0
    pending = []
    while i < len(argv):
        tok = argv[i]
        if tok.startswith("--") or (tok.startswith("-") and len(tok) > 1):
            pending.append((tok, argv[i + 1] if i + 1 < len(argv) else None))
            i += 1
            # value of a "--opt value" pair is consumed below, once the command (and its options) is known
            continue
        if command is None:
            command = tok
        else:
            pending.append((None, tok))
        i += 1
    spec = COMMANDS.get(command, {"options": (), "required": (), "flags": ()})
    skip_value = False
    for tok, nxt in pending:
        if tok is None:
            if skip_value:
                skip_value = False
                continue
            raise _Usage(f'Too many arguments to "{command}" command, expected arguments "".')
        skip_value = False
        name, eq, value = tok.lstrip("-").partition("=")
        if name in ("version", "V"):
            flags.add("version")
        elif name in spec["flags"] or name in GLOBAL_FLAGS or name in ("help", "h"):
            flags.add(name)
        elif name in spec["options"]:
            if not eq:
                if nxt is None or nxt.startswith("-"):
                    raise _Usage(f'The "--{name}" option requires a value.')
                value = nxt
                skip_value = True
            options[name] = value
        else:
            raise _Usage(f'The "{tok.split("=")[0]}" option does not exist.')
    return command, options, flags


def read_control(control_path):
    if not control_path:
        return {}
    try:
        with open(control_path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError:
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def behaviour_for(control, domain, command):
    for key in (domain, "*"):
        entry = control.get(key) if key is not None else None
        if isinstance(entry, dict) and entry.get(command):
            return str(entry[command])
    return None


def _hang_for_real():
    subprocess.Popen(["sleep", "600"])
    time.sleep(600)


def table(rows):
    """Rows as Symfony Console prints a table: +---+ borders, a header row, one space of padding."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    border = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    line = lambda row: "|" + "|".join(f" {cell.ljust(w)} " for cell, w in zip(row, widths)) + "|"  # noqa: E731
    return "\n".join([border, line(rows[0]), border] + [line(row) for row in rows[1:]] + [border])


def _wait_for_file(path, seconds=600):
    """The "gate:<path>" behaviour: a test opens the gate by creating `path`; the command waits for it, so a test
    knows the command is in progress (its call is recorded) for as long as it needs, on any machine."""
    deadline = time.monotonic() + seconds
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.02)


class Result:
    __slots__ = ("exit_code", "output", "kill_parent")

    def __init__(self, exit_code, output, kill_parent=False):
        self.exit_code, self.output, self.kill_parent = exit_code, output, kill_parent


def run(argv, db_path, control_path=None, hang=None, home=None):
    """Run one clpctl command against the SQLite file; returns (exit_code, output)."""
    r = run_detailed(argv, db_path, control_path, hang, home=home)
    return r.exit_code, r.output


def run_detailed(argv, db_path, control_path=None, hang=None, slow=None, home=None):
    """Like run(), but returns a Result whose `kill_parent` says a kill-parent-after behaviour fired.

    `hang` is called for the "hang" behaviour (default: start `sleep 600` and sleep 600 s), `slow(seconds)` for
    "slow:<seconds>" (default time.sleep); when either returns, the command then does its work normally. `home`:
    the folder that stands for /home (FAKE_CLPCTL_HOME), None for none.
    """
    conn = connect(db_path)
    try:
        return run_on(conn, argv, control_path, hang, slow=slow, home=home)
    finally:
        conn.close()


def run_on(conn, argv, control_path=None, hang=None, slow=None, home=None):
    """run_detailed() on a connection from connect(), which a long-lived caller (the gateway) may keep."""
    return _run(conn, list(argv), control_path, hang or _hang_for_real, slow or time.sleep, home)


def _remember_passwords(conn, argv):
    """Test-only: every site password received, for the tests' secret scan (`call` keeps argv redacted)."""
    for index, tok in enumerate(argv):
        if tok.startswith("--" + PASSWORD_OPTION + "="):
            password = tok.partition("=")[2]
        elif tok == "--" + PASSWORD_OPTION and index + 1 < len(argv):
            password = argv[index + 1]
        else:
            continue
        if password:
            conn.execute("INSERT OR IGNORE INTO received_password (password) VALUES (?)", (password,))


def _record(conn, argv, exit_code):
    cur = conn.execute("INSERT INTO call (argv_json, exit_code, at) VALUES (?, ?, ?)",
                       (json.dumps(redact(argv)), exit_code, _now()))
    return cur.lastrowid


def _finish(conn, argv, code, output, call_id=None, kill_parent=False):
    if call_id is None:
        _record(conn, argv, code)
    else:
        conn.execute("UPDATE call SET exit_code = ? WHERE id = ?", (code, call_id))
    return Result(code, output, kill_parent)


def _run(conn, argv, control_path, hang, slow, home):
    _remember_passwords(conn, argv)
    try:
        command, options, flags = parse(argv)
    except _Usage as exc:
        return _finish(conn, argv, 1, str(exc))
    if command is None:
        if "version" in flags:
            return _finish(conn, argv, 0, VERSION_LINE)
        listing = [VERSION_LINE, "", "Available commands:"] + [f"  {c}" for c in sorted(COMMANDS)]
        return _finish(conn, argv, 0, "\n".join(listing))
    if command not in COMMANDS:
        return _finish(conn, argv, 1, f'Command "{command}" is not defined.')
    spec = COMMANDS[command]
    missing = [name for name in spec["required"] if not options.get(name)]
    if missing:
        return _finish(conn, argv, 1, 'Not enough arguments (missing: "' + ", ".join(missing) + '").')

    domain = options.get("domainName")
    behaviour = behaviour_for(read_control(control_path), domain, command)
    call_id = None
    kill_parent = False
    say = None
    if behaviour is not None:
        kind, _, message = behaviour.partition(":")
        if kind == "fail":
            return _finish(conn, argv, 1, message)
        if kind == "fail-echo":
            return _finish(conn, argv, 1, message + "\nCommand: clpctl " + " ".join(argv))
        if kind == "error-exit0":
            return _finish(conn, argv, 0, message)
        if kind == "silent-exit1":
            return _finish(conn, argv, 1, "")
        if kind == "hang":
            call_id = _record(conn, argv, None)
            hang()
        elif kind == "slow":
            call_id = _record(conn, argv, None)
            slow(float(message or 0))
        elif kind == "gate":
            call_id = _record(conn, argv, None)  # seen running (exit_code null) while it waits
            _wait_for_file(message)
        elif kind == "say":
            say = message
        elif kind == "kill-parent-after":
            kill_parent = True
        elif kind == "fail-once":
            conn.execute("BEGIN IMMEDIATE")
            row = conn.execute("SELECT failures FROM control_state WHERE domain_name = ? AND command = ?",
                               (domain, command)).fetchone()
            if row is None:
                conn.execute("INSERT INTO control_state (domain_name, command, failures) VALUES (?, ?, 1)",
                             (domain, command))
                _record(conn, argv, 1)
                conn.execute("COMMIT")
                return Result(1, message)
            conn.execute("COMMIT")

    if command == "user:list":
        return _finish(conn, argv, 0, table(PANEL_USERS) if say is None else say, call_id)
    conn.execute("BEGIN IMMEDIATE")
    try:
        if command == "site:add:static":
            code, output = _site_add_static(conn, options)
        elif command == "lets-encrypt:install:certificate":
            code, output = _install_certificate(conn, options)
        else:
            code, output = _site_delete(conn, options, flags)
        if code == 0 and say is not None:
            output = say
        result = _finish(conn, argv, code, output, call_id, kill_parent and code == 0)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    if home and code == 0:
        _site_folders(home, command, options)
    return result


def _site_folders(home, command, options):
    """The site's folder under `home` as CloudPanel keeps it under /home: made by site:add:static (with its user's
    home), and the user's home removed by site:delete."""
    if command == "site:add:static":
        os.makedirs(os.path.join(home, options["siteUser"], "htdocs", options["domainName"]), exist_ok=True)
    elif command == "site:delete" and options.get("siteUser"):
        shutil.rmtree(os.path.join(home, options["siteUser"]), ignore_errors=True)


def _site_add_static(conn, o):
    domain, user, password = o["domainName"], o["siteUser"], o["siteUserPassword"]
    if not valid_domain(domain):
        return 1, "domainName: This value is not valid."
    if not valid_user(user):
        return 1, "siteUser: This value is not valid."
    if len(password) < 8:
        return 1, "siteUserPassword: This value is too short. It should have 8 characters or more."
    if len(password) > 200:
        return 1, "siteUserPassword: This value is too long. It should have 200 characters or less."
    # Symfony's validator reports every violation at once, one line each
    violations = []
    if conn.execute("SELECT 1 FROM site WHERE domain_name = ?", (domain,)).fetchone():
        violations.append("domainName: This value already exists.")
    if user in SYSTEM_USERS or conn.execute("SELECT 1 FROM site WHERE user = ?", (user,)).fetchone():
        violations.append("siteUser: This value already exists.")
    if violations:
        return 1, "\n".join(violations)
    conn.execute("INSERT INTO site (domain_name, user, type, root_directory, created_at) VALUES (?, ?, ?, ?, ?)",
                 (domain, user, "static", f"/home/{user}/htdocs/{domain}", _now()))
    return 0, f"Site {domain} has been added."


def _install_certificate(conn, o):
    domain = o["domainName"]
    if not conn.execute("SELECT 1 FROM site WHERE domain_name = ?", (domain,)).fetchone():
        return 1, f'Site "{domain}" does not exist.'
    conn.execute("INSERT INTO certificate_request (domain_name, subject_alternative_name, requested_at) "
                 "VALUES (?, ?, ?)", (domain, o.get("subjectAlternativeName"), _now()))
    return 0, "Certificate installation was successful."


def _site_delete(conn, o, flags):
    domain = o["domainName"]
    if not conn.execute("SELECT 1 FROM site WHERE domain_name = ?", (domain,)).fetchone():
        return 1, f'Site "{domain}" does not exist.'
    if "force" not in flags:
        return 1, "Aborted. Use --force to delete the site without confirmation."
    # the site's user, whose home _site_folders() then removes
    o["siteUser"] = conn.execute("SELECT user FROM site WHERE domain_name = ?", (domain,)).fetchone()[0]
    conn.execute("DELETE FROM site WHERE domain_name = ?", (domain,))
    return 0, f"Site {domain} has been deleted."


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    db_path = os.environ.get("FAKE_CLPCTL_DB")
    if not db_path:
        sys.stdout.write("fake clpctl: FAKE_CLPCTL_DB is not set\n")
        return 1
    latency_ms = float(os.environ.get("FAKE_CLPCTL_LATENCY_MS") or 0)
    if latency_ms > 0:
        time.sleep(latency_ms / 1000.0)
    result = run_detailed(argv, db_path, os.environ.get("FAKE_CLPCTL_CONTROL") or None,
                          home=os.environ.get("FAKE_CLPCTL_HOME") or None)
    if result.output:
        sys.stdout.write(result.output + "\n")
    sys.stdout.flush()
    if result.kill_parent:
        os.kill(os.getppid(), signal.SIGKILL)
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
