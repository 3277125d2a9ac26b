"""The engine's errors carry the HTTP status docker gives them, so every layer reports alike."""

from __future__ import annotations


class EngineError(Exception):
    status = 500


class InvalidParameter(EngineError):
    status = 400


class NotFound(EngineError):
    status = 404


class Conflict(EngineError):
    status = 409


class NotModified(EngineError):
    status = 304


class Unsupported(EngineError):
    status = 501


def start_failure(cmd: str, message: str) -> tuple[int, EngineError]:
    """dockerd's reading of a failed start (translateContainerdStartErr): the exit code to record
    and the error to answer. The docker CLI reads the same words to pick its exit code."""
    low = message.lower()
    code, error = 128, EngineError(message)
    if cmd.lower() in low and any(s in low for s in ("executable file not found", "no such file or directory")):
        code, error = 127, InvalidParameter(message)
    if "permission denied" in low:
        code, error = 126, InvalidParameter(message)
    if "not a directory" in low:
        message += (": Are you trying to mount a directory onto a file (or vice-versa)? Check if the specified "
                    "host path exists and is the expected type")
        code, error = 127, InvalidParameter(message)
    return code, error
