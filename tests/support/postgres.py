"""A throwaway PostgreSQL server for tests (a helper module, not a test file).

`start_server()` finds the PostgreSQL binaries (15 preferred), runs `initdb` into a fresh temporary
directory and starts the server with `pg_ctl`, listening only on a Unix socket inside that directory and on
127.0.0.1 at a free port, with trust authentication and without fsync. `PostgresServer.stop()` stops it
(`pg_ctl stop -m immediate`) and removes the directory. SQL runs through the `psql` client of the same
installation, so no Python driver is needed.

PostgreSQL refuses to run as root. When the tests run as root, initdb and the server run as the `postgres`
system user (created by Debian's postgresql packages) or, when that does not exist, as a dedicated system user
`hosting-automator-pg`, which is then created; the temporary directory is handed to that user.

Anything that prevents a server from starting raises `PostgresUnavailable`; `skip_or_fail()` turns that into a
pytest skip, or into a failure when the environment variable CI is "true" (CI must not skip these tests).
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PREFERRED_MAJOR = 15
SUPERUSER = "postgres"  # the database superuser initdb creates (-U), not the Linux user
FALLBACK_OS_USER = "hosting-automator-pg"
BINDIR_ENV = "HOSTING_AUTOMATOR_PG_BINDIR"  # optional override: a directory holding initdb, pg_ctl, postgres, psql
_NEEDED = ("initdb", "pg_ctl", "postgres", "psql")
_COMMAND_TIMEOUT = 60  # seconds for any one initdb / pg_ctl / psql call


class PostgresUnavailable(Exception):
    """No usable PostgreSQL installation, or the server could not be started."""


class PsqlError(Exception):
    """psql exited non-zero; `stderr` holds the server's message (with its SQLSTATE, e.g. `ERROR:  23514: ...`)."""

    def __init__(self, returncode: int, stderr: str, what: str):
        self.returncode = returncode
        self.stderr = stderr
        super().__init__(f"psql failed (exit {returncode}) running {what}:\n{stderr.strip()}")


def skip_or_fail(reason: str) -> None:
    """Skip the calling test(s) with `reason`, or fail them when CI=true."""
    message = f"PostgreSQL {PREFERRED_MAJOR} not available: {reason}"
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(message + " (CI=true: these tests must run, not skip)", pytrace=False)
    pytest.skip(message)


def _major_version(bindir: str) -> int | None:
    try:
        out = subprocess.run(
            [os.path.join(bindir, "postgres"), "--version"],
            capture_output=True, text=True, timeout=_COMMAND_TIMEOUT, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"\b(\d+)(?:\.\d+)?", out)
    return int(match.group(1)) if match else None


def _complete(bindir: str) -> bool:
    return all(os.access(os.path.join(bindir, name), os.X_OK) for name in _NEEDED)


def find_bindir() -> tuple[str, int]:
    """Return (bin directory, major version): the override, else PostgreSQL 15, else the newest installed, else PATH."""
    override = os.environ.get(BINDIR_ENV)
    if override:
        candidates = [override]
    else:
        def version_key(path: str) -> tuple[int, float]:
            name = Path(path).parent.name  # /usr/lib/postgresql/<version>/bin
            try:
                number = float(name)
            except ValueError:
                number = -1.0
            return (0 if name == str(PREFERRED_MAJOR) else 1, -number)

        candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version_key)
        on_path = shutil.which("initdb")
        if on_path:
            # /usr/local/bin/initdb may be a symlink into the real bin directory, which also holds psql etc.
            candidates += [os.path.dirname(os.path.realpath(on_path)), os.path.dirname(on_path)]
    for bindir in candidates:
        if _complete(bindir):
            major = _major_version(bindir)
            if major is not None:
                return bindir, major
    where = override or "/usr/lib/postgresql/*/bin or PATH"
    raise PostgresUnavailable(f"no directory with {', '.join(_NEEDED)} found in {where}")


def _server_os_user() -> pwd.struct_passwd | None:
    """The Linux user to run initdb and the server as, or None to run them as ourselves (not root)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", FALLBACK_OS_USER):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            pass
    try:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", FALLBACK_OS_USER],
            capture_output=True, text=True, timeout=_COMMAND_TIMEOUT, check=True,
        )
        return pwd.getpwnam(FALLBACK_OS_USER)
    except (OSError, subprocess.SubprocessError, KeyError) as exc:
        detail = getattr(exc, "stderr", "") or exc
        raise PostgresUnavailable(f"running as root, no 'postgres' user, and creating {FALLBACK_OS_USER} failed: {detail}")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _clean_env(**extra: str) -> dict[str, str]:
    """Our environment without PG* variables (PGHOST, PGOPTIONS, PGSERVICE... must not redirect psql)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(LC_ALL="C", LANG="C", PGCONNECT_TIMEOUT="10")
    env.update(extra)
    return env


