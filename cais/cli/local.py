"""The in-process engine: the API app served on a private socket from a background thread.

It takes from caisd's daemon.json what decides how containers are made (`userns-remap`), so a
container is the same whether caisd or the CLI made it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading


class LocalEngine:
    def __init__(self, data_root: str, exec_root: str, config_file: str) -> None:
        self.data_root = data_root
        self.exec_root = exec_root
        self.config_file = config_file
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None
        self.engine = None
        self.runner = None
        self.path = ""

    def start(self) -> str:
        from cais.api.server import Listener, make_app, start_listeners
        from cais.cli.main import CliError
        from cais.engine.engine import Engine
        from cais.engine.errors import EngineError
        from cais.engine.userns import from_config
        try:
            remap = from_config(self.config_file)
        except EngineError as e:
            raise CliError(f"cais: {e}") from None
        engine = Engine(self.data_root, self.exec_root,
                        cgroup_parent=os.environ.get("CAIS_CGROUP_PARENT", "/cais"), remap=remap)
        try:
            engine.lock()
            engine.open()
        except EngineError as e:
            engine.close()
            raise CliError(f"cais: {e}") from None
        self.engine = engine
        path = os.path.join(self.exec_root, f"cli-{os.getpid()}.sock")
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        async def serve() -> None:
            self.runner = await start_listeners(make_app(engine), [Listener("unix", path)], socket_group=None)
            ready.set()

        def run() -> None:
            assert self.loop is not None
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(serve())
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True, name="cais-local-engine")
        self.thread.start()
        ready.wait(30)
        self.path = path
        return path

    def stop(self) -> None:
        if self.loop is not None and self.runner is not None:
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(5)
            self.loop.call_soon_threadsafe(self.loop.stop)
        if self.path:
            with contextlib.suppress(OSError):
                os.unlink(self.path)
        if self.engine is not None:
            self.engine.close()
