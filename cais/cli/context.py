"""Where commands send their requests: caisd over its socket, or an engine started in-process.

Without a reachable daemon (and no explicit -H), the engine runs inside this process for the
duration of the command, serving the same API on a private socket — every command then works
the same way, like podman. Its containers live on under the supervisor after the command ends.
"""

from __future__ import annotations

import os
import sys

from cais.cli.client import DEFAULT_HOST, ApiError, Client


class Context:
    def __init__(self, host: str | None, *, debug: bool = False) -> None:
        self.explicit = host or os.environ.get("CAIS_HOST") or os.environ.get("DOCKER_HOST")
        self.debug = debug
        self._client: Client | None = None
        self._local = None

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = self._connect()
        return self._client

    def _connect(self) -> Client:
        from cais.cli.main import CliError
        if self.explicit:
            try:
                return Client(self.explicit)
            except ApiError as e:
                raise CliError(str(e)) from None
        client = Client(DEFAULT_HOST)
        if os.path.exists(DEFAULT_HOST[len("unix://"):]) and client.connectable():
            return client
        if os.geteuid() != 0:
            raise CliError(f"Cannot connect to the cais daemon at {DEFAULT_HOST}, and running the engine "
                           "in-process needs root")
        from cais.cli.local import LocalEngine
        from cais.daemon.config import DEFAULT_CONFIG
        self._local = LocalEngine(os.environ.get("CAIS_DATA_ROOT", "/var/lib/cais"),
                                  os.environ.get("CAIS_EXEC_ROOT", "/run/cais"),
                                  os.environ.get("CAIS_CONFIG_FILE", DEFAULT_CONFIG))
        return self._local.start()

    def close(self) -> None:
        if self._local is not None:
            self._local.stop()
            self._local = None

    def warn(self, message: str) -> None:
        print(message, file=sys.stderr)
