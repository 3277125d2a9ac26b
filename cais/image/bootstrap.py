"""Base images made offline, from the host's own packages (no registry needed).

`busybox_rootfs` lays out a minimal root filesystem from Debian's busybox-static:
the quickstart, the tests and the benchmarks all start from it. `bootstrap_busybox` turns it into
a registered image (``cais image bootstrap busybox``); `bootstrap_debian` does the same for a
minimal Debian made by debootstrap from a Debian mirror.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cais.image.store import ImageStore

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


def bootstrap_busybox(store: ImageStore, tag: str = "busybox:latest") -> str:
    """Build and register a one-layer busybox image from the host's busybox-static; its image ID.

    Reproducible: entries sorted, owned by root, modes fixed, every mtime set to the busybox
    binary's own (SOURCE_DATE_EPOCH overrides it) — the same host package gives the same digest.
    """
    import tempfile

    epoch = int(os.environ.get("SOURCE_DATE_EPOCH") or os.stat(find_busybox()).st_mtime)
    top = tempfile.mkdtemp(prefix="cais-image-bootstrap-")
    try:
        rootfs = busybox_rootfs(os.path.join(top, "rootfs"))
        _normalize_tree(rootfs)
        return _image_from_tree(store, rootfs, tag, epoch, ["sh"],
                                "cais image bootstrap busybox (from Debian busybox-static)")
    finally:
        shutil.rmtree(top, ignore_errors=True)


DEBIAN_MIRROR = "http://deb.debian.org/debian"


def bootstrap_debian(store: ImageStore, tag: str = "debian:bookworm", suite: str = "bookworm",
                     mirror: str = DEBIAN_MIRROR) -> str:
    """A minimal Debian image (debootstrap --variant=minbase) from a Debian mirror; its image ID."""
    import tempfile
    import time

    if shutil.which("debootstrap") is None:
        raise BootstrapError("debootstrap is not installed (apt-get install debootstrap)")
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH") or time.time())
    top = tempfile.mkdtemp(prefix="cais-image-debootstrap-")
    rootfs = os.path.join(top, "rootfs")
    try:
        proc = subprocess.run(["debootstrap", "--variant=minbase", suite, rootfs, mirror],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            last = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-1:] or ["no output"]
            raise BootstrapError(f"debootstrap {suite} from {mirror} failed: {last[0]}")
        for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for name in os.listdir(os.path.join(rootfs, cache)):
                path = os.path.join(rootfs, cache, name)
                if os.path.isfile(path) and not os.path.islink(path):
                    os.unlink(path)
        return _image_from_tree(store, rootfs, tag, epoch, ["bash"],
                                f"cais image bootstrap debian (debootstrap --variant=minbase {suite})")
    finally:
        _unmount_under(rootfs)
        shutil.rmtree(top, ignore_errors=True)


def _unmount_under(root: str) -> None:
    """debootstrap mounts /proc and /sys in the target; a failed run can leave them behind."""
    from cais.linux.mount import umount

    with open("/proc/self/mountinfo") as f:
        targets = [line.split()[4] for line in f]
    for target in sorted((t for t in targets if t == root or t.startswith(root + "/")), key=len, reverse=True):
        with contextlib.suppress(OSError):
            umount(target, 2)  # MNT_DETACH


def _image_from_tree(store: ImageStore, rootfs: str, tag: str, epoch: int, cmd: list[str], created_by: str) -> str:
    from cais.image.filters import format_time
    from cais.image.rootfs import DEFAULT_PATH, make_image, tar_tree

    with store.hold():
        writer = store.content.writer()
        try:
            tar_tree(rootfs, writer, mtime=epoch)  # type: ignore[arg-type]
            blob = writer.commit()
        except BaseException:
            writer.abort()
            raise
        created = format_time(epoch)
        config = {"created": created, "config": {"Env": [DEFAULT_PATH], "Cmd": cmd},
                  "history": [{"created": created, "created_by": created_by}]}
        return make_image(store, [(blob, blob, store.content.size(blob))], config, tag)


def _normalize_tree(root: str) -> None:
    """Modes and owners that do not depend on the umask or the user who ran the bootstrap."""
    special = {"tmp": 0o1777, "root": 0o700, "bin/busybox": 0o755}
    for top, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(top, name)
            rel = os.path.relpath(path, root)
            os.lchown(path, 0, 0)
            if os.path.islink(path):
                continue
            default = 0o755 if os.path.isdir(path) else 0o644
            os.chmod(path, special.get(rel, default))
