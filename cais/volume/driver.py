"""The volume-driver interface: where a volume's data lives and how it is made available.

The service (service.py) keeps names, labels and references; a driver only knows how to create,
mount, unmount and remove one volume's data. `local` (local.py) is the only built-in driver.
"""

from __future__ import annotations

from abc import ABC, abstractmethod


class VolumeDriver(ABC):
    name: str

    @abstractmethod
    def validate(self, options: dict[str, str]) -> None:
        """Refuse options the driver does not take (InvalidVolume), before anything is created."""

    @abstractmethod
    def create(self, name: str, options: dict[str, str]) -> None:
        """Make the volume's storage; on failure nothing is left behind."""

    @abstractmethod
    def path(self, name: str) -> str:
        """The host path containers bind (docker's Mountpoint)."""

    @abstractmethod
    def mount(self, name: str, options: dict[str, str]) -> str:
        """Make the data available at path(name) (mounting it if its options say so); the path."""

    @abstractmethod
    def unmount(self, name: str, options: dict[str, str]) -> None:
        """Undo mount() once nothing uses the volume."""

    @abstractmethod
    def remove(self, name: str, options: dict[str, str]) -> None:
        """Delete the volume's storage (never data a bind-type volume only points at)."""

    @abstractmethod
    def size(self, name: str) -> int:
        """Bytes used by the volume's data, -1 if unknown."""
