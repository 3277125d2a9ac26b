"""linux.seccomp (the OCI seccomp JSON) compiled to a BPF filter by libseccomp (via pyseccomp).

pyseccomp is imported only when a config has a seccomp section, and before pivot_root (it loads
libseccomp.so from the host).
"""

from __future__ import annotations

import errno

from cais.runtime.errors import ConfigError, suppress

TYPE_CHECKING = False  # typing costs ~10 ms at startup; annotations are never evaluated
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

_OPS = {"SCMP_CMP_NE": "NE", "SCMP_CMP_LT": "LT", "SCMP_CMP_LE": "LE", "SCMP_CMP_EQ": "EQ",
        "SCMP_CMP_GE": "GE", "SCMP_CMP_GT": "GT", "SCMP_CMP_MASKED_EQ": "MASKED_EQ"}
_ARCHES = {"SCMP_ARCH_X86": "X86", "SCMP_ARCH_X86_64": "X86_64", "SCMP_ARCH_X32": "X32",
           "SCMP_ARCH_ARM": "ARM", "SCMP_ARCH_AARCH64": "AARCH64", "SCMP_ARCH_MIPS": "MIPS",
           "SCMP_ARCH_MIPS64": "MIPS64", "SCMP_ARCH_MIPS64N32": "MIPS64N32", "SCMP_ARCH_MIPSEL": "MIPSEL",
           "SCMP_ARCH_MIPSEL64": "MIPSEL64", "SCMP_ARCH_MIPSEL64N32": "MIPSEL64N32", "SCMP_ARCH_PPC": "PPC",
           "SCMP_ARCH_PPC64": "PPC64", "SCMP_ARCH_PPC64LE": "PPC64LE", "SCMP_ARCH_S390": "S390",
           "SCMP_ARCH_S390X": "S390X", "SCMP_ARCH_RISCV64": "RISCV64"}
ACTIONS = ("SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP",
           "SCMP_ACT_ERRNO", "SCMP_ACT_TRACE", "SCMP_ACT_ALLOW", "SCMP_ACT_LOG")
OPERATORS = tuple(_OPS)
ARCHES = tuple(_ARCHES)


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


def compile_filter(config: dict[str, Any], warn: Callable[[str], None]) -> Any:
    """Build (but do not load) the filter; unknown syscall names are skipped, as runc does."""
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


def load(filt: Any) -> None:
    filt.load()
