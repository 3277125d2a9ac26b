"""The one exception the cgroups layer raises."""


class CgroupError(Exception):
    """A cgroup could not be created, configured, read or removed; the message is one clear line."""
