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
