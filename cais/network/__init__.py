"""Network drivers: bridge, host, none (and container:NAME)."""
