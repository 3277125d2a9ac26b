"""Registries: the OCI distribution protocol, as a client (pull/push) and as a server."""
