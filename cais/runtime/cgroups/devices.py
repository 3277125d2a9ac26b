"""Device access rules (``linux.resources.devices``) on both cgroup versions.

The OCI list is first reduced, in order, to what the v1 devices controller would hold: a default
(allow or deny every device) and a list of exceptions to it. A rule for all devices with all
access resets the default; any other rule adds an exception or takes one back. v1 then writes
that state to devices.deny/devices.allow; v2 compiles it to an eBPF program of type
BPF_PROG_TYPE_CGROUP_DEVICE attached to the cgroup (v2 has no devices files), as runc does. So a
rule list means the same on both versions.
"""

from __future__ import annotations

import os

from cais.runtime.cgroups import fs
from cais.runtime.cgroups.errors import CgroupError

WILDCARD = -1


class Rule:
    """One device rule. (Not a dataclass: that module costs ~10 ms of the runtime's start.)"""

    __slots__ = ("type", "major", "minor", "access")

    def __init__(self, type: str, major: int, minor: int, access: str) -> None:
        self.type = type  # "b", "c" (or "a" for both)
        self.major = major  # WILDCARD for any
        self.minor = minor
        self.access = access  # subset of "rwm"

    def _key(self) -> tuple[str, int, int, str]:
        return self.type, self.major, self.minor, self.access

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Rule) and self._key() == other._key()

    def __repr__(self) -> str:
        return f"Rule{self._key()!r}"

    def covers(self, other: Rule) -> bool:
        return (
            self.type in ("a", other.type)
            and self.major in (WILDCARD, other.major)
            and self.minor in (WILDCARD, other.minor)
        )

    def line(self) -> str:
        major = "*" if self.major == WILDCARD else str(self.major)
        minor = "*" if self.minor == WILDCARD else str(self.minor)
        return f"{self.type} {major}:{minor} {self.access}"


class DeviceState:
    __slots__ = ("default_allow", "exceptions")

    def __init__(self, default_allow: bool, exceptions: list[Rule]) -> None:
        self.default_allow = default_allow
        self.exceptions = exceptions


def _rwm(access: str) -> str:
    return "".join(c for c in "rwm" if c in access)


def reduce(rules: list[dict], default_allow: bool = True) -> DeviceState:
    """Play the OCI rules in order, as the v1 controller would, from ``default_allow``."""
    state = DeviceState(default_allow, [])
    for raw in rules:
        kind = raw.get("type") or "a"
        major = raw.get("major", WILDCARD)
        minor = raw.get("minor", WILDCARD)
        access = _rwm(raw.get("access") or "rwm")
        allow = bool(raw["allow"])
        major = WILDCARD if major is None or major < 0 else major
        minor = WILDCARD if minor is None or minor < 0 else minor
        if kind == "a" and access == "rwm":
            state = DeviceState(allow, [])
            continue
        for t in ("b", "c") if kind == "a" else (kind,):
            rule = Rule(t, major, minor, access)
            if allow == state.default_allow:
                _take_back(state.exceptions, rule)
            else:
                _add(state.exceptions, rule)
    return state


def _add(exceptions: list[Rule], rule: Rule) -> None:
    for e in exceptions:
        if (e.type, e.major, e.minor) == (rule.type, rule.major, rule.minor):
            e.access = _rwm(e.access + rule.access)
            return
    exceptions.append(rule)


def _take_back(exceptions: list[Rule], rule: Rule) -> None:
    for e in list(exceptions):
        if rule.covers(e):
            e.access = "".join(c for c in e.access if c not in rule.access)
            if not e.access:
                exceptions.remove(e)


def apply_v1(path: str, rules: list[dict]) -> None:
    """Bring a v1 devices cgroup to the rules' state.

    From a default-deny cgroup to a default-deny state (an update of a running container) only
    the differing exceptions are written, access taken away first, so that the container never
    passes through a moment where everything, or more than either list allows, is denied or
    allowed. Otherwise the default is reset first, then the exceptions are written.
    """
    target = reduce(rules)
    current = _read_v1(path)
    if current is not None and not current.default_allow and not target.default_allow:
        have = {(e.type, e.major, e.minor): e.access for e in current.exceptions}
        want = {(e.type, e.major, e.minor): e.access for e in target.exceptions}
        for key, access in have.items():
            removed = "".join(c for c in access if c not in want.get(key, ""))
            if removed:
                fs.write(path, "devices.deny", Rule(*key, removed).line())
        for key, access in want.items():
            added = "".join(c for c in access if c not in have.get(key, ""))
            if added:
                fs.write(path, "devices.allow", Rule(*key, added).line())
        return
    if target.default_allow:
        fs.write(path, "devices.allow", "a")
        for e in target.exceptions:
            fs.write(path, "devices.deny", e.line())
    else:
        fs.write(path, "devices.deny", "a")
        for e in target.exceptions:
            fs.write(path, "devices.allow", e.line())


