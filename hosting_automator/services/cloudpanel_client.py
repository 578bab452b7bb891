"""CloudPanel: static sites and Let's Encrypt certificates, through local `clpctl` or a clpctl HTTP gateway."""

import errno
import hashlib
import json
import logging
import os
import re
import secrets
import signal
import sqlite3
import string
import subprocess
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple
from urllib.parse import quote

from hosting_automator.core.http import body_excerpt, header_retry_after, retry_after_seconds, send
from hosting_automator.masking import secret_values
from hosting_automator.errors import CertificateError, CloudPanelError, CloudPanelSetupError

if TYPE_CHECKING:
    import requests

    from hosting_automator.core.retry import RetryPolicy
    from hosting_automator.services.served_certificate import ServedCertificate

logger = logging.getLogger(__name__)

SITE_COMMAND_TIMEOUT = 180  # seconds; adding a site creates a Linux user and reloads nginx
CERTIFICATE_COMMAND_TIMEOUT = 600  # each ACME challenge may wait 90 s, and there are two names
GATEWAY_CLPCTL_LIMIT = 120  # seconds: the gateway kills every clpctl it runs after this, certificates included
GATEWAY_ANSWER_MARGIN = 10  # for the gateway to answer after its clpctl ended
PASSWORD_LENGTH = 32
_PASSWORD_ALPHABET = string.ascii_letters + string.digits

SITE_ADDED = "has been added"
CERTIFICATE_INSTALLED = "Certificate installation was successful"
DOMAIN_EXISTS = "domainName: This value already exists"
SITE_USER_EXISTS = "siteUser: This value already exists"
KILLED_OR_SILENT = "Command failed: "  # the gateway's answer for a clpctl that printed nothing, killed or not
SITE_USER = re.compile(r"^[a-z][-a-z0-9_]{2,31}$")  # CloudPanel's rule for a site user


def site_user_for(domain: str) -> str:
    """The CloudPanel site user of `domain`: readable, always the same for one domain, never shared by two.

    CloudPanel wants ^[a-z][-a-z0-9_]+$ and 3 to 32 characters: up to 19 characters of the name, then 12 hex
    digits of its SHA-256 (48 bits: a clash needs some ten million domains on one server).
    """
    readable = re.sub(r"[^a-z0-9]+", "-", domain.lower()).strip("-")[:19].rstrip("-")
    if not readable or not readable[0].isalpha():
        readable = ("s" + readable)[:19].rstrip("-")
    digest = hashlib.sha256(domain.encode("utf-8")).hexdigest()[:12]
    return f"{readable}-{digest}"


class StaticSite(NamedTuple):
    doc_root: str
    created: bool  # by this call (in a dry run: would be): a site made a moment ago cannot serve a certificate yet
    looked_up: bool = True  # False: CloudPanel could not be asked whether it exists (the gateway cannot tell)

    @property
    def site_user(self) -> str:
        return self.doc_root.split("/")[2]  # document_root() puts it there


def document_root(site_user: str, domain: str) -> str:
    return f"/home/{site_user}/htdocs/{domain}"


def new_password() -> str:
    """A throwaway password CloudPanel requires; it goes only to clpctl and is masked everywhere else."""
    password = "".join(secrets.choice(_PASSWORD_ALPHABET) for _ in range(PASSWORD_LENGTH))
    secret_values.add_generated(password)
    return password


def clpctl_reason(output: str | None, exit_code: int | None = None) -> str:
    """The part of clpctl's output that says what went wrong, on one line."""
    lines = [line.strip() for line in (output or "").splitlines() if line.strip()]
    lines = [line for line in lines if not set(line) <= set("-=[]! ")]  # Symfony's boxes around messages
    if not lines:
        return "it printed nothing" + (f" and exited with code {exit_code}" if exit_code is not None else "")
    # clpctl (or a gateway) may echo its arguments, the generated password among them; this reason ends up in
    # error messages and in the row
    return secret_values.excerpt(" ".join(lines), 300)


