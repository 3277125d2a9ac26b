"""Platforms (os/architecture/variant), normalized and matched as containerd's `platforms` does.

``x86_64`` is ``amd64``, ``aarch64`` is ``arm64`` (variant ``v8`` implied), ``armhf`` is
``arm/v7``. A host can run lower variants of its own architecture and, for amd64, 386; arm64
hosts can run 32-bit arm (``platform_vector`` lists them, best first).
"""

from __future__ import annotations

import os
import platform as _platform
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""
    os_version: str = ""
    os_features: tuple[str, ...] = ()

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)

    @classmethod
    def from_dict(cls, obj: Any) -> Platform:
        if not isinstance(obj, dict):
            raise ValueError("platform must be a JSON object")
        os_, arch = obj.get("os"), obj.get("architecture")
        if not isinstance(os_, str) or not os_ or not isinstance(arch, str) or not arch:
            raise ValueError("platform needs os and architecture")
        variant, version = obj.get("variant") or "", obj.get("os.version") or ""
        features = obj.get("os.features") or []
        if not isinstance(variant, str) or not isinstance(version, str) or not isinstance(features, list) \
                or not all(isinstance(f, str) for f in features):
            raise ValueError("platform: variant, os.version and os.features must be strings")
        return cls(os_, arch, variant, version, tuple(features))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            out["variant"] = self.variant
        if self.os_version:
            out["os.version"] = self.os_version
        if self.os_features:
            out["os.features"] = list(self.os_features)
        return out

    def normalized(self) -> Platform:
        os_ = self.os.lower()
        if os_ == "macos":
            os_ = "darwin"
        arch, variant = normalize_arch(self.architecture, self.variant)
        return Platform(os_, arch, variant, self.os_version, self.os_features)

    def matches(self, wanted: Platform) -> bool:
        """Same normalized os/architecture/variant (and os.version for Windows)."""
        a, b = self.normalized(), wanted.normalized()
        if (a.os, a.architecture, a.variant) != (b.os, b.architecture, b.variant):
            return False
        return a.os != "windows" or not b.os_version or a.os_version.startswith(b.os_version)


def go_arch(machine: str) -> str:
    """uname's machine (x86_64) as Go's GOARCH (amd64), which `docker version` prints."""
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}.get(machine, machine)


def normalize_arch(arch: str, variant: str) -> tuple[str, str]:
    """containerd's `normalizeArch`."""
    arch, variant = arch.lower(), variant.lower()
    if arch == "i386":
        return "386", ""
    if arch in ("x86_64", "x86-64", "amd64"):
        return "amd64", "" if variant == "v1" else variant
    if arch in ("aarch64", "arm64"):
        return "arm64", {"8": "", "v8": "", "v8.0": "", "9": "v9", "9.0": "v9", "v9.0": "v9"}.get(variant, variant)
    if arch == "armhf":
        return "arm", "v7"
    if arch == "armel":
        return "arm", "v6"
    if arch == "arm":
        if variant in ("", "7"):
            return "arm", "v7"
        if variant in ("5", "6", "8"):
            return "arm", "v" + variant
    return arch, variant


def parse_platform(spec: str) -> Platform:
    """``linux/arm64/v8``, ``linux/amd64``, ``arm64`` (host OS implied) → Platform, normalized."""
    parts = spec.strip().split("/")
    if not all(parts) or len(parts) > 3:
        raise ValueError(f"invalid platform {spec!r}: expected os/arch[/variant]")
    if len(parts) == 1:
        p = parts[0].lower()
        if p in ("linux", "windows", "darwin", "freebsd"):
            return Platform(p, host_platform().architecture, host_platform().variant)
        return Platform("linux", p).normalized()
    return Platform(parts[0], parts[1], parts[2] if len(parts) == 3 else "").normalized()


def host_platform() -> Platform:
    """This machine's platform: linux/<arch>[/variant]."""
    variant = ""
    arch, _ = normalize_arch(_platform.machine(), "")
    if arch == "arm":
        variant = _arm_variant()
    return Platform("linux", arch, variant).normalized()


def _arm_variant() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("cpu architecture"):
                    return "v" + line.split(":", 1)[1].strip().rstrip("L")
    except OSError:
        pass
    return os.environ.get("CAIS_ARM_VARIANT", "v7")


def platform_vector(platform: Platform) -> list[Platform]:
    """containerd's `platformVector`: `platform` and what it can also run, best first."""
    p = platform.normalized()
    out = [p]
    version = _variant_number(p.variant)
    if p.architecture == "amd64":
        for v in range((version or 1) - 1, 0, -1):
            out.append(Platform(p.os, "amd64", f"v{v}", p.os_version, p.os_features).normalized())
        out.append(Platform(p.os, "386", "", p.os_version, p.os_features))
    elif p.architecture == "arm":
        for v in range((version or 5) - 1, 4, -1):
            out.append(Platform(p.os, "arm", f"v{v}", p.os_version, p.os_features))
    elif p.architecture == "arm64":
        out += platform_vector(Platform(p.os, "arm", p.variant or "v8", p.os_version, p.os_features))
    return out


def _variant_number(variant: str) -> int | None:
    try:
        return int(variant.removeprefix("v"))
    except ValueError:
        return None
