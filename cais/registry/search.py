"""Searching a registry for repositories (`docker search`).

Docker searches through the legacy v1 API, `GET /v1/search?q=TERM&n=LIMIT`, which Docker Hub
(index.docker.io) and a few registries still serve. The OCI distribution API has no search, so
for a registry that does not answer /v1/search, cais lists its repositories with
`GET /v2/_catalog` (following the Link pagination) and keeps those whose name contains the
term; such results have no description and no stars.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from yarl import URL

from cais.registry.client import _LINK_NEXT, Registry
from cais.registry.credentials import Credentials
from cais.registry.errors import RegistryError
from cais.registry.hosts import DOCKER_HUB, Endpoint, RegistryHosts

DOCKER_HUB_INDEX = "index.docker.io"
MAX_ANSWER = 4 << 20
MAX_CATALOG_PAGES = 1000


@dataclass(frozen=True)
class SearchResult:
    name: str
    description: str = ""
    star_count: int = 0
    is_official: bool = False
    is_automated: bool = False


async def search(domain: str, term: str, limit: int, *, credentials: Credentials | None = None,
                 hosts: RegistryHosts | None = None) -> list[SearchResult]:
    """At most `limit` repositories of `domain` matching `term`.

    Names from a registry other than Docker Hub are given with the registry's domain in front
    (`localhost:5000/busybox`), so that each can be pulled as shown.
    """
    hub = domain == DOCKER_HUB
    endpoints = [Endpoint(DOCKER_HUB_INDEX)] if hub else None
    async with Registry(domain, hosts=hosts, credentials=credentials, endpoints=endpoints, timeout=60) as registry:
        await registry.ping()  # an unreachable registry fails here, not over to the catalog
        try:
            results = await _v1_search(registry, term, limit)
        except RegistryError:
            if hub:
                raise
            results = None  # no v1 API there (docker-registry answers 404)
        if results is None:
            results = await _catalog_search(registry, term, limit)
    if hub:
        return results
    prefix = domain + "/"
    return [r if r.name.startswith(prefix) else SearchResult(prefix + r.name, r.description, r.star_count,
                                                             r.is_official, r.is_automated) for r in results]


async def _get_json(registry: Registry, target: str, scopes: tuple[str, ...], what: str) -> tuple[object, str, str]:
    """(decoded body, Link header, final URL) of a small JSON answer; None as body when it is not JSON."""
    async with registry.request("GET", target, scopes=scopes, what=what, retry=False) as resp:
        body = await resp.content.read(MAX_ANSWER + 1)
        if len(body) > MAX_ANSWER:
            raise RegistryError(f"{what}: answer exceeds {MAX_ANSWER} bytes")
        try:
            value = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            value = None
        return value, resp.headers.get("Link", ""), str(resp.url)


async def _v1_search(registry: Registry, term: str, limit: int) -> list[SearchResult] | None:
    """The v1 search API's results, or None when the registry answers something else."""
    target = str(URL("/v1/search").with_query(q=term, n=str(limit)))
    value, _, _ = await _get_json(registry, target, (), f"search {registry.domain}")
    if not isinstance(value, dict) or not isinstance(value.get("results"), list):
        return None
    results = []
    for item in value["results"]:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            continue
        stars = item.get("star_count")
        results.append(SearchResult(item["name"], str(item.get("description") or ""),
                                    stars if isinstance(stars, int) else 0, item.get("is_official") is True,
                                    item.get("is_automated") is True))
    return results[:limit]


async def _catalog_search(registry: Registry, term: str, limit: int) -> list[SearchResult]:
    needle = term.lower()
    found: list[SearchResult] = []
    target = "/v2/_catalog?n=1000"
    what = f"catalog of {registry.domain}"
    for _ in range(MAX_CATALOG_PAGES):
        value, link, base = await _get_json(registry, target, ("registry:catalog:*",), what)
        repositories = value.get("repositories") if isinstance(value, dict) else None
        if not isinstance(repositories, list):
            raise RegistryError(f"{what}: the registry's answer is not a repository list")
        for name in repositories:
            if isinstance(name, str) and needle in name.lower():
                found.append(SearchResult(name))
                if len(found) >= limit:
                    return found
        m = _LINK_NEXT.search(link)
        if not m:
            break
        target = str(URL(base).join(URL(m.group(1))))
    return found
