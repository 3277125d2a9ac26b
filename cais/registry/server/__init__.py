"""A registry server speaking the distribution API on top of cais's content store.

Run it with `python -m cais.registry.server --addr 127.0.0.1:5000 --root DIR` (see __main__.py).
"""

from cais.registry.server.app import RegistryApp, make_app

__all__ = ["RegistryApp", "make_app"]
