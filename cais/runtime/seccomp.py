"""linux.seccomp (the OCI seccomp JSON) compiled to a BPF program by libseccomp (via pyseccomp).

The program is compiled before the init is cloned, by the bootstrap or by the warm zygote, and
handed to the init as bytes that it loads with one syscall (cais/linux/seccomp.py): the init never
imports pyseccomp, nor pays for libseccomp's generation of the program (~15–20 ms of CPU for docker's
profile). A zygote keeps what it compiled (Programs), so containers and execs with the same
profile reuse it. The bytes are what seccomp_load() would install: libseccomp's export of the
same filter, with the same attributes.
"""

from __future__ import annotations

import errno
import os

from cais.linux import seccomp as kernel
from cais.runtime.errors import ConfigError, suppress

TYPE_CHECKING = False  # typing costs ~10 ms at startup; annotations are never evaluated
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    Program = tuple[bytes, int, list[str]]  # the BPF program, seccomp(2)'s flags, warnings to repeat

_OPS = {"SCMP_CMP_NE": "NE", "SCMP_CMP_LT": "LT", "SCMP_CMP_LE": "LE", "SCMP_CMP_EQ": "EQ",
        "SCMP_CMP_GE": "GE", "SCMP_CMP_GT": "GT", "SCMP_CMP_MASKED_EQ": "MASKED_EQ"}
_ARCHES = {"SCMP_ARCH_X86": "X86", "SCMP_ARCH_X86_64": "X86_64", "SCMP_ARCH_X32": "X32",
           "SCMP_ARCH_ARM": "ARM", "SCMP_ARCH_AARCH64": "AARCH64", "SCMP_ARCH_MIPS": "MIPS",
           "SCMP_ARCH_MIPS64": "MIPS64", "SCMP_ARCH_MIPS64N32": "MIPS64N32", "SCMP_ARCH_MIPSEL": "MIPSEL",
           "SCMP_ARCH_MIPSEL64": "MIPSEL64", "SCMP_ARCH_MIPSEL64N32": "MIPSEL64N32", "SCMP_ARCH_PPC": "PPC",
           "SCMP_ARCH_PPC64": "PPC64", "SCMP_ARCH_PPC64LE": "PPC64LE", "SCMP_ARCH_S390": "S390",
           "SCMP_ARCH_S390X": "S390X", "SCMP_ARCH_RISCV64": "RISCV64"}
_FLAGS = {"SECCOMP_FILTER_FLAG_TSYNC": kernel.SECCOMP_FILTER_FLAG_TSYNC,
          "SECCOMP_FILTER_FLAG_LOG": kernel.SECCOMP_FILTER_FLAG_LOG,
          "SECCOMP_FILTER_FLAG_SPEC_ALLOW": kernel.SECCOMP_FILTER_FLAG_SPEC_ALLOW}
ACTIONS = ("SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP",
           "SCMP_ACT_ERRNO", "SCMP_ACT_TRACE", "SCMP_ACT_ALLOW", "SCMP_ACT_LOG")
OPERATORS = tuple(_OPS)
ARCHES = tuple(_ARCHES)
FLAGS = tuple(_FLAGS)


def _action(sc: Any, name: str, errno_ret: int | None) -> int:
    if name == "SCMP_ACT_ERRNO":
        return sc.ERRNO(errno.EPERM if errno_ret is None else errno_ret)
    if name == "SCMP_ACT_TRACE":
        return sc.TRACE(errno.EPERM if errno_ret is None else errno_ret)
    table = {"SCMP_ACT_KILL": sc.KILL, "SCMP_ACT_KILL_THREAD": sc.KILL_THREAD,
             "SCMP_ACT_KILL_PROCESS": sc.KILL_PROCESS, "SCMP_ACT_TRAP": sc.TRAP,
             "SCMP_ACT_ALLOW": sc.ALLOW, "SCMP_ACT_LOG": sc.LOG}
    if name not in table:
        raise ConfigError(f"seccomp: unsupported action {name!r}")
    return table[name]


