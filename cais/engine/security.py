"""HostConfig's security options: capabilities, --security-opt, device cgroup rules, userns mode.

Everything here is checked when a container is created, so a wrong flag is a one-line error from
`docker create`/`run`, not a failure at start. The defaults themselves live in
`cais.runtime.defaults` (shared with `cais-runtime spec` and `cais build`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cais.engine.errors import InvalidParameter
from cais.runtime.defaults import ALL_CAPS, CAPS
from cais.runtime.defaults import seccomp as seccomp_profiles

_RULE = re.compile(r"^([acb]) ([0-9]+|\*):([0-9]+|\*) ([rwm]{1,3})$")


def normalize_caps(names: list[str] | None, flag: str = "capability") -> list[str]:
    """docker's spelling rules: ALL, or a name with or without CAP_, in any case."""
    out = []
    for name in names or []:
        if not isinstance(name, str):
            raise InvalidParameter(f"invalid {flag}: {name!r}")
        n = name.strip().upper()
        if n == "ALL":
            out.append("ALL")
            continue
        n = n if n.startswith("CAP_") else "CAP_" + n
        if n not in ALL_CAPS:
            raise InvalidParameter(f"unknown capability: {name!r}")
        out.append(n)
    return out


def capabilities(host: dict) -> list[str]:
    """The bounding/effective/permitted set: docker's 14, plus --cap-add, minus --cap-drop."""
    if host.get("Privileged"):
        return list(ALL_CAPS)
    add, drop = normalize_caps(host.get("CapAdd"), "--cap-add"), normalize_caps(host.get("CapDrop"), "--cap-drop")
    caps = list(ALL_CAPS) if "ALL" in add else list(CAPS)
    if "ALL" in drop:
        return [c for c in ALL_CAPS if c in add]
    caps += [c for c in add if c != "ALL" and c not in caps]
    return [c for c in caps if c not in drop]


@dataclass
class SecurityOptions:
    seccomp: str | dict = "default"  # "default", "unconfined" or a parsed profile
    no_new_privileges: bool = False
    systempaths_unconfined: bool = False


def _bool(key: str, value: str) -> bool:
    if value.lower() in ("", "true", "1"):
        return True
    if value.lower() in ("false", "0"):
        return False
    raise InvalidParameter(f"invalid --security-opt {key}: {value!r} (true or false)")


def security_options(host: dict) -> SecurityOptions:
    """--security-opt as docker's CLI sends it: `seccomp=<profile JSON>` (the CLI reads the file),
    `seccomp=unconfined`, `no-new-privileges[=true|false]`, `systempaths=unconfined`;
    `apparmor=`/`label=` are accepted and have no effect (no LSM on this engine)."""
    out = SecurityOptions()
    opts = host.get("SecurityOpt") or []
    if not isinstance(opts, list):
        raise InvalidParameter("invalid HostConfig.SecurityOpt: expected a list of strings")
    for opt in opts:
        if not isinstance(opt, str):
            raise InvalidParameter(f"invalid --security-opt: {opt!r}")
        if opt == "no-new-privileges":
            out.no_new_privileges = True
            continue
        key, sep, value = opt.partition("=")
        if not sep:
            key, sep, value = opt.partition(":")  # docker's older spelling, seccomp:unconfined
        if not sep:
            raise InvalidParameter(f"invalid --security-opt: {opt!r}")
        if key == "seccomp":
            if value == "unconfined":
                out.seccomp = "unconfined"
            elif value in ("", "builtin", "default"):
                out.seccomp = "default"
            else:
                try:
                    out.seccomp = seccomp_profiles.parse(value)
                except seccomp_profiles.ProfileError as e:
                    raise InvalidParameter(f"--security-opt seccomp: {e}") from None
        elif key == "no-new-privileges":
            out.no_new_privileges = _bool(key, value)
        elif key == "systempaths":
            if value != "unconfined":
                raise InvalidParameter(f"invalid --security-opt systempaths: {value!r} (only unconfined)")
            out.systempaths_unconfined = True
        elif key not in ("apparmor", "label"):
            raise InvalidParameter(f"invalid --security-opt: {opt!r}")
    return out


def seccomp(host: dict, caps: list[str]) -> dict | None:
    """linux.seccomp: docker's default profile (or the user's) resolved for these capabilities;
    none when privileged or unconfined."""
    opts = security_options(host)
    if host.get("Privileged") or opts.seccomp == "unconfined":
        return None
    profile = seccomp_profiles.default_profile() if opts.seccomp == "default" else opts.seccomp
    return seccomp_profiles.resolve(profile, caps)  # type: ignore[arg-type]


def device_cgroup_rules(host: dict) -> list[dict]:
    """--device-cgroup-rule 'c 1:3 rwm' (a|b|c, major|*, minor|*, some of rwm) as OCI rules."""
    out = []
    for text in host.get("DeviceCgroupRules") or []:
        m = _RULE.match(text.strip()) if isinstance(text, str) else None
        if not m:
            raise InvalidParameter(f"invalid device cgroup rule {text!r}: expected 'TYPE MAJOR:MINOR ACCESS', "
                                   f"e.g. 'c 1:3 rwm'")
        kind, major, minor, access = m.groups()
        rule: dict = {"allow": True, "type": kind, "access": access}
        if major != "*":
            rule["major"] = int(major)
        if minor != "*":
            rule["minor"] = int(minor)
        out.append(rule)
    return out


def validate(host: dict) -> None:
    """Every security option of HostConfig, checked at create."""
    capabilities(host)
    security_options(host)
    device_cgroup_rules(host)
    mode = host.get("UsernsMode") or ""
    if mode not in ("", "host"):
        raise InvalidParameter(f"invalid --userns: {mode!r} (only 'host' is supported)")
    for group in host.get("GroupAdd") or []:
        if not isinstance(group, str) or not group or ":" in group:
            raise InvalidParameter(f"invalid --group-add: {group!r}")
