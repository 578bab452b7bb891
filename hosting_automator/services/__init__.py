"""One module per external service; each keeps that service's quirks to itself. `Services` builds each client
on first use and keeps it for the run."""

import threading

_building = threading.RLock()


class built_once:
    """Like functools.cached_property, but safe when worker threads race for it: since Python 3.12
    cached_property no longer locks, and two CloudPanel clients would mean two concurrency limits."""

    def __init__(self, build):
        self.build = build
        self.name = build.__name__

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, instance, owner=None):
        if instance is None:
            return self
        if self.name in instance.__dict__:
            return instance.__dict__[self.name]
        with _building:
            if self.name not in instance.__dict__:
                instance.__dict__[self.name] = self.build(instance)
        return instance.__dict__[self.name]


class Services:
    """Each client is built on first use and kept for the run: one connection pool per service."""

    def __init__(self, settings, retry, workers=1, lock_fd=None):
        self.settings = settings
        self.retry = retry
        self.workers = workers
        self.lock_fd = lock_fd

    @built_once
    def http(self):
        from hosting_automator.core.http import new_session

        return new_session(self.settings.http_timeout, pool_size=self.workers)

    @built_once
    def supabase(self):
        from hosting_automator.services.supabase_client import SupabaseClient

        s = self.settings
        return SupabaseClient(s.supabase_url, s.supabase_service_key, s.sites_table, s.http_timeout, self.retry,
                              pool_size=self.workers)

    @built_once
    def cloudpanel(self):
        from hosting_automator.services.cloudpanel_client import ClpctlClient, GatewayClient

        s = self.settings
        if s.uses_gateway:
            return GatewayClient(s.cloudpanel_api_url, s.cloudpanel_api_token, self.http, s.cloudpanel_concurrency)
        return ClpctlClient(s.cloudpanel_clpctl, s.cloudpanel_db_path, s.cloudpanel_concurrency, self.lock_fd)

    @built_once
    def matomo(self):
        from hosting_automator.services.matomo_client import MatomoClient

        s = self.settings
        return MatomoClient(s.matomo_api_url, s.matomo_api_token, self.http, self.retry,
                            s.matomo_site_timezone, s.matomo_site_currency)

    @built_once
    def _trust_store(self):
        from hosting_automator.services.served_certificate import trust_store

        return trust_store()

    def served_certificate(self, domain):
        from hosting_automator.services.served_certificate import served_certificate

        s = self.settings
        return served_certificate(domain, s.cloudpanel_https_host, s.cloudpanel_https_port, s.http_timeout,
                                  context=self._trust_store)

    def close(self):
        if "supabase" in self.__dict__:
            self.supabase.close()
        if "http" in self.__dict__:
            self.http.close()
