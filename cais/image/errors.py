"""Errors of the image store: one-line messages (docker's where docker has one) and an HTTP status."""

from __future__ import annotations


class ImageError(Exception):
    """An image operation failed; str() is a one-line message for the user."""

    status = 500


class ImageNotFound(ImageError):
    status = 404


class ImageConflict(ImageError):
    status = 409

    def __init__(self, message: str, used: bool = False) -> None:
        super().__init__(message)
        self.used = used  # the conflict is a container using the image


class InvalidImage(ImageError):
    status = 400

