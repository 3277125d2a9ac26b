"""`login` and `logout`: check credentials against a registry, then keep them in config.json."""

from __future__ import annotations

from cais.registry.client import Registry
from cais.registry.credentials import Credentials, CredentialStore
from cais.registry.errors import RegistryError
from cais.registry.hosts import HostsError, RegistryHosts


async def login(domain: str, credentials: Credentials, *, hosts: RegistryHosts | None = None,
                store: CredentialStore | None = None) -> None:
    """Authenticate to `domain` (never to a mirror) and, if that works, store the credentials.

    Raises Unauthorized for wrong credentials; nothing is stored then.
    """
    hosts = hosts or RegistryHosts()
    try:
        endpoints = [e for e in hosts.endpoints(domain) if not e.mirror]
    except HostsError as e:
        raise RegistryError(str(e)) from None
    async with Registry(domain, hosts=hosts, credentials=credentials, endpoints=endpoints) as registry, \
            registry.request("GET", "/v2/", scopes=(), what=f"login to {domain}"):
        pass
    (store or CredentialStore()).store(domain, credentials)


def logout(domain: str, store: CredentialStore | None = None) -> bool:
    """Forget the credentials for `domain`; False when there were none."""
    return (store or CredentialStore()).erase(domain)
