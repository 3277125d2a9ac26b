"""seccomp(2): installing a classic BPF filter that is already compiled (``struct sock_fprog``).

The runtime compiles a container's filter once, with libseccomp, and loads the bytes in each
process that needs it: loading is one syscall, where libseccomp would generate the program again.
"""

from __future__ import annotations

import ctypes
import os

from cais.linux.libc import check, libc

_NR_SECCOMP = {"x86_64": 317, "aarch64": 277, "riscv64": 277, "ppc64le": 358, "s390x": 348}

SECCOMP_SET_MODE_FILTER = 1
SECCOMP_FILTER_FLAG_TSYNC = 1
SECCOMP_FILTER_FLAG_LOG = 2
SECCOMP_FILTER_FLAG_SPEC_ALLOW = 4

INSTRUCTION_SIZE = 8  # struct sock_filter: u16 code, u8 jt, u8 jf, u32 k


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def set_mode_filter(program: bytes, flags: int = 0) -> None:
    """Install PROGRAM (sock_filter instructions, native byte order) on the calling thread.

    Needs CAP_SYS_ADMIN in the caller's user namespace, or no_new_privs set first."""
    machine = os.uname().machine  # not platform's: it imports re, collections... into every init
    nr = _NR_SECCOMP.get(machine)
    if nr is None:
        raise OSError(f"seccomp: unsupported architecture {machine}")
    count, rest = divmod(len(program), INSTRUCTION_SIZE)
    if rest or not 0 < count <= 0xFFFF:  # sock_fprog.len is a u16 (the kernel's limit is 4096)
        raise ValueError(f"seccomp: {len(program)} bytes are not a BPF program")
    code = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(count, ctypes.addressof(code))
    result = libc.syscall(ctypes.c_long(nr), ctypes.c_uint(SECCOMP_SET_MODE_FILTER), ctypes.c_uint(flags),
                          ctypes.byref(fprog))
    if result > 0:  # TSYNC: the id of a thread that could not be synchronised; nothing was installed
        raise OSError(f"seccomp: thread {result} cannot take the filter (TSYNC)")
    check(result, "seccomp(SECCOMP_SET_MODE_FILTER)")
