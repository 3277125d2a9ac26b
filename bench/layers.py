"""Synthetic layer content shared by the load and unpack benchmarks: reproducible payloads and tars."""

from __future__ import annotations

import io
import random
import tarfile

MTIME = 1_700_000_000


def payload(rng: random.Random, size: int) -> bytes:
    """Half random, half repetitive text: compresses about as well as binaries and text in images."""
    half = size // 2
    words = b"lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor "
    return rng.randbytes(half) + (words * (size // len(words) + 1))[: size - half]


def layer_tar(entries: list[tuple[str, bytes | None]]) -> bytes:
    """An uncompressed layer tar of (name, data) entries; data None makes a directory."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.mtime = MTIME
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                t.addfile(info)
            else:
                info.size, info.mode = len(data), 0o644
                t.addfile(info, io.BytesIO(data))
    return buf.getvalue()
