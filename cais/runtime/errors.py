"""The runtime's errors: one base class, so callers catch RuntimeFailure and print one line."""

from __future__ import annotations


class RuntimeFailure(Exception):
    """Any failure of the runtime, with a message fit for one line of output."""


class ConfigError(RuntimeFailure):
    """config.json (or a process.json) is missing, malformed or asks for something impossible."""


class ContainerNotFound(RuntimeFailure):
    pass


class ContainerExists(RuntimeFailure):
    pass


class InvalidState(RuntimeFailure):
    """The verb does not apply to the container's current status (e.g. start of a running one)."""


class HookFailed(RuntimeFailure):
    pass


class CgroupsUnavailable(RuntimeFailure):
    pass


class suppress:  # named after contextlib.suppress, which it replaces
    """contextlib.suppress without contextlib's imports (collections, functools...: ~5 ms at every
    start of the command and of each container init, for a 5-line class)."""

    def __init__(self, *exceptions: type[BaseException]) -> None:
        self._exceptions = exceptions

    def __enter__(self) -> None:
        pass

    def __exit__(self, kind: type[BaseException] | None, value: object, traceback: object) -> bool:
        return kind is not None and issubclass(kind, self._exceptions)
