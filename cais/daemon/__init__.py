"""caisd: the daemon that serves the API and supervises containers."""
