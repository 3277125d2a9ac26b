"""cais: a container engine written in Python.

Layers (imports point downward only):
cli / api / daemon -> engine -> image, registry, network, volume -> storage, runtime -> linux
"""

__version__ = "0.1.0"
