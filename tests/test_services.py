"""Services: each client built once per run, even when worker threads ask for it at the same moment."""

import threading
import time

from hosting_automator.services import Services, built_once


def test_built_once_builds_one_client_when_threads_race():
    built = []

    class Holder:
        @built_once
        def client(self):
            built.append(1)
            time.sleep(0.05)  # a slow build (imports, a connection pool) widens the race
            return object()

    holder = Holder()
    barrier = threading.Barrier(8)
    seen = []

    def ask():
        barrier.wait()
        seen.append(holder.client)

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(built) == 1
    assert len({id(client) for client in seen}) == 1


def test_services_share_one_http_session_between_matomo_and_the_gateway(tmp_path):
    from hosting_automator.core.config import load_settings
    from hosting_automator.core.retry import RetryPolicy

    settings = load_settings(environ={"SUPABASE_URL": "https://p.supabase.co", "SUPABASE_SERVICE_KEY": "k" * 20,
                                      "MATOMO_API_URL": "https://m.example", "MATOMO_API_TOKEN": "t" * 20,
                                      "CLOUDPANEL_API_URL": "https://panel.example:3000",
                                      "CLOUDPANEL_API_TOKEN": "g" * 20})
    services = Services(settings, RetryPolicy())
    assert services.matomo.session is services.cloudpanel.session is services.http
    assert services.cloudpanel is services.cloudpanel
