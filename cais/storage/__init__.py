"""Storage drivers: layers on disk and a container's root filesystem made of them.

`overlay` (OverlayFS, overlay2-style) and `vfs` (full copies) implement one interface
(driver.py); the image store and the engine depend on that interface only.
"""

from cais.storage.driver import DRIVERS, Change, DiffResult, Driver, open_driver
from cais.storage.errors import InvalidLayer, LayerExists, LayerNotFound, LayerTooLarge, StorageError

__all__ = ["DRIVERS", "Change", "DiffResult", "Driver", "open_driver", "InvalidLayer", "LayerExists",
           "LayerNotFound", "LayerTooLarge", "StorageError"]