class CloudPanelClient:
    """What both transports share: look up, derive the site user, create, read clpctl's answer, and try each
    operation again as a whole (look up, then create) while it fails transiently."""

    def __init__(self, *, retry: "RetryPolicy", served_certificate: Callable[[str], "ServedCertificate"],
                 concurrency: int = 1) -> None:
        self.retry = retry  # a core.retry.RetryPolicy
        self.served_certificate = served_certificate  # domain -> ServedCertificate, what the server serves now
        self._slots = threading.BoundedSemaphore(concurrency)  # CloudPanel's behaviour under parallel calls is undocumented

    where_site_users_are_read = "here"

    @property
    def sees_sites(self) -> bool:
        """Whether existing_site_user can tell an existing site from a missing one."""
        return False

    def existing_site_user(self, domain: str) -> str | None:
        """The site user of `domain` when CloudPanel can tell us, else None.

        Raises:
            CloudPanelError: CloudPanel's own record of its sites cannot be read (`transient` while it is locked).
        """
        return None

    def create_static_site(self, domain: str, dry_run: bool = False) -> StaticSite:
        """Make sure a static site for `domain` exists; return it, and whether this call made it. Every attempt
        looks the site up first, and "already exists" counts as made.

        Raises:
            CloudPanelError: the site could not be looked up or made (`transient` when worth another run).
            CloudPanelSetupError: the gateway refused the token or has no such route; every site would fail.
        """
        return self.retry.call(lambda: self._find_or_add_site(domain, dry_run), "CloudPanel", service="CloudPanel",
                               error=CloudPanelError)

    def _find_or_add_site(self, domain, dry_run):
        with self._slots:
            site_user = self.existing_site_user(domain)
            if site_user:
                logger.info("CloudPanel site exists already (site user %s)", site_user)
                return StaticSite(document_root(site_user, domain), created=False)
            site_user = site_user_for(domain)
            if dry_run:
                if self.sees_sites:
                    logger.info("Would create CloudPanel site user %s (dry run: nothing changed)", site_user)
                else:
                    logger.info("Would create CloudPanel site user %s unless the site exists already: sites cannot "
                                "be looked up %s (dry run: nothing changed)", site_user, self.where_site_users_are_read)
                return StaticSite(document_root(site_user, domain), created=True, looked_up=self.sees_sites)
            password = new_password()
            try:
                said = self._add_static_site(domain, site_user, password)
            except CloudPanelError as err:
                if DOMAIN_EXISTS in str(err):
                    return self._existing_site(domain, site_user, SITE_USER_EXISTS in str(err))
                if SITE_USER_EXISTS in str(err):
                    raise CloudPanelError(
                        f"site user {site_user} exists already but not for {domain}: remove the stale "
                        f"Linux or CloudPanel user {site_user}, or the site that owns it") from err
                raise
            return self._made_site(domain, site_user, said)

    def _made_site(self, domain, site_user, said):
        """The site clpctl answered success for, judged by its effect where sites can be looked up (clpctl's
        wording is not documented, and the gateway may drop it), by clpctl's own success line where they cannot."""
        listed_user = self.existing_site_user(domain)
        if listed_user:
            logger.info("CloudPanel site created (site user %s)", listed_user)
            return StaticSite(document_root(listed_user, domain), created=True)
        if SITE_ADDED not in said:
            raise CloudPanelError(f"{self.transport_label('site:add:static')} reported no success: {clpctl_reason(said)}")
        if self.sees_sites:
            logger.warning("CloudPanel site created, clpctl says, but it is not yet found %s (site user %s)",
                           self.where_site_users_are_read, site_user)
        else:
            logger.info("CloudPanel site created (site user %s)", site_user)
        return StaticSite(document_root(site_user, domain), created=True)

    def _existing_site(self, domain, derived_user, derived_user_exists):
        """A site that exists already. Only a site user read or known is returned, never a guess: when CloudPanel's
        database cannot tell, a site this job made is known by its derived site user, which exists too (clpctl's
        validation names both); a site made by hand under another user fails the row."""
        site_user = self.existing_site_user(domain)
        if site_user:
            logger.info("CloudPanel site exists already (site user %s)", site_user)
            return StaticSite(document_root(site_user, domain), created=False)
        if derived_user_exists:
            logger.info("CloudPanel site exists already, made by this job (its site user %s exists too)",
                        derived_user)
            return StaticSite(document_root(derived_user, domain), created=False)
        raise CloudPanelError(
            f"{domain} exists in CloudPanel under a site user this job did not make, and its document root cannot "
            f"be read {self.where_site_users_are_read}: write the row's doc_root (/home/<site user>/htdocs/{domain}) "
            "and set status_hosting to active by hand, or delete the site in CloudPanel and set the row to pending")

    def provision_ssl(self, domain: str, new_site: bool = False, dry_run: bool = False) -> bool:
        """Install a Let's Encrypt certificate (it covers the name and its www./apex twin) unless a valid one is
        served already: Let's Encrypt allows five certificates per set of names a week. True when one was
        requested (in a dry run: would be).

        Every attempt looks at the served certificate first, since a request that timed out may still have
        installed one; a site made a moment ago (`new_site`) cannot serve one yet, so its first attempt does not
        look.

        Raises:
            CertificateError: the certificate was not installed: clpctl's reason, or the gateway could not be reached
                for it (`transient` when worth another run).
            CloudPanelError: clpctl is missing or cannot be run.
            CloudPanelSetupError: the gateway refused the token or has no such route; every site would fail.
        """
        look = not new_site or dry_run  # nothing was made in a dry run: a site not found may exist and serve one

        def attempt():
            nonlocal look
            if look:
                served = self.served_certificate(domain)
                if served.valid:
                    logger.info("SSL: %s; not requesting another", served.reason)
                    return False
                reason = served.reason
            else:
                reason = "the site was just created"
            look = True
            if dry_run:
                logger.info("SSL: would request a Let's Encrypt certificate (%s) (dry run: nothing changed)", reason)
                return True
            logger.info("SSL: requesting a Let's Encrypt certificate (%s)", reason)
            with self._slots:
                said = self._install_certificate(domain)
            self._confirm_certificate(domain, said)
            return True

        return self.retry.call(attempt, "SSL", service="CloudPanel", error=CertificateError)

    def _confirm_certificate(self, domain, said):
        """Installed when the endpoint now serves a valid certificate for `domain`; where it does not (nginx may not
        have reloaded yet), when clpctl said so in its own words."""
        served = self.served_certificate(domain)
        if served.valid:
            logger.info("Let's Encrypt certificate installed and served (%.0f days left)", served.days_left or 0)
        elif CERTIFICATE_INSTALLED in said:
            logger.info("Let's Encrypt certificate installed, clpctl says (not served yet: %s)", served.reason)
        else:
            raise CertificateError(f"{self.transport_label('lets-encrypt:install:certificate')} reported no success: "
                                   f"{clpctl_reason(said)}; and {served.reason}")

    def transport_label(self, command: str) -> str:
        """Who ran `command`, as error messages name it."""
        return f"clpctl {command}"

    def check(self) -> str:
        """Read-only: a line saying the transport works.

        Raises:
            CloudPanelError: it does not, and why.
            CloudPanelSetupError: the gateway refused the token or has no such route.
        """
        raise NotImplementedError

    def _add_static_site(self, domain, site_user, password):
        raise NotImplementedError

    def _install_certificate(self, domain):
        raise NotImplementedError