def _read_v1(path: str) -> DeviceState | None:
    """What devices.list shows: the exceptions of a default-deny cgroup; None for default-allow
    (whose deny exceptions the kernel does not list)."""
    exceptions = []
    for line in (fs.read_optional(path, "devices.list") or "").splitlines():
        kind, numbers, access = line.split()
        if kind == "a":
            return None
        major, minor = (WILDCARD if n == "*" else int(n) for n in numbers.split(":"))
        exceptions.append(Rule(kind, major, minor, access))
    return DeviceState(False, exceptions)


# --- v2: an eBPF program --------------------------------------------------------------------
# struct bpf_cgroup_dev_ctx { u32 access_type /* (access << 16) | type */; u32 major; u32 minor; }
_DEV_BLOCK, _DEV_CHAR = 1, 2
_ACC = {"m": 1, "r": 2, "w": 4}

# Opcodes (linux/bpf_common.h, linux/bpf.h)
_LDX_MEM_W = 0x61  # dst = *(u32 *)(src + off)
_ALU32_AND_K = 0x54
_ALU32_RSH_K = 0x74
_ALU32_MOV_X = 0xBC
_ALU64_MOV_K = 0xB7
_JNE_K = 0x55
_JEQ_K = 0x15
_JNE_X = 0x5D
_EXIT = 0x95


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return (
        code.to_bytes(1, "little")
        + ((src << 4) | dst).to_bytes(1, "little")
        + off.to_bytes(2, "little", signed=True)
        + imm.to_bytes(4, "little", signed=True)
    )


def program(state: DeviceState) -> bytes:
    """The BPF_PROG_TYPE_CGROUP_DEVICE program for a device state: returns 1 to allow, 0 to deny.

    R2 = device type, R3 = requested access, R4 = major, R5 = minor. Each exception is a block
    that falls through to the next one on the first mismatch; the last instruction returns the
    default. An allow exception must grant all the requested access; a deny exception denies as
    soon as it touches any of it (as v1 does).
    """
    insns: list[tuple[int, int, int, int | str, int]] = [
        (_LDX_MEM_W, 2, 1, 0, 0),
        (_ALU32_AND_K, 2, 0, 0, 0xFFFF),
        (_LDX_MEM_W, 3, 1, 0, 0),
        (_ALU32_RSH_K, 3, 0, 0, 16),
        (_LDX_MEM_W, 4, 1, 4, 0),
        (_LDX_MEM_W, 5, 1, 8, 0),
    ]
    verdict = 0 if state.default_allow else 1
    blocks: list[list[tuple[int, int, int, int | str, int]]] = []
    for e in state.exceptions:
        block: list[tuple[int, int, int, int | str, int]] = []
        block.append((_JNE_K, 2, 0, "next", _DEV_BLOCK if e.type == "b" else _DEV_CHAR))
        access = sum(_ACC[c] for c in e.access)
        if access != 7:
            block.append((_ALU32_MOV_X, 1, 3, 0, 0))
            block.append((_ALU32_AND_K, 1, 0, 0, access))
            if state.default_allow:
                block.append((_JEQ_K, 1, 0, "next", 0))  # deny only if it touches the access
            else:
                block.append((_JNE_X, 1, 3, "next", 0))  # allow only if it grants all of it
        if e.major != WILDCARD:
            block.append((_JNE_K, 4, 0, "next", e.major))
        if e.minor != WILDCARD:
            block.append((_JNE_K, 5, 0, "next", e.minor))
        block.append((_ALU64_MOV_K, 0, 0, 0, verdict))
        block.append((_EXIT, 0, 0, 0, 0))
        blocks.append(block)
    out = [_insn(*i) for i in insns]  # type: ignore[arg-type]
    for block in blocks:
        for pc, (code, dst, src, off, imm) in enumerate(block):
            if off == "next":
                off = len(block) - pc - 1
            out.append(_insn(code, dst, src, off, imm))  # type: ignore[arg-type]
    out.append(_insn(_ALU64_MOV_K, 0, 0, 0, 1 - verdict))
    out.append(_insn(_EXIT))
    return b"".join(out)


def apply_v2(path: str, rules: list[dict]) -> None:
    """Load the rules' program and make it the only device program of the cgroup at ``path``."""
    from cais.linux import bpf

    code = program(reduce(rules))
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise CgroupError(f"cannot open cgroup {path}: {e.strerror}") from None
    try:
        bpf.replace_device_program(fd, code)
    except OSError as e:
        raise CgroupError(f"cannot attach the device filter to {path}: {e.strerror}") from None
    finally:
        os.close(fd)
