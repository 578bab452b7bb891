"""The table of three sites and the end state that the crash-resume, signal and soak tests compare a run with:
what one uninterrupted run leaves, per domain (the row, and how many CloudPanel sites, Matomo sites and
certificate requests exist for it)."""

import collections

from hosting_automator.services.cloudpanel_client import document_root, site_user_for
from tests.standins import clpctl_state
from tests.support.harness import matomo_sites_by_name

SITES = 3
DOMAINS = [f"site{i}.example.test" for i in range(1, SITES + 1)]
JOB_TIMEOUT = 60  # seconds a run of the three sites may take


def seeded(standins, sites=SITES):
    """start_all() holds three rows that are not eligible; add site1..site{sites}, pending with DNS ready."""
    for i in range(1, sites + 1):
        standins.postgrest.insert({"domain": f"site{i}.example.test", "status_dns": "active",
                                   "status_hosting": "pending"})
    return standins


def end_state(standins):
    """Everything a rerun must converge to, per domain: the row, and how many CloudPanel sites, Matomo sites and
    certificate requests exist for it. Matomo ids are compared as "the one Matomo site of this domain"."""
    cloudpanel = collections.Counter(site["domain_name"] for site in clpctl_state.read_sites(standins.db_path))
    certificates = collections.Counter(r["domain_name"] for r in clpctl_state.certificate_requests(standins.db_path))
    matomo = matomo_sites_by_name(standins)
    state = {}
    for row in standins.postgrest.rows():
        domain = row["domain"]
        matomo_id = row["matomo_id"]
        if matomo_id is not None and matomo.get(domain) == [matomo_id]:
            matomo_id = "the domain's one Matomo site"
        state[domain] = {"status_hosting": row["status_hosting"], "doc_root": row["doc_root"],
                         "error_message": row["error_message"], "matomo_id": matomo_id,
                         "cloudpanel_sites": cloudpanel[domain], "matomo_sites": len(matomo.get(domain, [])),
                         "certificate_requests": certificates[domain]}
    return state


def live(domain):
    """The end state of a site an uninterrupted run sets up."""
    return {"status_hosting": "active", "doc_root": document_root(site_user_for(domain), domain),
            "error_message": None, "matomo_id": "the domain's one Matomo site", "cloudpanel_sites": 1,
            "matomo_sites": 1, "certificate_requests": 1}
