"""Seccomp profiles in docker's JSON format, turned into an OCI `linux.seccomp` section.

docker's format is the OCI one plus conditions on each rule: `includes`/`excludes` by
capability (in the bounding set), architecture (Go's names: amd64, arm64…) and `minKernel`,
and an `archMap` from the native architecture to its compatible sub-architectures. A profile
is resolved for one container, as dockerd does: rules whose conditions do not hold are left
out, so `clone` with namespace flags, `unshare`, `mount`, `bpf`… are allowed only with
CAP_SYS_ADMIN, `reboot` only with CAP_SYS_BOOT, and so on. Everything not allowed fails with
EPERM (the default action's errno unless the profile says otherwise).

The shipped default is docker 20.10's `profiles/seccomp/default.json`, verbatim (Apache-2.0).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from typing import Any

from cais.runtime.errors import ConfigError
from cais.runtime.seccomp import ACTIONS, ARCHES, OPERATORS

_GO_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "i386": "x86", "i686": "x86", "armv7l": "arm",
            "armv6l": "arm", "ppc64le": "ppc64le", "ppc64": "ppc64", "s390x": "s390x", "riscv64": "riscv64",
            "mips64": "mips64"}
_SECCOMP_ARCH = {"x86": "SCMP_ARCH_X86", "amd64": "SCMP_ARCH_X86_64", "arm": "SCMP_ARCH_ARM",
                 "arm64": "SCMP_ARCH_AARCH64", "mips64": "SCMP_ARCH_MIPS64", "ppc64": "SCMP_ARCH_PPC64",
                 "ppc64le": "SCMP_ARCH_PPC64LE", "s390x": "SCMP_ARCH_S390X", "riscv64": "SCMP_ARCH_RISCV64"}


class ProfileError(ConfigError):
    """A seccomp profile that is not valid JSON in docker's (or the OCI) format."""


def native_arch() -> str:
    """The running architecture in Go's spelling, as docker's `arches` conditions use it."""
    machine = os.uname().machine
    return _GO_ARCH.get(machine, machine)


def kernel_version() -> tuple[int, int]:
    release = os.uname().release
    parts = release.split("-")[0].split(".")
    try:
        return int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        return 0, 0


def _min_kernel(value: Any) -> tuple[int, int]:
    parts = str(value).split(".")
    if len(parts) != 2 or not all(p.isdigit() for p in parts) or parts == ["0", "0"]:
        raise ProfileError(f'seccomp profile: invalid kernel version {value!r}, expected "<kernel>.<major>"')
    return int(parts[0]), int(parts[1])


def parse(text: str | bytes) -> dict[str, Any]:
    """A profile from its JSON text, checked enough that a mistake is a one-line error."""
    try:
        profile = json.loads(text)
    except (ValueError, UnicodeDecodeError) as e:
        raise ProfileError(f"decoding seccomp profile failed: {e}") from None
    if not isinstance(profile, dict):
        raise ProfileError("decoding seccomp profile failed: not a JSON object")
    if profile.get("defaultAction", "") not in ACTIONS:
        raise ProfileError(f"seccomp profile: invalid defaultAction {profile.get('defaultAction')!r}")
    if profile.get("architectures") and profile.get("archMap"):
        raise ProfileError("seccomp profile: 'architectures' and 'archMap' were both specified, use either")
    for arch in profile.get("architectures") or []:
        if arch not in ARCHES:
            raise ProfileError(f"seccomp profile: unknown architecture {arch!r}")
    syscalls = profile.get("syscalls") or []
    if not isinstance(syscalls, list):
        raise ProfileError("seccomp profile: 'syscalls' must be a list")
    for rule in syscalls:
        if not isinstance(rule, dict):
            raise ProfileError("seccomp profile: each entry of 'syscalls' must be an object")
        if rule.get("name") and rule.get("names"):
            raise ProfileError("seccomp profile: 'name' and 'names' were both specified, use either")
        names = rule.get("names") or ([rule["name"]] if rule.get("name") else [])
        if not names or not all(isinstance(n, str) for n in names):
            raise ProfileError("seccomp profile: a rule without syscall names")
        if rule.get("action") not in ACTIONS:
            raise ProfileError(f"seccomp profile: invalid action {rule.get('action')!r} for {names[0]}")
        for arg in rule.get("args") or []:
            if not isinstance(arg, dict) or arg.get("op") not in OPERATORS or not isinstance(arg.get("index"), int):
                raise ProfileError(f"seccomp profile: invalid argument condition {arg!r} for {names[0]}")
        for cond in ("includes", "excludes"):
            if (rule.get(cond) or {}).get("minKernel"):
                _min_kernel(rule[cond]["minKernel"])
    return profile


def _applies(rule: dict[str, Any], caps: set[str], arch: str, kernel: tuple[int, int]) -> bool:
    inc, exc = rule.get("includes") or {}, rule.get("excludes") or {}
    if arch in (exc.get("arches") or []) or caps & set(exc.get("caps") or []):
        return False
    if exc.get("minKernel") and kernel >= _min_kernel(exc["minKernel"]):
        return False
    if inc.get("arches") and arch not in inc["arches"]:
        return False
    if not set(inc.get("caps") or []) <= caps:
        return False
    return not (inc.get("minKernel") and kernel < _min_kernel(inc["minKernel"]))


def resolve(profile: dict[str, Any], bounding: Iterable[str], *, arch: str | None = None,
            kernel: tuple[int, int] | None = None) -> dict[str, Any]:
    """The OCI `linux.seccomp` of `profile` for a process whose bounding set is `bounding`."""
    arch = arch or native_arch()
    kernel = kernel or kernel_version()
    caps = set(bounding)
    out: dict[str, Any] = {"defaultAction": profile["defaultAction"]}
    if profile.get("defaultErrnoRet") is not None:
        out["defaultErrnoRet"] = profile["defaultErrnoRet"]
    if profile.get("architectures"):
        out["architectures"] = list(profile["architectures"])
    native = _SECCOMP_ARCH.get(arch)
    for entry in profile.get("archMap") or []:
        if entry.get("architecture") == native:
            out["architectures"] = [native, *entry.get("subArchitectures", [])]
            break
    syscalls = []
    for rule in profile.get("syscalls") or []:
        if not _applies(rule, caps, arch, kernel):
            continue
        call: dict[str, Any] = {"names": list(rule.get("names") or [rule["name"]]), "action": rule["action"]}
        if rule.get("errnoRet") is not None:
            call["errnoRet"] = rule["errnoRet"]
        if rule.get("args"):
            call["args"] = [dict(a) for a in rule["args"]]
        syscalls.append(call)
    out["syscalls"] = syscalls
    return out


_DEFAULT: list[dict[str, Any]] = []  # parsed once per process


def default_profile() -> dict[str, Any]:
    """docker's default profile, as shipped (unresolved; shared: callers must not change it)."""
    if not _DEFAULT:  # a plain path: importlib.resources costs a daemonless command ~10 ms
        with open(os.path.join(os.path.dirname(__file__), "seccomp_default.json"), "rb") as f:
            _DEFAULT.append(json.loads(f.read()))
    return _DEFAULT[0]


def default(bounding: Iterable[str]) -> dict[str, Any]:
    """docker's default profile resolved for `bounding`: what every container gets by default."""
    return resolve(default_profile(), bounding)