class ClpctlClient(CloudPanelClient):
    """Runs clpctl on this server (as root: site and certificate commands exist only for root)."""

    where_site_users_are_read = "in CloudPanel's database (CLOUDPANEL_DB_PATH, read as root)"

    def __init__(self, clpctl: str = "clpctl", db_path: str | None = None, concurrency: int = 1,
                 lock_fd: int | None = None, *, retry: "RetryPolicy",
                 served_certificate: Callable[[str], "ServedCertificate"]) -> None:
        super().__init__(retry=retry, served_certificate=served_certificate, concurrency=concurrency)
        self.clpctl = clpctl
        self.db_path = db_path
        self.lock_fd = lock_fd  # handed to every clpctl: the run lock lasts as long as the last clpctl does

    @property
    def sees_sites(self) -> bool:
        return bool(self.db_path) and os.path.exists(self.db_path)

    def existing_site_user(self, domain: str) -> str | None:
        """Read CloudPanel's own database, read-only, the way CloudPanel's scripts do.

        Raises:
            CloudPanelError: the database cannot be read (`transient` while CloudPanel keeps it locked).
        """
        if not self.db_path or not os.path.exists(self.db_path):
            return None
        try:
            connection = sqlite3.connect(f"file:{quote(self.db_path)}?mode=ro", uri=True, timeout=10)
            try:
                row = connection.execute("SELECT user FROM site WHERE domain_name = ?", (domain,)).fetchone()
            finally:
                connection.close()
        except sqlite3.OperationalError as err:
            if "locked" in str(err) or "busy" in str(err):  # CloudPanel writing it for longer than we wait
                raise CloudPanelError(f"CloudPanel's database {self.db_path} stayed locked ({err})",
                                      transient=True) from err
            raise CloudPanelError(
                f"cannot read CloudPanel's database {self.db_path} ({err}); run as root, or fix CLOUDPANEL_DB_PATH"
            ) from err
        except sqlite3.Error as err:
            raise CloudPanelError(
                f"cannot read CloudPanel's database {self.db_path} ({err}); run as root, or fix CLOUDPANEL_DB_PATH"
            ) from err
        return row[0] if row and row[0] else None

    def _add_static_site(self, domain, site_user, password):
        return self._run(["site:add:static", f"--domainName={domain}", f"--siteUser={site_user}",
                          f"--siteUserPassword={password}"], SITE_COMMAND_TIMEOUT, CloudPanelError)

    def _install_certificate(self, domain):
        return self._run(["lets-encrypt:install:certificate", f"--domainName={domain}"],
                         CERTIFICATE_COMMAND_TIMEOUT, CertificateError)

    def check(self) -> str:
        output = self._run(["--version"], 30, CloudPanelError)
        if os.geteuid() != 0:
            raise CloudPanelError(f"{clpctl_reason(output)} found, but this job runs as uid {os.geteuid()}, "
                                  "and clpctl's site and certificate commands exist only for root")
        return f"{clpctl_reason(output)}, run as root"

    def _run(self, arguments, timeout, error):
        """Run clpctl with an argument list (never a shell); its output when it exits 0 (what that output means
        is for the caller to judge)."""
        command = arguments[0]
        logger.debug("Running %s %s", self.clpctl, secret_values.mask(" ".join(arguments)))
        try:
            process = self._start([self.clpctl, *arguments])
        except OSError as err:
            if err.errno == errno.ENOEXEC:  # before v2.5.0 the wrapper's shebang line was broken
                process = self._start(["/bin/bash", self.clpctl, *arguments])
            elif err.errno == errno.ENOENT:
                raise CloudPanelError(f"clpctl not found ({self.clpctl}): is this a CloudPanel server? "
                                      "Set CLOUDPANEL_CLPCTL to its path") from err
            else:
                raise CloudPanelError(f"cannot run {self.clpctl}: {err.strerror}") from err
        try:
            output, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired as err:
            _kill_group(process)
            raise error(f"clpctl {command} did not finish within {timeout} s and was stopped") from err
        logger.debug("clpctl %s exited with %d: %s", command, process.returncode, clpctl_reason(output))
        if process.returncode < 0:  # killed by a signal (a Ctrl-C that reached it as it started): says nothing of the site
            raise error(f"clpctl {command} was stopped by {signal.Signals(-process.returncode).name} before it "
                        "finished", transient=True, may_have_acted=True)
        if process.returncode != 0:
            raise error(f"clpctl {command} failed: {clpctl_reason(output, process.returncode)}")
        return output

    def _start(self, command):
        # A session of its own: on timeout the whole group goes, and the terminal's Ctrl-C does not cut a
        # certificate request in half (main lets the step end).
        return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, errors="replace", start_new_session=True,
                                pass_fds=(self.lock_fd,) if self.lock_fd is not None else ())


