"""GET /distribution/{name}/json: a reference's descriptor and platforms, asked of its registry."""

from __future__ import annotations

import asyncio

from cais.engine.errors import EngineError, InvalidParameter, NotFound


class Forbidden(EngineError):
    status = 403


def inspect(name: str, auth: dict) -> dict:
    from cais.engine.images import Unauthorized, _credentials
    from cais.image.reference import ReferenceError, parse
    from cais.registry.distribution import inspect as inspect_remote
    from cais.registry.errors import RegistryError
    try:
        ref = parse(name)
    except ReferenceError as e:
        raise InvalidParameter(str(e)) from None
    try:
        return asyncio.run(inspect_remote(ref, credentials=_credentials(auth)))
    except RegistryError as e:
        error = {401: Unauthorized, 403: Forbidden, 404: NotFound}.get(e.status or 500, EngineError)
        raise error(str(e)) from None
