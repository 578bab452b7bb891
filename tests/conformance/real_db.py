"""The real Matomo's MariaDB, for the contract cases: taken down and brought back (started again however the block
ends, a failed assertion included, with exactly the command line it ran with, and left only once Matomo answers
again); and the failed logins of Matomo's brute force detection, which blocks 127.0.0.1 after 20 in an hour (for
every test of the tier at once), read and forgotten as Matomo's own "unblock IP" does."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import requests


def _sql(real, statement):
    """One statement through the mariadb client, as root over the database's unix socket: its rows (tab-separated)."""
    run = Path(real.matomo_dir) / "run"
    socket_path = (run / "mysql.sock.path").read_text().strip() if (run / "mysql.sock.path").is_file() \
        else str(run / "mysql.sock")
    done = subprocess.run(["mariadb", "--no-defaults", f"--socket={socket_path}", "-uroot", "-N", "-B", "matomo",
                           "-e", statement], capture_output=True, text=True, timeout=60, check=True)
    return [line.split("\t") for line in done.stdout.splitlines()]


def last_failed_login(real):
    """The id of the newest row of Matomo's brute force log (0 for none)."""
    return int(_sql(real, "SELECT COALESCE(MAX(id_brute_force_log), 0) FROM matomo_brute_force_log")[0][0])


def failed_logins_in_the_window(real, ip="127.0.0.1"):
    """Failed logins of `ip` that count now (the last 60 minutes, Matomo's default window)."""
    return int(_sql(real, "SELECT COUNT(*) FROM matomo_brute_force_log WHERE ip_address = '%s' "
                          "AND attempted_at > UTC_TIMESTAMP() - INTERVAL 60 MINUTE" % ip)[0][0])


def forget_failed_logins(real, after_id):
    """Deletes the failed logins logged after row `after_id` (those a test made: 127.0.0.1 is everyone's here)."""
    _sql(real, "DELETE FROM matomo_brute_force_log WHERE id_brute_force_log > %d" % int(after_id))


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie (our own child, not reaped yet) counts as gone
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _matomo_answers(real):
    try:
        response = requests.post(real.matomo_url + "/index.php",
                                 params={"module": "API", "method": "API.getMatomoVersion", "format": "JSON"},
                                 data={"token_auth": real.matomo_token}, timeout=10)
        return response.status_code == 200 and "value" in response.json()
    except (requests.RequestException, ValueError):
        return False


@contextlib.contextmanager
def matomo_database_down(real, stop_timeout=60.0, start_timeout=120.0):
    """SIGTERM the MariaDB of the real Matomo (its pid in DIR/run/mariadbd.pid), yield, then start it again with the
    same command line (in the background, its output to the --log-error file) and write the new pid."""
    run = Path(real.matomo_dir) / "run"
    pid_file = run / "mariadbd.pid"
    pid = int(pid_file.read_text().strip())
    argv = [part.decode() for part in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if part]
    if not argv or not argv[0].endswith("mariadbd"):
        raise RuntimeError(f"pid {pid} in {pid_file} is not a mariadbd: {argv[:1]}")
    err_file = next((a.split("=", 1)[1] for a in argv if a.startswith("--log-error=")), str(run / "mariadb.err"))
    os.kill(pid, signal.SIGTERM)
    try:
        deadline = time.monotonic() + stop_timeout
        while _alive(pid):
            if time.monotonic() > deadline:
                raise RuntimeError(f"mariadbd {pid} still runs {stop_timeout} s after SIGTERM")
            time.sleep(0.1)
        yield
    finally:
        if not _alive(pid):
            with open(err_file, "ab") as err, open(os.devnull, "rb") as null:
                started = subprocess.Popen(argv, stdin=null, stdout=err, stderr=err, start_new_session=True)
            pid_file.write_text(f"{started.pid}\n")
            deadline = time.monotonic() + start_timeout
            while not _matomo_answers(real):
                if started.poll() is not None:
                    raise RuntimeError(f"mariadbd exited ({started.returncode}) when started again: see {err_file}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"Matomo does not answer {start_timeout} s after mariadbd was started again")
                time.sleep(0.25)
