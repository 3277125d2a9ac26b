"""A streaming tar reader: ustar, GNU long names and PAX headers, read straight off a pipe.

Python's tarfile can stream ("r|"), but its stream buffer is copied on every read, which makes
small-file layers slow, and it hides the byte count a size limit needs. This reader parses the
headers itself (they are simple) and hands out file data in large chunks; everything it reads
passes through a digest and a size limit (see `LimitedDigestReader`).
"""

from __future__ import annotations

import hashlib
import io
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from cais.storage.errors import InvalidLayer, LayerTooLarge

BLOCK = 512
CHUNK = 1 << 20

REG, AREG, LNK, SYM, CHR, BLK, DIR, FIFO, CONT = b"0", b"\0", b"1", b"2", b"3", b"4", b"5", b"6", b"7"
GNU_LONGNAME, GNU_LONGLINK, PAX, PAX_GLOBAL, GNU_SPARSE = b"L", b"K", b"x", b"g", b"S"
_MAX_META = 1 << 20  # bound on the long name / PAX headers of one entry, and on global ones
_ZERO_BLOCK = bytes(BLOCK)
_NO_RECORDS: dict[str, bytes] = {}


@dataclass
class Header:
    name: str
    type: bytes
    mode: int
    uid: int
    gid: int
    size: int
    mtime_ns: int
    linkname: str = ""
    devmajor: int = 0
    devminor: int = 0
    xattrs: dict[str, bytes] = field(default_factory=dict)

    @property
    def is_file(self) -> bool:
        return self.type in (REG, AREG, CONT)