def _kill_group(process):
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        process.communicate(timeout=5)
    except subprocess.TimeoutExpired:  # a grandchild that left the group still holds the pipe: stop waiting
        process.stdout.close()
        process.wait()


class GatewayClient(CloudPanelClient):
    """Talks to a clpctl HTTP gateway (cloudpanel-api), which runs clpctl through a shell and answers with its
    output, and lists the sites it finds under /home/<site user>/htdocs/<domain> (GET /lists/api/sites, which needs
    no key). It stops every clpctl after GATEWAY_CLPCTL_LIMIT."""

    where_site_users_are_read = "in the gateway's site listing (GET /lists/api/sites)"
    LABELS = {"site:add:static": "gateway: add the static site: clpctl",
              "lets-encrypt:install:certificate": "gateway: install the certificate: clpctl"}

    def __init__(self, base_url: str, api_token: str, session: "requests.Session", concurrency: int = 1, *,
                 retry: "RetryPolicy", served_certificate: Callable[[str], "ServedCertificate"]) -> None:
        super().__init__(retry=retry, served_certificate=served_certificate, concurrency=concurrency)
        base_url = base_url.rstrip("/")
        # the gateway's own README gives its base URL with /api; the routes below carry it already
        self.base_url = base_url[:-len("/api")] if base_url.endswith("/api") else base_url
        self.session = session
        self.headers = {"X-API-Key": api_token}
        self._has_listing = None  # None until asked; False: this gateway has no site listing
        self._no_listing = ""  # why, as the gateway answered

    @property
    def sees_sites(self) -> bool:
        return self._has_listing is not False

    def transport_label(self, command: str) -> str:
        return self.LABELS.get(command, f"gateway: clpctl {command}")

    def existing_site_user(self, domain: str) -> str | None:
        """The site user the gateway's listing names for `domain`, or None (also when it has no listing).

        Raises:
            CloudPanelError: the gateway could not be reached (`transient`).
        """
        if self._has_listing is False:
            return None
        sites = self._listed_sites()
        if sites is None:
            logger.warning("The gateway lists no sites (%s): a site that exists cannot be looked up, and clpctl's "
                           "words decide what happened", self._no_listing)
            return None
        for site in sites:
            if isinstance(site, dict) and str(site.get("domain") or "").lower() == domain:
                user = site.get("user")
                if isinstance(user, str) and SITE_USER.match(user):
                    return user
        return None

    def _listed_sites(self):
        """The gateway's site listing, or None when it has none (remembered for the run, with the reason)."""
        response = self._send("GET", "/lists/api/sites", "gateway: list the sites")
        try:
            sites = response.json() if response.status_code == 200 else None
        except (ValueError, RecursionError):
            sites = None
        self._has_listing = isinstance(sites, list)
        if not self._has_listing:
            self._no_listing = f"GET /lists/api/sites answered HTTP {response.status_code}: {_gateway_reason(response)}"
            return None
        return sites

    def _add_static_site(self, domain, site_user, password):
        return self._post("/api/site/add/static", {"domainName": domain, "siteUser": site_user,
                                                   "siteUserPassword": password}, "add the static site",
                          CloudPanelError)

    def _install_certificate(self, domain):
        return self._post("/api/letsencrypt/install-certificate", {"domainName": domain}, "install the certificate",
                          CertificateError)

    def check(self) -> str:
        """Read-only: the gateway answers, accepts the key, and has its routes where CLOUDPANEL_API_URL says."""
        health = self._send("GET", "/health", "gateway")
        self._refuse_setup_errors(health, "health check")
        if health.status_code != 200:
            raise CloudPanelError(f"gateway {self.base_url}/health answered HTTP {health.status_code}: "
                                  f"{_gateway_reason(health)}")
        response = self._send("GET", "/api/user/list", "gateway", headers=self.headers)
        self._refuse_setup_errors(response, "list users (read-only)")
        if response.status_code != 200:
            raise CloudPanelError(f"gateway answered HTTP {response.status_code} to a read-only request: "
                                  f"{_gateway_reason(response)}")
        sites = self._listed_sites()
        listing = (f"its site listing shows {len(sites)} sites" if sites is not None else
                   f"it lists no sites ({self._no_listing}), so a site made by hand cannot be looked up")
        return f"gateway {self.base_url} reachable, key accepted; {listing}"

    def _post(self, path, payload, what, error):
        """clpctl's output as the gateway answered it (exit 0), as lines of text."""
        # The gateway answers once clpctl is done or killed: wait a little longer than its limit, and no longer.
        response = self._send("POST", path, f"gateway: {what}", error, json=payload, headers=self.headers,
                              creates=True, timeout=GATEWAY_CLPCTL_LIMIT + GATEWAY_ANSWER_MARGIN)
        self._refuse_setup_errors(response, what)
        try:
            body = response.json()
        except (ValueError, RecursionError):  # not JSON, or nested deeper than Python reads
            body = None
        if not isinstance(body, dict):
            raise error(f"gateway: {what}: HTTP {response.status_code} with a body that is not JSON: "
                        f"{body_excerpt(response)}")
        if response.status_code == 200 and body.get("success") is True:
            return _said(body.get("data"))
        details = body.get("details")
        if response.status_code == 500 and isinstance(details, str) and details.startswith(KILLED_OR_SILENT):
            # node's own message, which the gateway gives when clpctl printed nothing: also what it answers when
            # it stopped clpctl at its limit, through a shell that leaves clpctl running to its end
            raise error(f"gateway: {what}: HTTP 500, clpctl printed nothing: the gateway answers so when it stops a "
                        f"clpctl that ran {GATEWAY_CLPCTL_LIMIT} s, and clpctl may still finish; the row is left for "
                        "the next run, which looks first", transient=True, may_have_acted=True)
        raise error(f"gateway: {what}: HTTP {response.status_code}: {_gateway_reason(response, body)}")

    def _send(self, method, path, what, error=CloudPanelError, **kwargs):
        """One request to the gateway. A redirect from its address would meet every site alike: the run stops,
        naming CLOUDPANEL_API_URL."""
        return send(self.session, method, self.base_url + path, error=error, what=what,
                    retry_after=_gateway_retry_after, setting="CLOUDPANEL_API_URL", setup_error=CloudPanelSetupError,
                    **kwargs)

    def _refuse_setup_errors(self, response, what):
        """Answers that every row would get: the run stops at the first, naming the setting. Checked before the
        body, since a proxy in front of the gateway may answer them with an HTML page."""
        if response.status_code in (401, 403):
            raise CloudPanelSetupError(f"gateway: {what}: the gateway refused CLOUDPANEL_API_TOKEN (HTTP "
                                       f"{response.status_code}): set it to the gateway's API key")
        if response.status_code in (404, 405):
            raise CloudPanelSetupError(
                f"gateway: {what}: {response.request.path_url} is not a gateway route here (HTTP "
                f"{response.status_code}: {_gateway_reason(response)}): set CLOUDPANEL_API_URL to the gateway's "
                "base URL, like https://panel.example.com:3000")


