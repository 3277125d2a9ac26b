"""`cais search`: repositories of a registry matching a term, printed as `docker search` does."""

from __future__ import annotations

from cais import fastjson
from cais.cli import format as fmt
from cais.cli.args import Parser, filter_arg
from cais.cli.commands.containers import _api

COLUMNS = [("NAME", "Name"), ("DESCRIPTION", "Description"), ("STARS", "StarCount"), ("OFFICIAL", "IsOfficial")]


def _ellipsis(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _auth_header(term: str) -> dict:
    """X-Registry-Auth for the searched registry, from the stored credentials (none: anonymous)."""
    try:
        from cais.engine.search import split_term
        from cais.registry.credentials import CredentialStore
        creds = CredentialStore().get(split_term(term)[0])
    except Exception:
        return {}
    if creds is None:
        return {}
    import base64
    auth = {"username": creds.username, "password": creds.secret}
    return {"X-Registry-Auth": base64.urlsafe_b64encode(fastjson.dumps(auth).encode()).decode()}


def row(result: dict, no_trunc: bool) -> dict:
    """docker's search context: the fields `--format` templates see."""
    description = str(result.get("description") or "").replace("\n", " ").replace("\r", " ")
    return {"Name": result.get("name", ""), "Description": description if no_trunc else _ellipsis(description, 45),
            "StarCount": str(result.get("star_count", 0)), "IsOfficial": "[OK]" if result.get("is_official") else "",
            "IsAutomated": "[OK]" if result.get("is_automated") else ""}


def cmd_search(ctx, args: list[str]) -> int:  # type: ignore[no-untyped-def]
    p = Parser("search", "[OPTIONS] TERM")
    p.add_argument("-f", "--filter", action="append", default=[], type=filter_arg)
    p.add_argument("--format")
    p.add_argument("--limit", type=int, default=0)
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("term")
    opts = p.parse_args(args)
    filters: dict[str, list[str]] = {}
    for spec in opts.filter:
        key, sep, value = spec.partition("=")
        if not sep:
            p.error(f"invalid argument {spec!r} for \"-f, --filter\" flag: bad format of filter (expected name=value)")
        filters.setdefault(key.strip().lower(), []).append(value)
    params: dict = {"term": opts.term}
    if opts.limit:
        params["limit"] = opts.limit
    if filters:
        params["filters"] = fastjson.dumps(filters)
    results = _api(ctx, "GET", "/images/search", params, headers=_auth_header(opts.term))
    rows = [row(r, opts.no_trunc) for r in results or []]
    fmt.output(rows, opts.format, COLUMNS, [[r[k] for _, k in COLUMNS] for r in rows])
    return 0
