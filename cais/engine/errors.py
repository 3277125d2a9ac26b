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
