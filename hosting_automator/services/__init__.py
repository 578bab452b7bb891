"""One module per external service; `Services` builds every client once per run, shared by all the workers."""

from hosting_automator.core.config import Settings, machine_identity
from hosting_automator.core.http import Session
from hosting_automator.core.retry import BUDGET, RetryPolicy
from hosting_automator.services.cloudpanel_client import (CERTIFICATE_COMMAND_TIMEOUT, SITE_COMMAND_TIMEOUT,
                                                          ClpctlClient, GatewayClient)
from hosting_automator.services.dns_client import DnsClient
from hosting_automator.services.matomo_client import MatomoClient
from hosting_automator.services.served_certificate import ServedCertificate, served_certificate, trust_store


def longest_run_seconds(settings: Settings) -> float:
    """How long a run can take at most: no site starts after MAX_RUN_MINUTES, and the sites in progress then end
    within their steps' own limits. Each step's retries stop at the retry budget and its last attempt at its own
    limit: the CloudPanel site (clpctl's), the certificate (clpctl's, the longest), and Matomo and the row's
    write, a few requests of HTTP_TIMEOUT each."""
    longest_site = 4 * BUDGET + SITE_COMMAND_TIMEOUT + CERTIFICATE_COMMAND_TIMEOUT + 10 * settings.http_timeout
    return settings.max_run_minutes * 60 + longest_site


class Services:
    """The run's clients: .http (the requests session), .supabase, .cloudpanel, .matomo, .served_certificate, and
    .dns with this server's .server_addresses (None and empty when DNS does not decide where sites live).

    Each service's module keeps that service's quirks to itself. The clients are built before any worker starts,
    so the workers share one connection pool and one CloudPanel limit.
    """

    def __init__(self, settings: Settings, retry: RetryPolicy, workers: int = 1, lock_fd: int | None = None) -> None:
        """Build every client from `settings`.

        Raises:
            SupabaseSetupError: when httpx or supabase-py cannot use SUPABASE_URL, the CA bundle or the
                environment's proxy variables.
            DnsSetupError: SERVER_ADDRESSES is set, DNS_RESOLVERS is not, and this machine has no name server.
        """
        # supabase-py is imported only once a run reaches Supabase: --help and a configuration error stay instant.
        from hosting_automator.services.supabase_client import SupabaseClient

        s = settings
        self.settings = settings
        self.retry = retry
        self._trust_store = trust_store()
        self.http = Session(s.http_timeout, pool_size=workers)
        self.machine = machine_identity()  # told apart from a machine cloned under the same SERVER_NAME
        self.supabase = SupabaseClient(s.supabase_url, s.supabase_service_key.get_secret_value(), s.sites_table,
                                       s.http_timeout, retry, pool_size=workers, server_name=s.server_name,
                                       machine=self.machine)
        self.server_name = s.server_name
        self.server_addresses = s.server_addresses
        self.dns = DnsClient(s.dns_resolvers, s.http_timeout) if s.server_addresses else None
        if s.uses_gateway:
            self.cloudpanel = GatewayClient(s.cloudpanel_api_url, s.cloudpanel_api_token.get_secret_value(), self.http,
                                            s.cloudpanel_concurrency, retry=retry,
                                            served_certificate=self.served_certificate)
        else:
            self.cloudpanel = ClpctlClient(s.cloudpanel_clpctl, s.cloudpanel_db_path, s.cloudpanel_concurrency, lock_fd,
                                           retry=retry, served_certificate=self.served_certificate)
        self.matomo = MatomoClient(s.matomo_api_url, s.matomo_api_token.get_secret_value(), self.http, retry,
                                   s.matomo_site_timezone, s.matomo_site_currency)

    def served_certificate(self, domain: str) -> ServedCertificate:
        """What this server's HTTPS endpoint serves for `domain` now."""
        s = self.settings
        return served_certificate(domain, s.cloudpanel_https_host, s.cloudpanel_https_port, s.http_timeout,
                                  context=self._trust_store)

    def close(self) -> None:
        self.supabase.close()
        self.http.close()
