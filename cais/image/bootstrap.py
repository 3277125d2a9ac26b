"""Base images made offline, from the host's own packages (no registry needed).

`busybox_rootfs` lays out a minimal root filesystem from Debian's busybox-static:
the quickstart, the tests and the benchmarks all start from it.
"""

from __future__ import annotations

import os
import shutil
import subprocess

BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")

_PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
_GROUP = "root:x:0:\nnogroup:x:65534:\n"


class BootstrapError(Exception):
    pass


def find_busybox() -> str:
    for path in BUSYBOX_CANDIDATES:
        if os.path.isfile(path) and _is_static(path):
            return path
    raise BootstrapError(
        "no static busybox found: install Debian's busybox-static (apt-get install busybox-static)"
    )


def _is_static(path: str) -> bool:
    with open(path, "rb") as f:
        head = f.read(4096)
    return head.startswith(b"\x7fELF") and b"/lib64/ld-linux" not in head and b"/lib/ld-linux" not in head


def busybox_rootfs(dest: str) -> str:
    """Create a busybox root filesystem in `dest` (which must not exist or be empty)."""
    busybox = find_busybox()
    os.makedirs(dest, exist_ok=True)
    for d in (
        "bin",
        "sbin",
        "usr/bin",
        "usr/sbin",
        "dev",
        "etc",
        "proc",
        "sys",
        "tmp",
        "root",
        "var",
        "run",
        "home",
    ):
        os.makedirs(os.path.join(dest, d), exist_ok=True)
    os.chmod(os.path.join(dest, "tmp"), 0o1777)
    os.chmod(os.path.join(dest, "root"), 0o700)
    target = os.path.join(dest, "bin", "busybox")
    shutil.copy2(busybox, target)
    os.chmod(target, 0o755)
    applets = subprocess.run(
        [busybox, "--list-full"], check=True, capture_output=True, text=True
    ).stdout.split()
    for applet in applets:
        link = os.path.join(dest, applet)
        if applet == "bin/busybox" or os.path.lexists(link):
            continue
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink("/bin/busybox", link)
    for name, text in (("passwd", _PASSWD), ("group", _GROUP), ("hostname", "cais\n")):
        with open(os.path.join(dest, "etc", name), "w") as f:
            f.write(text)
    return dest
