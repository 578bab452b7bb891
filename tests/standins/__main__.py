"""Start every stand-in and write the settings the job needs: `python -m tests.standins --dir DIR [--sites N]
[--latency-ms MS] [--gateway]` (from the repository root). In-process: `start_all(dir, ...)`."""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import stat
import sys
import threading
from pathlib import Path

import trustme

from .clpctl_state import ensure_db
from .gateway import FakeGateway
from .matomo import FakeMatomo
from .postgrest import FakePostgrest
from .tls import FakeHttpsServer

FAKE_CLPCTL = Path(__file__).resolve().parent / "fake_clpctl.py"

NON_ELIGIBLE = (
    {"domain": "dns-pending.example.test", "status_dns": "pending", "status_hosting": "pending"},
    {"domain": "already-active.example.test", "status_dns": "active", "status_hosting": "active",
     "doc_root": "/home/already-active/htdocs/already-active.example.test", "matomo_id": 9999},
    {"domain": "failed-before.example.test", "status_dns": "active", "status_hosting": "failed",
     "error_message": "CloudPanel: earlier failure"},
)


class Standins:
    """Everything start_all() started. `.env` holds the job's settings; `.stop()` stops every stand-in."""

    def __init__(self, directory, postgrest, matomo, tls, gateway, ca, env, clpctl_path, db_path, control_path,
                 env_file, ca_file):
        self.dir = directory
        self.postgrest, self.matomo, self.tls, self.gateway = postgrest, matomo, tls, gateway
        self.ca = ca
        self.env = env
        self.clpctl_path = clpctl_path
        self.db_path = db_path
        self.control_path = control_path
        self.env_file = env_file
        self.ca_file = ca_file

    @property
    def servers(self):
        return [s for s in (self.postgrest, self.matomo, self.tls, self.gateway) if s is not None]

    def stop(self):
        for s in self.servers:
            s.stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def write_clpctl_wrapper(path, db_path, control_path, latency_ms=0.0, python=None):
    """An executable bash wrapper that runs the fake clpctl against db_path (env may override the paths)."""
    python = python or sys.executable
    text = (
        "#!/bin/bash\n"
        "# fake clpctl wrapper written by tests.standins\n"
        f"export FAKE_CLPCTL_DB=\"${{FAKE_CLPCTL_DB:-{db_path}}}\"\n"
        f"export FAKE_CLPCTL_CONTROL=\"${{FAKE_CLPCTL_CONTROL:-{control_path}}}\"\n"
        f"export FAKE_CLPCTL_LATENCY_MS=\"${{FAKE_CLPCTL_LATENCY_MS:-{latency_ms:g}}}\"\n"
        f"exec {shlex.quote(python)} -S {shlex.quote(str(FAKE_CLPCTL))} \"$@\"\n"
    )
    Path(path).write_text(text)
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def seed(postgrest, sites):
    for i in range(1, sites + 1):
        postgrest.insert({"domain": f"site{i}.example.test", "status_dns": "active", "status_hosting": "pending"})
    for row in NON_ELIGIBLE:
        postgrest.insert(dict(row))


def start_all(dir, sites=0, latency=0.0, gateway=False):  # noqa: A002 - the brief's name
    directory = Path(dir).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    db_path = str(directory / "clpctl.sq3")
    control_path = str(directory / "clpctl-control.json")
    ensure_db(db_path)
    ca = trustme.CA()
    ca_file = str(directory / "ca.pem")
    ca.cert_pem.write_to_path(ca_file)

    started = []
    try:
        postgrest = FakePostgrest()
        postgrest.latency = latency
        seed(postgrest, sites)
        started.append(postgrest.start())
        matomo = FakeMatomo()
        matomo.latency = latency
        started.append(matomo.start())
        tls = FakeHttpsServer(ca, db_path)
        started.append(tls.start())
        gw = None
        if gateway:
            gw = FakeGateway(db_path, control_path=control_path)
            gw.latency = latency
            started.append(gw.start())
    except BaseException:
        for s in started:
            s.stop()
        raise

    env = {
        "SUPABASE_URL": postgrest.url,
        "SUPABASE_SERVICE_KEY": postgrest.service_key,
        "MATOMO_API_URL": matomo.url + "/",
        "MATOMO_API_TOKEN": matomo.token,
        "CLOUDPANEL_HTTPS_ADDRESS": tls.address,
        "LOG_FILE": str(directory / "hosting_automator.log"),
        "LOCK_FILE": str(directory / "run.lock"),
        # so that the job (Python's ssl default context) trusts the stand-in CA's certificates
        "SSL_CERT_FILE": ca_file,
    }
    clpctl_path = None
    if gateway:
        env["CLOUDPANEL_API_URL"] = gw.url
        env["CLOUDPANEL_API_TOKEN"] = gw.api_key
    else:
        clpctl_path = str(directory / "clpctl")
        write_clpctl_wrapper(clpctl_path, db_path, control_path, latency * 1000.0)
        env["CLOUDPANEL_CLPCTL"] = clpctl_path
        env["CLOUDPANEL_DB_PATH"] = db_path
    env_file = str(directory / "standins.env")
    # SSL_CERT_FILE is OpenSSL's, not a setting of the job: it must be in the environment to count.
    settings = {k: v for k, v in env.items() if k != "SSL_CERT_FILE"}
    Path(env_file).write_text(
        "# Settings for hosting-automator against the stand-ins. For the certificate check to trust the\n"
        f"# stand-in CA, also: export SSL_CERT_FILE={ca_file}\n"
        + "".join(f"{k}={v}\n" for k, v in settings.items()))
    os.chmod(env_file, 0o600)  # it holds (test) keys: as an operator's .env should
    return Standins(str(directory), postgrest, matomo, tls, gw, ca, env, clpctl_path, db_path, control_path,
                    env_file, ca_file)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tests.standins", description=__doc__.splitlines()[0])
    parser.add_argument("--dir", required=True, help="directory for the env file, clpctl wrapper, db, log, lock")
    parser.add_argument("--sites", type=int, default=0, help="pending rows to seed (site{i}.example.test)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="latency added to every request/call")
    parser.add_argument("--gateway", action="store_true", help="serve the clpctl HTTP gateway instead of clpctl")
    args = parser.parse_args(argv)

    standins = start_all(args.dir, sites=args.sites, latency=args.latency_ms / 1000.0, gateway=args.gateway)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(f"Supabase (PostgREST): {standins.postgrest.url}  ({args.sites} pending rows + "
          f"{len(NON_ELIGIBLE)} not eligible)")
    print(f"Matomo:               {standins.matomo.url}/index.php")
    if standins.gateway:
        print(f"clpctl gateway:       {standins.gateway.url}")
    else:
        print(f"clpctl:               {standins.clpctl_path}")
    print(f"CloudPanel db:        {standins.db_path}  (control file: {standins.control_path})")
    print(f"HTTPS (certificates): {standins.tls.address}  (CA: {standins.ca_file})")
    print(f"Settings:             {standins.env_file}")
    print(f"  e.g. SSL_CERT_FILE={standins.ca_file} python -m hosting_automator.main --env-file {standins.env_file}")
    print("Serving; stop with Ctrl-C.", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        standins.stop()
        print("Stopped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
