"""The project's one exception family: each service client raises these, main turns them into outcomes."""

from collections.abc import Iterable

from hosting_automator.masking import secret_values


class HostingAutomatorError(Exception):
    """Base of every error this project raises on purpose; its message is meant for an operator. What a service
    said goes into these messages: masked before anyone can log, print or store one."""

    def __init__(self, message: str = "") -> None:
        super().__init__(secret_values.mask(message))


class ConfigurationError(HostingAutomatorError):
    """Settings are missing or malformed; the run cannot start (exit code 2)."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = list(problems)
        super().__init__(
            "Configuration problems:\n" + "\n".join(f"  - {problem}" for problem in self.problems)
        )


class InvalidDomainError(HostingAutomatorError):
    """A row's domain cannot be served; no external call is made for it."""


class ServiceError(HostingAutomatorError):
    """A service refused or failed a request.

    transient: whether trying again later may succeed (network trouble, 429, 502/503/504).
    retry_after: seconds the service asked us to wait, when it said so.
    may_have_acted: a create reached the service and no answer came; it is not tried again in this run, since a
    look-up may not see what the service is still making.
    """

    def __init__(self, message: str, transient: bool = False, retry_after: float | None = None,
                 may_have_acted: bool = False) -> None:
        super().__init__(message)
        self.transient = transient
        self.retry_after = retry_after
        self.may_have_acted = may_have_acted


class SetupError(HostingAutomatorError):
    """A setting is wrong in a way every row would meet (a refused key, an address with no such service): the run
    stops at the first one, rows untouched, with one message naming the setting. Its own branch, apart from the
    service errors a step turns into a row's outcome, so that no step has to let it through by name."""


class ServerNameClash(SetupError):
    """Another machine claims rows under this server's SERVER_NAME: both would build the same sites."""

    def __init__(self, name: str, row_id: object, held: str, machine: str) -> None:
        super().__init__(
            f"SERVER_NAME {name} is used by two machines: row {row_id} was claimed under it by machine {held}, and "
            f"this is machine {machine}. Both would build the same sites: give each server its own SERVER_NAME "
            "(servers cloned from one image share a host name, the default). If this machine replaced that one, "
            f"clear the old machine: update sites set hosting_machine = null where hosting_server = '{name}'")


class CloudPanelError(ServiceError):
    """clpctl or the gateway refused or failed; the site fails as `CloudPanel: …`."""


class CloudPanelSetupError(SetupError):
    """The gateway refused CLOUDPANEL_API_TOKEN, or CLOUDPANEL_API_URL has none of its endpoints."""


class CertificateError(ServiceError):
    """The Let's Encrypt certificate could not be installed; the site fails as `SSL: …`."""


class MatomoError(ServiceError):
    """Matomo refused or failed; only a warning, the site still goes live."""


class DnsError(ServiceError):
    """No name server answered for a domain; the row is left as it is for the next run."""


class DnsSetupError(SetupError):
    """This machine has no name server to ask, and DNS_RESOLVERS names none."""


class SupabaseError(ServiceError):
    """Reading or writing the sites table failed."""


class SupabaseSetupError(SetupError):
    """The table, a column or the key is wrong: every request would fail the same way, so the run aborts."""


class RunInterrupted(HostingAutomatorError):
    """SIGTERM or SIGINT arrived; the site in progress is abandoned without writing its row."""