class BackgroundSha256:
    """sha256 fed on a helper thread: hashlib releases the GIL on large buffers, so the digest of a
    layer is computed while the main thread writes its files. At most 16 chunks wait in line."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=16)
        self._thread = threading.Thread(target=self._run, name="cais-st-sha256", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (chunk := self._queue.get()) is not None:
            self._hash.update(chunk)

    def update(self, data: bytes) -> None:
        self._queue.put(data)

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def hexdigest(self) -> str:
        self.close()
        return self._hash.hexdigest()


class LimitedDigestReader(io.RawIOBase):
    """Hashes (sha256) and counts the bytes read through it; past `max_size` it raises LayerTooLarge.
    Every `check_every` bytes it calls `guard()` (e.g. a free-disk-space check). Close it to stop
    its hashing thread."""

    def __init__(self, src: BinaryIO, max_size: int | None, guard: Callable[[], None] | None = None,
                 check_every: int = 8 << 20) -> None:
        self._src = src
        # read1: take what the source has now instead of blocking until a whole chunk arrives
        self._read = getattr(src, "read1", src.read)
        self.sha256 = BackgroundSha256()
        self.count = 0
        self._max = max_size
        self._guard = guard
        self._check_every = check_every
        self._next_check = check_every

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self.sha256.close()
        super().close()

    def readinto(self, b) -> int:  # type: ignore[override]
        try:
            data = self._read(len(b))
        except Exception as e:  # OSError, EOFError, zlib/isal and zstandard errors: all say "corrupt"
            raise InvalidLayer(f"layer stream is corrupt: {e}") from None
        n = len(data)
        b[:n] = data
        self.sha256.update(data)
        self.count += n
        if self._max is not None and self.count > self._max:
            raise LayerTooLarge(f"layer expands beyond its limit of {self._max} bytes "
                                "(a decompression bomb, or a layer too large)")
        if self._guard is not None and self.count >= self._next_check:
            self._next_check += self._check_every
            self._guard()
        return n


def _nul_terminated(raw: bytes) -> bytes:
    return raw.partition(b"\0")[0]


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")  # os.fsdecode, minus its overhead


def _number(raw: bytes, what: str) -> int:
    """A numeric header field: NUL/space-terminated octal, or GNU base-256."""
    try:
        value = int(raw.partition(b"\0")[0], 8)  # the common case; int() ignores surrounding spaces
    except ValueError:
        pass
    else:
        if value < 0 or b"_" in raw:  # int() also takes signs and digit separators; tar does not
            raise InvalidLayer(f"invalid {what} {raw!r} in tar header")
        return value
    if raw and raw[0] & 0x80:  # GNU base-256
        if raw[0] & 0x40:
            raise InvalidLayer(f"negative {what} in tar header")
        return int.from_bytes(raw, "big", signed=False) & ~(0x80 << (8 * (len(raw) - 1)))
    text = raw.strip(b" \0").partition(b"\0")[0].strip()
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        raise InvalidLayer(f"invalid {what} {text!r} in tar header") from None


def is_tar_header(block: bytes) -> bool:
    """The header checksum: the sum of its bytes with the checksum field as spaces (unsigned, or
    signed as some old tars computed it)."""
    try:
        stored = _number(block[148:156], "checksum")
    except InvalidLayer:
        return False
    unsigned = sum(block) - sum(block[148:156]) + 8 * 32
    if stored == unsigned:
        return True
    signed = unsigned - 256 * sum(1 for b in block[:148] + block[156:] if b > 127)
    return stored == signed


def _parse_pax(data: bytes) -> dict[str, bytes]:
    records: dict[str, bytes] = {}
    pos = 0
    while pos < len(data):
        if data[pos] == 0:
            break
        space = data.find(b" ", pos)
        try:
            length = int(data[pos:space])
        except ValueError:
            raise InvalidLayer("malformed PAX header") from None
        if space < 0 or length <= 0 or pos + length > len(data) or data[pos + length - 1:pos + length] != b"\n":
            raise InvalidLayer("malformed PAX header")
        key, sep, value = data[space + 1:pos + length - 1].partition(b"=")
        if not sep:
            raise InvalidLayer("malformed PAX header")
        records[key.decode("utf-8", "surrogateescape")] = value
        pos += length
    return records


def _pax_int(value: bytes, what: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = -1
    if n < 0:
        raise InvalidLayer(f"invalid PAX {what} {value!r}")
    return n


def _pax_time_ns(value: bytes) -> int:
    text = value.decode("ascii", "replace")
    sec, _, frac = text.partition(".")
    try:
        ns = int(sec) * 1_000_000_000
        if frac:
            ns += int((frac + "000000000")[:9]) * (-1 if text.startswith("-") else 1)
    except ValueError:
        raise InvalidLayer(f"invalid PAX time {text!r}") from None
    return ns


class TarReader:
    """Iterate the headers of a tar stream; read each regular file's data with `read_data`
    before asking for the next header (unread data is skipped)."""

    def __init__(self, stream: BinaryIO) -> None:
        self._f = stream
        self._remaining = 0  # data bytes of the current entry not yet read
        self._padding = 0

    def _read_exact(self, n: int) -> bytes:
        data = self._f.read(n)
        if len(data) != n:
            raise InvalidLayer("layer tar is truncated (unexpected end of data)")
        return data

    def _skip_rest(self) -> None:
        todo = self._remaining + self._padding
        while todo:
            chunk = self._f.read(min(todo, CHUNK))
            if not chunk:
                raise InvalidLayer("layer tar is truncated (unexpected end of data)")
            todo -= len(chunk)
        self._remaining = self._padding = 0

    def read_data(self, n: int = CHUNK) -> bytes:
        """Up to `n` bytes of the current entry's data; b'' at its end."""
        n = min(n, self._remaining)
        if n <= 0:
            return b""
        data = self._f.read(n)
        if not data:
            raise InvalidLayer("layer tar is truncated (unexpected end of data)")
        self._remaining -= len(data)
        return data

    def _meta_block(self, size: int) -> bytes:
        if size > _MAX_META:
            raise InvalidLayer(f"tar metadata entry of {size} bytes is too large")
        data = self._read_exact(size)
        self._read_exact(-size % BLOCK)
        return data

    def __iter__(self) -> Iterator[Header]:
        pax: dict[str, bytes] = {}
        global_pax: dict[str, bytes] = {}
        long_name: bytes | None = None
        long_link: bytes | None = None
        meta_bytes = global_bytes = 0  # bounded, so that metadata headers cannot exhaust memory
        while True:
            self._skip_rest()
            block = self._f.read(BLOCK)
            if not block or block == _ZERO_BLOCK:
                return  # end of archive (a missing end marker is tolerated, as GNU tar does)
            if len(block) != BLOCK:
                raise InvalidLayer("layer tar is truncated (partial header)")
            if not is_tar_header(block):
                raise InvalidLayer("layer is not a valid tar archive (header checksum mismatch)")
            type_ = block[156:157]
            size = _number(block[124:136], "size")
            if type_ in (GNU_LONGNAME, GNU_LONGLINK, PAX, PAX_GLOBAL):
                meta_bytes += size
                if meta_bytes > _MAX_META:
                    raise InvalidLayer(f"tar metadata headers add up to more than {_MAX_META} bytes")
                data = self._meta_block(size)
                if type_ == GNU_LONGNAME:
                    long_name = _nul_terminated(data)
                elif type_ == GNU_LONGLINK:
                    long_link = _nul_terminated(data)
                elif type_ == PAX:
                    pax.update(_parse_pax(data))
                else:
                    global_pax.update(_parse_pax(data))
                    global_bytes += size
                continue
            records = {**global_pax, **pax} if global_pax or pax else _NO_RECORDS
            name = _nul_terminated(block[0:100])
            magic = block[257:263]
            if magic == b"ustar\0":  # POSIX ustar: a prefix for long paths
                prefix = _nul_terminated(block[345:500])
                if prefix:
                    name = prefix + b"/" + name
            if long_name is not None:
                name = long_name
            if "path" in records:
                name = records["path"]
            link = long_link if long_link is not None else _nul_terminated(block[157:257])
            if "linkpath" in records:
                link = records["linkpath"]
            if "size" in records:
                size = _pax_int(records["size"], "size")
            if type_ == GNU_SPARSE or (records and any(k.startswith("GNU.sparse.") for k in records)):
                raise InvalidLayer(f"{_decode(name)}: sparse files in layers are not supported")
            header = Header(
                name=_decode(name),
                type=type_,
                mode=_number(block[100:108], "mode") & 0o7777,
                uid=_pax_int(records["uid"], "uid") if "uid" in records else _number(block[108:116], "uid"),
                gid=_pax_int(records["gid"], "gid") if "gid" in records else _number(block[116:124], "gid"),
                size=size,
                mtime_ns=(_pax_time_ns(records["mtime"]) if "mtime" in records
                          else _number(block[136:148], "mtime") * 1_000_000_000),
                linkname=_decode(link) if link else "",
                devmajor=_number(block[329:337], "devmajor") if type_ in (CHR, BLK) else 0,
                devminor=_number(block[337:345], "devminor") if type_ in (CHR, BLK) else 0,
                xattrs={k[13:]: v for k, v in records.items() if k.startswith("SCHILY.xattr.")} if records else {},
            )
            pax = {}
            long_name = long_link = None
            meta_bytes = global_bytes
            self._remaining = size  # only regular files' data is read; any other's is skipped
            self._padding = -self._remaining % BLOCK
            yield header

    def drain(self) -> None:
        """Read to the end of the stream (trailing zero blocks count in the layer's digest)."""
        self._skip_rest()
        while self._f.read(CHUNK):
            pass
