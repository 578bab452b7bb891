"""Services: every client built once, before any worker starts, sharing one requests session."""

from hosting_automator.core.config import load_settings
from hosting_automator.core.retry import RetryPolicy
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
