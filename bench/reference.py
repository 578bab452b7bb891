"""Reference client of the benchmark: the job's calls per site and nothing else, on the libraries the job is built
on (supabase-py for the table, one requests.Session for the gateway and Matomo, clpctl as a subprocess). bench/run.py
runs it like the job, in the same scenario, and reports the job's figures as ratios to this one's. See
bench/README.md.

    python -m bench.reference [--workers N]        (settings from the environment, as the stand-ins write them)

Per run: one supabase-py client, one requests.Session, the system trust store once (only when a probe is made);
the pending rows read in keyset pages of 1,000 (id > last id, in id order). Per site, as the job does it:

1. the row: look for other rows of its domain, then claim it (hosting_server, and hosting_machine as the job
   names this machine) while it is unassigned and still as read;
2. CloudPanel: look the site up (the gateway's GET /lists/api/sites, or CloudPanel's SQLite database read-only,
   when the file exists), add it (POST /api/site/add/static or `clpctl site:add:static`), and look it up again
   to see it made;
3. the served certificate probed over TLS only when the site existed already (a site just created cannot serve
   one; the job skips the probe then too), then `clpctl lets-encrypt:install:certificate` or
   POST /api/letsencrypt/install-certificate, and a probe after it, as the job makes to say whether it is served;
4. Matomo: SitesManager.getSitesIdFromSiteUrl, then SitesManager.addSite when none was found;
5. the row: PATCH with status_hosting = the status it was read with as a condition.

No retries, no logging, no report: a failed site is counted, named on stderr, and the exit code is 1. Prints one
JSON line on stdout: {"active": n, "failed": n, "first_errors": [...]}.
"""

import argparse
import hashlib
import hmac
import json
import os
import re
import secrets
import sqlite3
import ssl
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

import httpx
import requests
from supabase import create_client
from supabase.lib.client_options import SyncClientOptions

PAGE_SIZE = 1000
COLUMNS = "id,domain,status_hosting,hosting_server,hosting_machine,error_message"
CERTIFICATE_TIMEOUT = 600  # the job's: the gateway runs clpctl's certificate request while the caller waits
SITE_COMMAND_TIMEOUT = 180
MIN_DAYS_LEFT = 14
SITE_ADDED = "has been added"
CERTIFICATE_INSTALLED = "Certificate installation was successful"


class SiteFailed(Exception):
    pass


def site_user_for(domain):
    """The job's derivation of the CloudPanel site user (up to 19 readable characters, 12 hex digits of SHA-256)."""
    readable = re.sub(r"[^a-z0-9]+", "-", domain.lower()).strip("-")[:19].rstrip("-")
    if not readable or not readable[0].isalpha():
        readable = ("s" + readable)[:19].rstrip("-")
    return f"{readable}-{hashlib.sha256(domain.encode('utf-8')).hexdigest()[:12]}"


def machine_identity():
    """The job's name for this machine in the table: an HMAC of its machine-id, or None."""
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            machine_id = Path(path).read_text(encoding="ascii", errors="replace").strip()
        except OSError:
            continue
        if machine_id:
            return hmac.new(machine_id.encode(), b"hosting-automator", "sha256").hexdigest()[:16]
    return None


