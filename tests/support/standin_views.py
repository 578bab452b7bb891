"""What the stand-ins saw, as the end-to-end tests ask it: calls to a service, a row's outcome, how many sites
and certificates one domain got, and fault predicates for one route or method."""

from hosting_automator.services.cloudpanel_client import document_root, site_user_for
from tests.standins.clpctl_state import certificate_requests, read_sites
from tests.support.harness import matomo_sites_by_name, secret_characters


DEEP_JSON = "[" * 100_000 + "]" * 100_000  # far deeper than Python's JSON reader recurses
FAST = {"HTTP_TIMEOUT": "0.5"}


def matomo_method(request):
    return request["query"].get("method", [""])[0]


def matomo_calls(standins, method):
    return sum(matomo_method(r) == f"SitesManager.{method}" for r in standins.matomo.requests_log)


def gateway_posts(standins, route):
    return [r for r in standins.gateway.requests_log if r["method"] == "POST" and r["path"].endswith(route)]


ADD, CERTIFICATE = "/api/site/add/static", "/api/letsencrypt/install-certificate"


def to(route):
    """A fault predicate: the gateway request to `route`."""
    return lambda request: request["path"].endswith(route)


def to_matomo(method):
    return lambda request: matomo_method(request) == f"SitesManager.{method}"


def row(standins, row_id):
    return standins.postgrest.get(row_id)


def outcome(standins, row_id):
    found = row(standins, row_id)
    return found["status_hosting"], found["doc_root"], found["matomo_id"], found["error_message"]


def counts(standins, domain):
    """(CloudPanel sites, certificate orders, Matomo sites) of `domain`."""
    return (sum(site["domain_name"] == domain for site in read_sites(standins.db_path)),
            len(certificate_requests(standins.db_path, domain)), len(matomo_sites_by_name(standins).get(domain, [])))


def live_root(domain):
    return document_root(site_user_for(domain), domain)


def no_secret_in(standins, result, secrets):
    """The findings of the suite's own scan over this run, for the secrets given (name -> value)."""
    places = [("stdout", result.stdout), ("stderr", result.stderr), ("log", result.log)]
    places += [(f"row {r['id']}", r["error_message"] or "") for r in standins.postgrest.rows()]
    return secret_characters(places, secrets)


def html_page(text):
    """A proxy's or framework's error page, as a service in trouble sends it."""
    return f"<!DOCTYPE html><html><head><title>Error</title></head><body><h1>Error</h1><pre>{text}</pre></body></html>"
