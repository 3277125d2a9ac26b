"""The OCI runtime: an OCI bundle (config.json + rootfs) becomes a running container.

`cais-runtime` (cli.py) is the runc-compatible command line over this package; the engine
uses the same package in-process.
"""