class Reference:
    def __init__(self, env, workers):
        self.timeout = float(env.get("HTTP_TIMEOUT") or 30)
        self.table_name = env.get("SITES_TABLE") or "sites"
        self.server_name = env.get("SERVER_NAME") or socket.gethostname()
        self.machine = machine_identity()
        self.supabase = create_client(
            env["SUPABASE_URL"], env["SUPABASE_SERVICE_KEY"],
            options=SyncClientOptions(httpx_client=httpx.Client(http2=False, timeout=httpx.Timeout(self.timeout)),
                                      postgrest_client_retry=False))
        self.session = requests.Session()
        if workers > 10:  # requests keeps 10 connections per host by default
            adapter = requests.adapters.HTTPAdapter(pool_maxsize=workers)
            self.session.mount("http://", adapter)
            self.session.mount("https://", adapter)
        matomo = env["MATOMO_API_URL"].rstrip("/")
        self.matomo_url = matomo if matomo.endswith("index.php") else matomo + "/index.php"
        self.matomo_token = env["MATOMO_API_TOKEN"]
        self.matomo_extra = {k: env[v] for k, v in (("timezone", "MATOMO_SITE_TIMEZONE"),
                                                    ("currency", "MATOMO_SITE_CURRENCY")) if env.get(v)}
        self.gateway = env.get("CLOUDPANEL_API_URL", "").rstrip("/") or None
        self.gateway_headers = {"X-API-Key": env.get("CLOUDPANEL_API_TOKEN", "")}
        self.clpctl = env.get("CLOUDPANEL_CLPCTL") or "clpctl"
        self.clpctl_db = env.get("CLOUDPANEL_DB_PATH", "/home/clp/htdocs/app/data/db.sq3")
        host, _, port = (env.get("CLOUDPANEL_HTTPS_ADDRESS") or "127.0.0.1:443").rpartition(":")
        self.https_address = (host.strip("[]"), int(port))
        self.cloudpanel_slots = threading.BoundedSemaphore(int(env.get("CLOUDPANEL_CONCURRENCY") or 1))
        self._trust_store = None
        self._trust_store_lock = threading.Lock()

    # -- the table -------------------------------------------------------------------------------------------------

    def pending_rows(self):
        last_id = None
        while True:
            query = (self.supabase.table(self.table_name).select(COLUMNS)
                     .eq("status_dns", "active").eq("status_hosting", "pending")
                     .or_(f"hosting_server.eq.{self.server_name},hosting_server.is.null"))
            if last_id is not None:
                query = query.gt("id", last_id)
            page = query.order("id").limit(PAGE_SIZE).execute().data
            yield from page
            if len(page) < PAGE_SIZE:
                return
            last_id = page[-1]["id"]

    def live_rows_without_matomo(self):
        return (self.supabase.table(self.table_name).select(COLUMNS)
                .eq("status_hosting", "active").is_("matomo_id", "null")
                .or_(f"hosting_server.eq.{self.server_name},hosting_server.is.null")
                .order("id").limit(PAGE_SIZE).execute().data)

    def claim(self, row):
        domain = row["domain"]
        others = (self.supabase.table(self.table_name).select("id,domain,hosting_server,status_hosting")
                  .or_(f"domain.ilike.{domain},domain.ilike.{domain}.").in_("status_hosting", ["pending", "active"])
                  .neq("id", row["id"]).order("id").limit(20).execute())
        if others.data:
            raise SiteFailed(f"row {row['id']}: another row holds the site")
        if row.get("hosting_server") is not None:
            return
        claim = {"hosting_server": self.server_name, **({"hosting_machine": self.machine} if self.machine else {})}
        answer = (self.supabase.table(self.table_name).update(claim).eq("id", row["id"])
                  .eq("status_hosting", row["status_hosting"]).is_("hosting_server", "null").execute())
        if not answer.data:
            raise SiteFailed(f"row {row['id']}: claimed by another server")

    def record(self, row, values):
        answer = (self.supabase.table(self.table_name).update(values).eq("id", row["id"])
                  .eq("status_hosting", row["status_hosting"]).eq("hosting_server", self.server_name).execute())
        if not answer.data:
            raise SiteFailed(f"row {row['id']}: the conditional update changed no row")

    # -- CloudPanel --------------------------------------------------------------------------------------------------

    def create_static_site(self, domain):
        """(document root, created by this call): looked up before the add, and after it to see it made."""
        site_user = site_user_for(domain)
        password = secrets.token_hex(16)
        with self.cloudpanel_slots:
            existing = self._existing_site_user(domain)
            if existing:
                return f"/home/{existing}/htdocs/{domain}", False
            if self.gateway:
                answer = self._gateway("/api/site/add/static", {"domainName": domain, "siteUser": site_user,
                                                                 "siteUserPassword": password}, self.timeout)
                if answer is not True:
                    raise SiteFailed(f"gateway: add the static site: {answer[:200]}")
            else:
                self._clpctl(["site:add:static", f"--domainName={domain}", f"--siteUser={site_user}",
                              f"--siteUserPassword={password}"], SITE_COMMAND_TIMEOUT, SITE_ADDED)
            made = self._existing_site_user(domain)
            if made != site_user:
                raise SiteFailed(f"the site of {domain} is not found after it was added")
            return f"/home/{made}/htdocs/{domain}", True

    def install_certificate(self, domain):
        with self.cloudpanel_slots:
            if self.gateway:
                answer = self._gateway("/api/letsencrypt/install-certificate", {"domainName": domain},
                                       CERTIFICATE_TIMEOUT)
                if answer is not True:
                    raise SiteFailed(f"gateway: install the certificate: {answer[:200]}")
                return
            self._clpctl(["lets-encrypt:install:certificate", f"--domainName={domain}"], CERTIFICATE_TIMEOUT,
                         CERTIFICATE_INSTALLED)

    def _gateway(self, path, payload, timeout):
        """True on success, else the gateway's reason as text."""
        response = self.session.post(self.gateway + path, json=payload, headers=self.gateway_headers,
                                     timeout=timeout)
        try:
            body = response.json()
        except ValueError:
            return f"HTTP {response.status_code}: {response.text[:200]}"
        if response.status_code == 200 and isinstance(body, dict) and body.get("success") is True:
            return True
        return f"HTTP {response.status_code}: {json.dumps(body)}"

    def _existing_site_user(self, domain):
        """The site user of `domain`'s site: in the gateway's site listing, or in CloudPanel's database."""
        if self.gateway:
            response = self.session.get(self.gateway + "/lists/api/sites", headers=self.gateway_headers,
                                        timeout=self.timeout)
            return next((site["user"] for site in response.json() if site.get("domain") == domain), None)
        if not self.clpctl_db or not os.path.exists(self.clpctl_db):
            return None
        connection = sqlite3.connect(f"file:{quote(self.clpctl_db)}?mode=ro", uri=True, timeout=10)
        try:
            row = connection.execute("SELECT user FROM site WHERE domain_name = ?", (domain,)).fetchone()
        finally:
            connection.close()
        return row[0] if row and row[0] else None

    def _clpctl(self, arguments, timeout, success_text):
        process = subprocess.run([self.clpctl, *arguments], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True, errors="replace", start_new_session=True,
                                 timeout=timeout)
        if process.returncode != 0 or success_text not in process.stdout:
            raise SiteFailed(f"clpctl {arguments[0]} exited {process.returncode}: {process.stdout.strip()[:200]}")

    # -- the served certificate --------------------------------------------------------------------------------------

    def certificate_served(self, domain):
        """True when a certificate valid for `domain` for MIN_DAYS_LEFT days more is served already."""
        with self._trust_store_lock:
            if self._trust_store is None:
                self._trust_store = ssl.create_default_context()
        try:
            with socket.create_connection(self.https_address, timeout=self.timeout) as raw:
                with self._trust_store.wrap_socket(raw, server_hostname=domain) as tls:
                    certificate = tls.getpeercert()
        except (ssl.SSLError, OSError):
            return False
        return ssl.cert_time_to_seconds(certificate["notAfter"]) - time.time() >= MIN_DAYS_LEFT * 86400

    # -- Matomo ------------------------------------------------------------------------------------------------------

    def matomo(self, method, params):
        response = self.session.post(self.matomo_url, params={"module": "API", "method": method, "format": "JSON"},
                                     data={**params, "token_auth": self.matomo_token}, timeout=self.timeout)
        answer = response.json()
        if response.status_code != 200 or (isinstance(answer, dict) and answer.get("result") == "error"):
            raise SiteFailed(f"Matomo {method}: HTTP {response.status_code}: {str(answer)[:200]}")
        return answer

    def tracking_site(self, domain):
        found = self.matomo("SitesManager.getSitesIdFromSiteUrl", {"url": f"https://{domain}"})
        if found:
            return int(found[0]["idsite"])
        twin = domain[4:] if domain.startswith("www.") else f"www.{domain}"
        added = self.matomo("SitesManager.addSite", {"siteName": domain, "urls[0]": f"https://{domain}",
                                                     "urls[1]": f"https://{twin}", **self.matomo_extra})
        return int(added["value"])

    # -- one site ----------------------------------------------------------------------------------------------------

    def process(self, row):
        domain = row["domain"]
        self.claim(row)
        doc_root, created = self.create_static_site(domain)
        if created or not self.certificate_served(domain):
            self.install_certificate(domain)
            self.certificate_served(domain)  # the job looks again, to say whether it is served yet
        matomo_id = self.tracking_site(domain)
        self.record(row, {"status_hosting": "active", "doc_root": doc_root, "matomo_id": matomo_id,
                          "error_message": None})


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.reference", description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=None, help="sites at once (default WORKERS, else 1)")
    args = parser.parse_args(argv)
    env = os.environ
    workers = max(1, args.workers or int(env.get("WORKERS") or 1))
    reference = Reference(env, workers)
    counts = {"active": 0, "failed": 0}
    errors = []
    counts_lock = threading.Lock()

    def one(row):
        try:
            reference.process(row)
            outcome = "active"
        except Exception as err:  # noqa: BLE001 - counted and named; the benchmark checks every row anyway
            outcome = "failed"
            print(f"reference: site {row.get('id')} {row.get('domain')!r}: {err.__class__.__name__}: {err}",
                  file=sys.stderr)
            with counts_lock:
                if len(errors) < 5:
                    errors.append(f"{row.get('domain')}: {err}")
        with counts_lock:
            counts[outcome] += 1

    if workers == 1:
        for row in reference.pending_rows():
            one(row)
    else:
        in_flight = threading.BoundedSemaphore(workers * 2)  # rows read only a little ahead of the work

        def run(row):
            try:
                one(row)
            finally:
                in_flight.release()

        with ThreadPoolExecutor(max_workers=workers) as pool:
            for row in reference.pending_rows():
                in_flight.acquire()
                pool.submit(run, row)
    reference.live_rows_without_matomo()  # the job's last read: the live sites to give their Matomo site
    reference.session.close()
    print(json.dumps({**counts, "first_errors": errors}))
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