def build_filter(config: dict[str, Any], warn: Callable[[str], None]) -> Any:
    """libseccomp's filter for CONFIG, not loaded; unknown syscall names are skipped, as runc does."""
    try:
        import pyseccomp as sc
    except (ImportError, OSError) as e:
        raise ConfigError(f"seccomp requested but libseccomp is unavailable: {e}") from None
    default = _action(sc, config.get("defaultAction", ""), config.get("defaultErrnoRet"))
    filt = sc.SyscallFilter(default)
    filt.set_attr(sc.Attr.CTL_NNP, 0)  # the runtime sets no_new_privs itself, when asked
    with suppress(OSError):  # libseccomp >= 2.5: a binary tree, not a linear list of syscalls
        filt.set_attr(sc.Attr.CTL_OPTIMIZE, 2)
    for arch in config.get("architectures", []):
        if arch not in _ARCHES:
            raise ConfigError(f"seccomp: unknown architecture {arch!r}")
        try:
            filt.add_arch(getattr(sc.Arch, _ARCHES[arch]))
        except OSError as e:
            if e.errno != errno.EEXIST:
                warn(f"seccomp: architecture {arch} unsupported here; ignored")
    for rule in config.get("syscalls", []):
        action = _action(sc, rule.get("action", ""), rule.get("errnoRet"))
        if action == default:
            continue
        args = []
        for a in rule.get("args", []):
            op = _OPS.get(a.get("op", ""))
            if op is None:
                raise ConfigError(f"seccomp: unknown operator {a.get('op')!r}")
            args.append((a["index"], sc.Arg(a["index"], getattr(sc, op), a.get("value", 0), a.get("valueTwo", 0))))
        # libseccomp wants one comparison per argument in a rule; split rules that repeat an index.
        distinct = len({i for i, _ in args}) == len(args)
        groups = [[arg for _, arg in args]] if distinct else [[arg] for _, arg in args]
        for name in rule.get("names", []):
            number = sc.resolve_syscall(sc.Arch.NATIVE, name)
            if number < 0:
                continue
            for group in groups:
                try:
                    filt.add_rule(action, number, *group)
                except OSError as e:
                    if e.errno != errno.EEXIST:  # a syscall listed twice (Podman's profile): first wins
                        raise ConfigError(f"seccomp: rule for {name}: {e.strerror}") from None
    return filt


def compile_program(config: dict[str, Any]) -> Program:
    """The BPF program of the OCI seccomp section CONFIG, its flags and the warnings it gave."""
    flags = 0
    for name in config.get("flags") or []:
        if name not in _FLAGS:
            raise ConfigError(f"seccomp: unsupported flag {name!r}")
        flags |= _FLAGS[name]
    warnings: list[str] = []
    try:
        filt = build_filter(config, warnings.append)
    except (KeyError, TypeError, ValueError, AttributeError) as e:  # a malformed section
        raise ConfigError(f"seccomp: invalid section ({type(e).__name__}: {e})") from None
    fd = os.memfd_create("cais-seccomp", os.MFD_CLOEXEC)
    try:
        filt.export_bpf(_File(fd))
        program = os.pread(fd, os.fstat(fd).st_size, 0)
    except OSError as e:
        raise ConfigError(f"seccomp: cannot compile the filter: {e.strerror or e}") from None
    finally:
        os.close(fd)
    return program, flags, warnings


class _File:
    """What pyseccomp's export_bpf() takes: something with a fileno()."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def fileno(self) -> int:
        return self.fd


class Programs:
    """A zygote's compiled programs, by the canonical JSON of their seccomp section (the most
    recent few: a daemon sees a handful of profiles, docker's default under each capability set)."""

    KEEP = 32

    def __init__(self) -> None:
        self._by_section: dict[str, Program] = {}
        self.compiled = 0  # programs compiled; the other requests were served from here
        self.reused = 0

    def get(self, config: dict[str, Any]) -> Program:
        import json

        key = json.dumps(config, sort_keys=True, separators=(",", ":"))
        program = self._by_section.pop(key, None)
        if program is None:
            program = compile_program(config)
            self.compiled += 1
            if len(self._by_section) >= self.KEEP:
                del self._by_section[next(iter(self._by_section))]  # the least recently used
        else:
            self.reused += 1
        self._by_section[key] = program  # last: the most recently used
        return program
