"""Errors of the volume layer: one-line messages (docker's where docker has one) and an HTTP status."""

from __future__ import annotations


class VolumeError(Exception):
    status = 500


class InvalidVolume(VolumeError):
    """Bad input: a name, a driver option, a mount spec."""

    status = 400


class VolumeNotFound(VolumeError):
    status = 404


class VolumeInUse(VolumeError):
    status = 409
