"""Volumes: named and anonymous volumes over drivers (`local`), mount specs, copy-up.

`Volumes` (service.py) is the entry point; `mounts.py` turns docker's -v/--mount/--tmpfs specs
into mount points and OCI mounts; `copyup.py` fills an empty volume from the image.
"""
