"""bpf(2): loading a cgroup device program and attaching it to a cgroup v2 directory.

Only what the cgroups layer needs (BPF_PROG_TYPE_CGROUP_DEVICE). ``union bpf_attr`` is built
by hand as bytes at the documented offsets; the kernel accepts a shorter or longer attr as long
as unknown trailing bytes are zero.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import struct

from cais.linux.libc import check, libc

_NR_BPF = {"x86_64": 321, "aarch64": 280, "riscv64": 280, "ppc64le": 361, "s390x": 351}

BPF_PROG_LOAD = 5
BPF_PROG_ATTACH = 8
BPF_PROG_DETACH = 9
BPF_PROG_GET_FD_BY_ID = 13
BPF_PROG_QUERY = 16

BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6
BPF_F_ALLOW_MULTI = 2

_ATTR_SIZE = 128


def _bpf(cmd: int, attr: bytes | bytearray, what: str) -> tuple[int, bytearray]:
    nr = _NR_BPF.get(platform.machine())
    if nr is None:
        raise OSError(f"bpf: unsupported architecture {platform.machine()}")
    buf = ctypes.create_string_buffer(bytes(attr).ljust(_ATTR_SIZE, b"\0"), _ATTR_SIZE)
    result = libc.syscall(ctypes.c_long(nr), ctypes.c_int(cmd), buf, ctypes.c_uint(_ATTR_SIZE))
    return check(result, what), bytearray(buf.raw)


def load_device_program(insns: bytes, license: str = "Apache") -> int:
    """BPF_PROG_LOAD of a BPF_PROG_TYPE_CGROUP_DEVICE program; returns its fd.

    On refusal the verifier's log is loaded again with logging on and put in the error.
    """
    code = ctypes.create_string_buffer(insns, len(insns))
    lic = ctypes.create_string_buffer(license.encode())

    def attr(log: ctypes.Array | None) -> bytes:
        # prog_type, insn_cnt, insns, license, log_level, log_size, log_buf
        return struct.pack(
            "=IIQQIIQ",
            BPF_PROG_TYPE_CGROUP_DEVICE,
            len(insns) // 8,
            ctypes.addressof(code),
            ctypes.addressof(lic),
            1 if log is not None else 0,
            len(log) if log is not None else 0,
            ctypes.addressof(log) if log is not None else 0,
        )

    try:
        fd, _ = _bpf(BPF_PROG_LOAD, attr(None), "bpf(BPF_PROG_LOAD)")
    except OSError as e:
        log = ctypes.create_string_buffer(1 << 16)
        with contextlib.suppress(OSError):
            _bpf(BPF_PROG_LOAD, attr(log), "bpf(BPF_PROG_LOAD)")
        detail = log.value.decode(errors="replace").strip().splitlines()
        raise OSError(e.errno, f"{e.strerror}: {detail[-1] if detail else 'no verifier log'}") from None
    os.set_inheritable(fd, False)
    return fd


def attach(
    cgroup_fd: int, prog_fd: int, attach_type: int = BPF_CGROUP_DEVICE, flags: int = BPF_F_ALLOW_MULTI
) -> None:
    _bpf(
        BPF_PROG_ATTACH, struct.pack("=IIII", cgroup_fd, prog_fd, attach_type, flags), "bpf(BPF_PROG_ATTACH)"
    )


def detach(cgroup_fd: int, prog_fd: int, attach_type: int = BPF_CGROUP_DEVICE) -> None:
    _bpf(BPF_PROG_DETACH, struct.pack("=III", cgroup_fd, prog_fd, attach_type), "bpf(BPF_PROG_DETACH)")


def query(cgroup_fd: int, attach_type: int = BPF_CGROUP_DEVICE) -> list[int]:
    """IDs of the programs attached to the cgroup itself (not inherited from its parents)."""
    ids = (ctypes.c_uint32 * 64)()
    # target_fd, attach_type, query_flags, attach_flags, prog_ids, prog_cnt
    attr = struct.pack("=IIIIQI", cgroup_fd, attach_type, 0, 0, ctypes.addressof(ids), len(ids))
    _, out = _bpf(BPF_PROG_QUERY, attr, "bpf(BPF_PROG_QUERY)")
    count = struct.unpack_from("=I", out, 24)[0]
    return list(ids[: min(count, len(ids))])


def program_fd(prog_id: int) -> int:
    fd, _ = _bpf(BPF_PROG_GET_FD_BY_ID, struct.pack("=I", prog_id), "bpf(BPF_PROG_GET_FD_BY_ID)")
    os.set_inheritable(fd, False)
    return fd


def replace_device_program(cgroup_fd: int, insns: bytes) -> None:
    """Attach a new device program, then detach the ones that were there before.

    In that order, the cgroup is never without a filter: between the two steps both programs run
    and a device is allowed only if every one of them allows it.
    """
    old = query(cgroup_fd)
    fd = load_device_program(insns)
    try:
        attach(cgroup_fd, fd)
        for prog_id in old:
            old_fd = program_fd(prog_id)
            try:
                detach(cgroup_fd, old_fd)
            finally:
                os.close(old_fd)
    finally:
        os.close(fd)
