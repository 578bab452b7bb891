"""Services: every client built once, before any worker starts, sharing one requests session."""

import dns.resolver
import pytest

from hosting_automator.check import run_checks
from hosting_automator.core.config import load_settings
from hosting_automator.core.retry import RetryPolicy
from hosting_automator.errors import DnsSetupError
from hosting_automator.services import Services
from hosting_automator.services.cloudpanel_client import ClpctlClient, GatewayClient

SETTINGS = {"SUPABASE_URL": "https://p.supabase.co", "SUPABASE_SERVICE_KEY": "k" * 20,
            "MATOMO_API_URL": "https://m.example", "MATOMO_API_TOKEN": "t" * 20}


def test_services_gateway_mode_matomo_and_the_gateway_share_the_run_session_and_retry_policy():
    retry = RetryPolicy()
    services = Services(load_settings(environ=SETTINGS | {"CLOUDPANEL_API_URL": "https://panel.example:3000",
                                                          "CLOUDPANEL_API_TOKEN": "g" * 20}), retry, workers=3)
    try:
        assert isinstance(services.cloudpanel, GatewayClient)
        assert services.matomo.session is services.cloudpanel.session is services.http
        assert services.http.timeout == 30.0
        assert services.matomo.retry is services.cloudpanel.retry is services.supabase.retry is retry
        assert services.http.get_adapter("https://m.example")._pool_maxsize == 3  # one connection per worker
    finally:
        services.close()


def test_services_without_gateway_settings_run_clpctl_here():
    services = Services(load_settings(environ=SETTINGS), RetryPolicy(), lock_fd=7)
    try:
        assert isinstance(services.cloudpanel, ClpctlClient)
        assert services.cloudpanel.lock_fd == 7
    finally:
        services.close()


def test_no_name_server_on_the_machine_and_none_set_stops_the_run_naming_dns_resolvers(monkeypatch):
    def no_resolv_conf(resolver, *args, **kwargs):  # what dnspython raises where /etc/resolv.conf names none
        raise dns.resolver.NoResolverConfiguration("no nameservers")

    monkeypatch.setattr(dns.resolver.Resolver, "read_resolv_conf", no_resolv_conf)
    settings = load_settings(environ=SETTINGS | {"SERVER_ADDRESSES": "198.51.100.7"})

    with pytest.raises(DnsSetupError) as caught:
        Services(settings, RetryPolicy())
    lines = []
    assert run_checks(settings, out=lines.append) == 1

    assert str(caught.value) == ("DNS: this machine has no name server configured (no nameservers): set "
                                 "DNS_RESOLVERS, like DNS_RESOLVERS=1.1.1.1,8.8.8.8")
    assert lines == [f"FAIL  clients: {caught.value}", "0 passed, 1 failed"]
