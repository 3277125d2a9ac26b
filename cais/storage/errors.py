"""Errors of the storage drivers: each carries a one-line message fit to show a user."""

from __future__ import annotations


class StorageError(Exception):
    """A storage operation failed; the message says why in one line."""


class LayerNotFound(StorageError):
    pass


class LayerExists(StorageError):
    pass


class InvalidLayer(StorageError):
    """The layer archive is malformed, or hostile (it reaches outside its own directory)."""


class LayerTooLarge(InvalidLayer):
    """The layer expands beyond its size limit (a decompression bomb, or just too big)."""
