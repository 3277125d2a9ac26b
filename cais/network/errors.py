"""Errors of the network drivers: each message is one clear line for the user."""

from __future__ import annotations


class NetworkError(Exception):
    """A network operation failed; nothing it started is left half-made."""


class InvalidConfig(NetworkError):
    """Bad input: an invalid CIDR, overlapping subnets, a malformed -p."""


class Conflict(NetworkError):
    """The request clashes with the current state: a port in use, an address taken, a network in use."""


class NotFound(NetworkError):
    pass
