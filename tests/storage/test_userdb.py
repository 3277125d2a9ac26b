"""cais.storage.userdb: a container's user from its passwd and group files, runc's rules."""

from __future__ import annotations

import pytest

from cais.storage.userdb import ExecUser, UserNotFound, lookup

PASSWD = """root:x:0:0:root:/root:/bin/sh
# a comment:x:5:5::/:/bin/sh
broken line
short:x:7:7
bad:x:notanumber:1::/:/bin/sh
app:x:1000:1000::/home/app:/bin/sh
"""
GROUP = """root:x:0:
wheel:x:10:root,app
app:x:1000:
extra:x:2000:app
garbage:x:nan:app
"""


def files(passwd: str | None = PASSWD, group: str | None = GROUP):  # type: ignore[no-untyped-def]
    return {"/etc/passwd": passwd, "/etc/group": group}.get


@pytest.mark.parametrize("user, expected", [
    ("", ExecUser(0, 0, [0, 10], "/root")),
    ("app", ExecUser(1000, 1000, [10, 1000, 2000], "/home/app")),
    ("1000", ExecUser(1000, 1000, [10, 1000, 2000], "/home/app")),
    ("app:extra", ExecUser(1000, 2000, [2000], "/home/app")),  # a group given: no memberships
    ("app:3000", ExecUser(1000, 3000, [3000], "/home/app")),
    ("4242", ExecUser(4242, 0, [0], "/")),  # a uid the files lack runs with gid 0
    ("4242:5", ExecUser(4242, 5, [5], "/")),
])
def test_lookup(user: str, expected: ExecUser) -> None:
    assert lookup(files(), user) == expected


def test_malformed_and_missing_files() -> None:
    for name in ("short", "bad", "a comment"):
        with pytest.raises(UserNotFound, match=f"unable to find user {name}: no matching entries in passwd file"):
            lookup(files(), name)
    with pytest.raises(UserNotFound, match="unable to find group nope: no matching entries in group file"):
        lookup(files(), "app:nope")
    assert lookup(files(None, None), "") == ExecUser(0, 0, [0], "/root")
    assert lookup(files(), "app", ["wheel", "77"]).groups == [10, 77, 1000, 2000]
    with pytest.raises(UserNotFound, match="Unable to find group nope"):
        lookup(files(), "app", ["nope"])
