"""GET /images/search: which registry a term names, the limit, and docker's result filters.

As dockerd does it: `DOMAIN/TERM` searches the registry DOMAIN when the first component looks like
a host (has a `.` or `:`, or is `localhost`), anything else searches Docker Hub; the limit is
1–100 (25 when not given); `is-official`, `stars` and the deprecated `is-automated` filter the
registry's answer. How a registry is searched is cais.registry.search's business.
"""

from __future__ import annotations

import asyncio

from cais.engine.errors import EngineError, InvalidParameter

DEFAULT_LIMIT = 25
FILTERS = ("is-automated", "is-official", "stars")


def split_term(term: str) -> tuple[str, str]:
    """(registry domain, term to search there)."""
    from cais.registry.hosts import DOCKER_HUB
    first, sep, rest = term.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        if first.startswith("-") or first.endswith("-"):
            raise InvalidParameter(f'invalid index name ({first}). Cannot begin or end with a hyphen.')
        return first, rest
    if first in ("docker.io", "index.docker.io"):
        return DOCKER_HUB, rest
    return DOCKER_HUB, term.removeprefix("library/")


def _bool_filter(filters: dict[str, list[str]], key: str) -> bool | None:
    values = filters.get(key)
    if not values:
        return None
    value = values[-1].lower()
    if value not in ("true", "false", "1", "0"):
        raise InvalidParameter(f"invalid filter '{key}={values[-1]}'")
    return value in ("true", "1")


def _min_stars(filters: dict[str, list[str]]) -> int | None:
    if not filters.get("stars"):
        return None
    best = 0
    for value in filters["stars"]:
        try:
            best = max(best, int(value))
        except ValueError:
            raise InvalidParameter(f"invalid filter 'stars={value}'") from None
    return best


def search(term: str, limit: int | None, filters: dict[str, list[str]], auth: dict) -> list[dict]:
    """docker's ImageSearchResponseItem list for `term`."""
    from cais.engine.images import Unauthorized, _credentials
    from cais.registry.errors import RegistryError
    from cais.registry.search import search as registry_search
    for key in filters:
        if key not in FILTERS:
            raise InvalidParameter(f"invalid filter '{key}'")
    automated, official, stars = _bool_filter(filters, "is-automated"), _bool_filter(filters, "is-official"), \
        _min_stars(filters)
    if "://" in term:
        raise InvalidParameter(f"invalid repository name: repository name ({term}) should not have a scheme")
    limit = limit or DEFAULT_LIMIT
    if not 1 <= limit <= 100:
        raise InvalidParameter(f"limit {limit} is outside the range of [1, 100]")
    if automated:  # deprecated: no repository counts as automated any more
        return []
    domain, what = split_term(term)
    try:
        results = asyncio.run(registry_search(domain, what, limit, credentials=_credentials(auth)))
    except RegistryError as e:
        error = Unauthorized if e.status == 401 else EngineError
        raise error(str(e) if domain in str(e) else f"search {domain}: {e}") from None
    return [{"name": r.name, "description": r.description, "star_count": r.star_count,
             "is_official": r.is_official, "is_automated": False}
            for r in results
            if (official is None or r.is_official == official) and (stars is None or r.star_count >= stars)]