@dataclass
class PostgresServer:
    bindir: str
    major: int
    base: str  # temporary directory: data/, server.log and the Unix socket
    port: int
    os_user: pwd.struct_passwd | None
    _stopped: bool = field(default=False, repr=False)

    @property
    def datadir(self) -> str:
        return os.path.join(self.base, "data")

    @property
    def logfile(self) -> str:
        return os.path.join(self.base, "server.log")

    @property
    def socket_dir(self) -> str:
        return self.base

    def _as_server_user(self, args: list[str], what: str) -> subprocess.CompletedProcess:
        kwargs: dict = {}
        env = _clean_env()
        if self.os_user is not None:
            kwargs.update(user=self.os_user.pw_uid, group=self.os_user.pw_gid, extra_groups=[])
            env.update(HOME=self.base, USER=self.os_user.pw_name, LOGNAME=self.os_user.pw_name)
        try:
            return subprocess.run(
                args, cwd=self.base, env=env, capture_output=True, text=True,
                timeout=_COMMAND_TIMEOUT, check=True, **kwargs,
            )
        except subprocess.CalledProcessError as exc:
            raise PostgresUnavailable(f"{what} failed (exit {exc.returncode}): {(exc.stderr or exc.stdout).strip()}")
        except (OSError, subprocess.SubprocessError) as exc:
            raise PostgresUnavailable(f"{what} failed: {exc}")

    def _log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(Path(self.logfile).read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"

    def initdb(self) -> None:
        self._as_server_user(
            [os.path.join(self.bindir, "initdb"), "-D", self.datadir, "-U", SUPERUSER, "-A", "trust",
             "-E", "UTF8", "--locale=C", "--no-sync"],
            "initdb",
        )

    def start(self) -> None:
        options = " ".join(shlex.quote(opt) for opt in [
            "-c", "listen_addresses=127.0.0.1",
            "-c", f"port={self.port}",
            "-c", f"unix_socket_directories={self.socket_dir}",
            "-c", "fsync=off",
            "-c", "synchronous_commit=off",
            "-c", "full_page_writes=off",
        ])
        try:
            self._as_server_user(
                [os.path.join(self.bindir, "pg_ctl"), "start", "-D", self.datadir, "-l", self.logfile,
                 "-w", "-t", "30", "-o", options],
                "pg_ctl start",
            )
        except PostgresUnavailable as exc:
            raise PostgresUnavailable(f"{exc}\nserver log:\n{self._log_tail()}")

    def stop(self) -> None:
        """Stop the server (immediate mode: nothing here is worth a checkpoint) and remove its directory."""
        if self._stopped:
            return
        self._stopped = True
        try:
            self._as_server_user(
                [os.path.join(self.bindir, "pg_ctl"), "stop", "-D", self.datadir, "-m", "immediate", "-w"],
                "pg_ctl stop",
            )
        except PostgresUnavailable:
            self._kill_postmaster()
        finally:
            shutil.rmtree(self.base, ignore_errors=True)

    def _kill_postmaster(self) -> None:
        """Last resort when pg_ctl stop failed: SIGQUIT (immediate shutdown) to the postmaster we started."""
        try:
            pid = int(Path(self.datadir, "postmaster.pid").read_text().split("\n", 1)[0])
            os.kill(pid, signal.SIGQUIT)
        except (OSError, ValueError):
            pass

    def psql(self, sql: str | None = None, *, db: str = "postgres", file: str | os.PathLike | None = None,
             single_transaction: bool = False) -> str:
        """Run `sql` (fed on stdin) or `file` in database `db`; return the rows as `a|b` lines, stripped.

        Raises PsqlError on any SQL error (ON_ERROR_STOP); with single_transaction (`-1`) nothing is committed then.
        """
        if (sql is None) == (file is None):
            raise ValueError("give exactly one of sql and file")
        cmd = [
            os.path.join(self.bindir, "psql"), "-X", "-q", "-A", "-t",
            "-v", "ON_ERROR_STOP=1", "-v", "VERBOSITY=verbose",
            "-h", self.socket_dir, "-p", str(self.port), "-U", SUPERUSER, "-d", db,
        ]
        if single_transaction:
            cmd.append("-1")
        cmd += ["-f", os.fspath(file) if file is not None else "-"]
        proc = subprocess.run(cmd, input=sql, env=_clean_env(), capture_output=True, text=True,
                              timeout=_COMMAND_TIMEOUT)
        if proc.returncode != 0:
            raise PsqlError(proc.returncode, proc.stderr, os.fspath(file) if file is not None else repr(sql))
        return proc.stdout.strip()

    def create_database(self, name: str) -> "Database":
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
            raise ValueError(f"unsafe database name {name!r}")
        self.psql(f"create database {name}")
        return Database(self, name)


@dataclass
class Database:
    server: PostgresServer
    name: str

    def psql(self, sql: str | None = None, **kwargs) -> str:
        return self.server.psql(sql, db=self.name, **kwargs)


def start_server(attempts: int = 3) -> PostgresServer:
    """Start a fresh server; raise PostgresUnavailable (with the reason) if that is not possible."""
    bindir, major = find_bindir()
    os_user = _server_os_user()
    # Unix socket paths are limited to ~107 bytes: stay in a short directory.
    parent = tempfile.gettempdir()
    if len(parent) > 40:
        parent = "/tmp"
    base = tempfile.mkdtemp(prefix="ha-pg-", dir=parent)
    server = PostgresServer(bindir=bindir, major=major, base=base, port=0, os_user=os_user)
    try:
        if os_user is not None:
            os.chown(base, os_user.pw_uid, os_user.pw_gid)
        server.initdb()
        for attempt in range(1, attempts + 1):
            # Another process may take the free port between our probe and the server's bind: try another.
            server.port = _free_port()
            try:
                server.start()
                break
            except PostgresUnavailable:
                if attempt == attempts:
                    raise
        server.psql("select 1")
    except (PostgresUnavailable, PsqlError, OSError) as exc:
        server.stop()
        raise PostgresUnavailable(f"{exc} (binaries: {bindir}, PostgreSQL {major})") from exc
    return server