def _gateway_reason(response, body=None):
    """What the gateway said went wrong: its `details` (clpctl's output, or a list of validation messages), else
    its `error`, else the body's text."""
    if body is None:
        try:
            body = response.json()
        except (ValueError, RecursionError):
            return body_excerpt(response)
    if not isinstance(body, dict):
        return body_excerpt(response)
    details = body.get("details")
    if isinstance(details, list):
        details = "; ".join(str(item.get("msg", item)) if isinstance(item, dict) else str(item) for item in details)
    elif details is not None and not isinstance(details, str):
        details = json.dumps(details)
    return clpctl_reason(details or str(body.get("error") or "no reason given"))


def _said(data):
    """The gateway's `data` back as clpctl's lines: it gives the output as a string, a list of lines, or, when any
    line looks like "Key: value", only those lines as an object."""
    if isinstance(data, str):
        return data
    if isinstance(data, list):
        return "\n".join(str(line) for line in data)
    if isinstance(data, dict) and isinstance(data.get("output"), str) and "exitCode" in data:
        return data["output"]  # its own result object, for an empty output (its `command` holds the password)
    if isinstance(data, dict):
        return "\n".join(f"{key}: {value}" for key, value in data.items())
    return ""


def _gateway_retry_after(response):
    """The wait the gateway asks for: its Retry-After header holds what is left of its rate-limit window; the
    JSON body's `retryAfter` always says the whole window (900 s), so it counts only without the header."""
    header = header_retry_after(response)
    if header is not None:
        return header
    try:
        body = response.json()
    except (ValueError, RecursionError):
        body = None
    if isinstance(body, dict) and body.get("retryAfter") is not None:
        return retry_after_seconds(body["retryAfter"])
    return None
