"""Probes from inside containers run by caisd through the real docker CLI: the default
confinement (capabilities, seccomp, masked and read-only paths, devices) and the options that
change it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile

import pytest

from cais.linux.capabilities import NUMBERS, last_cap
from cais.runtime import defaults
from tests.api.test_bad_input import call
from tests.caisd import Caisd

DENIED = ["keyctl", "add_key", "unshare_user", "clone_newns", "mount", "reboot", "bpf", "perf_event_open",
          "kexec_load", "init_module", "swapon", "clock_settime"]


def run(daemon: Caisd, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    return daemon.docker("run", "--rm", *args, check=check)


def sh(daemon: Caisd, script: str, *opts: str) -> str:
    return run(daemon, *opts, "busybox", "sh", "-c", script).stdout.decode()


def mask(names: list[str] | tuple[str, ...]) -> int:
    """The capability bits of `names` that the engine can grant: those of its own bounding set."""
    with open("/proc/self/status") as f:
        bounding = int(next(line for line in f if line.startswith("CapBnd:")).split()[1], 16)
    return sum(1 << NUMBERS[n] for n in names if NUMBERS[n] <= last_cap()) & bounding


def status(daemon: Caisd, *opts: str) -> dict[str, str]:
    text = sh(daemon, "cat /proc/self/status", *opts)
    return {k: v.strip() for k, _, v in (line.partition(":") for line in text.splitlines())}


def probe_run(daemon: Caisd, probe: str, *opts: str, calls: list[str] = DENIED) -> dict[str, str]:
    text = run(daemon, "-v", f"{probe}:/probe:ro", *opts, "busybox", "/probe", *calls).stdout.decode()
    return dict(line.split() for line in text.splitlines())


def test_default_capabilities_are_dockers_14(daemon: Caisd) -> None:
    st = status(daemon)
    assert len(defaults.CAPS) == 14
    for field in ("CapEff", "CapPrm", "CapBnd"):
        assert int(st[field], 16) == mask(defaults.CAPS), field
    assert int(st["CapInh"], 16) == 0 and int(st["CapAmb"], 16) == 0


def test_cap_add_and_drop_spellings(daemon: Caisd) -> None:
    st = status(daemon, "--cap-add", "sys_admin", "--cap-add", "CAP_NET_ADMIN", "--cap-drop", "net_raw",
                "--cap-drop", "Cap_Chown")
    expected = [c for c in defaults.CAPS if c not in ("CAP_NET_RAW", "CAP_CHOWN")] + ["CAP_SYS_ADMIN", "CAP_NET_ADMIN"]
    assert int(st["CapEff"], 16) == mask(expected)
    assert int(status(daemon, "--cap-drop", "ALL")["CapEff"], 16) == 0
    only = status(daemon, "--cap-drop", "all", "--cap-add", "kill")
    assert int(only["CapEff"], 16) == mask(["CAP_KILL"])
    assert int(status(daemon, "--cap-add", "ALL")["CapEff"], 16) == mask(defaults.ALL_CAPS)


def test_privileged_has_every_capability_and_no_filter(daemon: Caisd) -> None:
    st = status(daemon, "--privileged")
    assert int(st["CapEff"], 16) == mask(defaults.ALL_CAPS)
    assert st["Seccomp"] == "0"


def test_seccomp_filter_on_by_default_and_unconfined_on_request(daemon: Caisd) -> None:
    assert status(daemon)["Seccomp"] == "2"
    assert status(daemon, "--security-opt", "seccomp=unconfined")["Seccomp"] == "0"
    assert status(daemon, "--security-opt", "no-new-privileges")["NoNewPrivs"] == "1"
    assert status(daemon, "--security-opt", "no-new-privileges=false")["NoNewPrivs"] == "0"


def test_dangerous_syscalls_fail_with_eperm(daemon: Caisd, probe: str) -> None:
    result = probe_run(daemon, probe, calls=[*DENIED, "getpid", "unshare_net"])
    assert result.pop("getpid") == "OK"
    assert result.pop("unshare_net") == "EPERM"
    assert result == dict.fromkeys(DENIED, "EPERM")


def test_the_filter_not_the_capabilities_denies_user_namespaces_and_keyrings(daemon: Caisd, probe: str) -> None:
    # Without the filter an unprivileged process may make a user namespace and read its keyring:
    # the EPERM above came from seccomp.
    free = probe_run(daemon, probe, "--security-opt", "seccomp=unconfined", calls=["unshare_user", "keyctl"])
    assert free == {"unshare_user": "OK", "keyctl": "OK"}


def test_cap_sys_admin_opens_the_namespace_syscalls(daemon: Caisd, probe: str) -> None:
    result = probe_run(daemon, probe, "--cap-add", "SYS_ADMIN", calls=["clone_newns", "unshare_net", "reboot"])
    assert result == {"clone_newns": "OK", "unshare_net": "OK", "reboot": "EPERM"}


def test_custom_profile_in_dockers_format(daemon: Caisd, tmp_path_factory: pytest.TempPathFactory) -> None:
    profile = {"defaultAction": "SCMP_ACT_ALLOW",
               "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
                             "includes": {"arches": ["amd64", "arm64"]}},
                            {"names": ["rmdir"], "action": "SCMP_ACT_ERRNO", "excludes": {"caps": ["CAP_CHOWN"]}},
                            {"names": ["rmdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 22,
                             "includes": {"caps": ["CAP_CHOWN"], "minKernel": "99.0"}}]}
    with tempfile.TemporaryDirectory(prefix="cais-se-") as d:
        path = os.path.join(d, "profile.json")
        with open(path, "w") as f:
            json.dump(profile, f)
        result = run(daemon, "--security-opt", f"seccomp={path}", "busybox", "sh", "-c",
                     "mkdir /tmp/x; echo rc=$?; rmdir /cais-se-none", check=False)
        assert b"Permission denied" in result.stderr and b"rc=1" in result.stdout
        # CAP_CHOWN held and an old kernel: neither rmdir rule applies, the kernel answers
        assert b"No such file or directory" in result.stderr
        with open(path, "w") as f:
            f.write('{"defaultAction": "SCMP_ACT_NOPE", "syscalls": []}')
        bad = run(daemon, "--security-opt", f"seccomp={path}", "busybox", "true", check=False)
        assert bad.returncode == 125 and b"invalid defaultAction" in bad.stderr


def test_masked_paths_read_empty(daemon: Caisd) -> None:
    # (absent on some kernels: then nothing to read either)
    out = sh(daemon, "for p in /proc/kcore /proc/keys /proc/timer_list /proc/sched_debug; do "
                     "echo $p $(cat $p 2>/dev/null | wc -c); done; ls /sys/firmware | wc -l; "
                     "ls /proc/acpi 2>/dev/null | wc -l")
    lines = out.split("\n")
    for line in lines[:4]:
        assert line.split()[1] == "0", line
    assert lines[4:6] == ["0", "0"]


def test_readonly_paths_and_sys_refuse_writes(daemon: Caisd) -> None:
    out = sh(daemon, "echo h > /proc/sysrq-trigger; echo rc=$?; echo 1 > /proc/sys/kernel/ns_last_pid; "
                     "echo rc=$?; touch /sys/kernel/cais 2>/dev/null; echo rc=$?; "
                     "grep -E ' /(sys|proc/sys) ' /proc/self/mountinfo")
    assert out.count("rc=1") == 3
    for line in out.splitlines():
        if line.startswith(("rc=",)):
            continue
        assert " ro," in line or " ro " in line, line


def test_block_device_nodes_cannot_be_made_but_default_ones_can(daemon: Caisd) -> None:
    out = sh(daemon, "mknod /tmp/sda b 8 0; echo rc=$?; mknod /tmp/null c 1 3 && echo > /tmp/null && echo ok")
    assert "rc=1" in out and "ok" in out
    allowed = sh(daemon, "mknod /tmp/loop b 7 0 && echo made", "--device-cgroup-rule", "b 7:* m")
    assert "made" in allowed


def test_host_proc_root_fds_hostname_and_time_out_of_reach(daemon: Caisd) -> None:
    with tempfile.NamedTemporaryFile(prefix="cais-se-marker-", dir="/tmp") as marker:
        name = os.path.basename(marker.name)
        out = sh(daemon, f"ls /proc/*/root/tmp/{name} 2>&1 | grep -c -v 'No such file'; readlink /proc/1/root; "
                         "for f in /proc/$$/fd/*; do readlink $f; done; "
                         "hostname cais-se-evil; echo rc=$?; date -s 2000-01-01 2>&1 | grep -c 'not permitted'")
    lines = out.splitlines()
    assert lines[0] == "0" and lines[1] == "/"
    fds = lines[2:-2]
    assert all(t.startswith(("pipe:", "/dev/", "/proc/")) for t in fds), fds
    assert lines[-2:] == ["rc=1", "1"]
    assert socket.gethostname() != "cais-se-evil"


def test_read_only_user_and_groups(daemon: Caisd) -> None:
    assert "rc=1" in sh(daemon, "touch /cais 2>/dev/null; echo rc=$?", "--read-only")
    ident = sh(daemon, "id -u; id -g; id -G", "--user", "1000:1001", "--group-add", "10", "--group-add", "nogroup")
    assert ident.split("\n")[:2] == ["1000", "1001"]
    assert {"10", "1001", "65534"} <= set(ident.split("\n")[2].split())
    assert "cais-se-ok" in sh(daemon, "echo cais-se-ok", "--userns", "host")


def test_devices_option(daemon: Caisd) -> None:
    assert "ok" in sh(daemon, "echo x > /dev/cais-null && echo ok", "--device", "/dev/null:/dev/cais-null")


@pytest.mark.parametrize(("opts", "message"), [
    (["--cap-add", "CAP_NOPE"], b"unknown capability"),
    (["--device", "/nonexistent/cais-se"], b"error gathering device information"),
    (["--user", "1000", "--group-add", "no-such-group"], b"Unable to find group"),  # dockerd's capital
])
def test_bad_values_are_clear_errors(daemon: Caisd, opts: list[str], message: bytes) -> None:
    result = run(daemon, *opts, "busybox", "true", check=False)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr
    assert b"Traceback" not in result.stderr
    assert daemon.ping()


@pytest.mark.parametrize(("host", "message"), [
    ({"CapDrop": ["NOPE"]}, "unknown capability"),
    ({"CapAdd": [7]}, "HostConfig.CapAdd of type string"),
    ({"SecurityOpt": ["bogus"]}, "invalid --security-opt"),
    ({"SecurityOpt": "seccomp=unconfined"}, "SecurityOpt"),
    ({"SecurityOpt": ["seccomp={not json"]}, "decoding seccomp profile failed"),
    ({"SecurityOpt": ['seccomp={"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], '
                      '"action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "op": "SCMP_CMP_NOPE"}]}]}']},
     "invalid argument condition"),
    ({"SecurityOpt": ["no-new-privileges=maybe"]}, "no-new-privileges"),
    ({"SecurityOpt": ["systempaths=open"]}, "systempaths"),
    ({"DeviceCgroupRules": ["x 1:2 rwm"]}, "invalid device cgroup rule"),
    ({"DeviceCgroupRules": ["c 1:2 rwx"]}, "invalid device cgroup rule"),
    ({"UsernsMode": "private"}, "invalid --userns"),
    ({"GroupAdd": ["a:b"]}, "invalid --group-add"),
])
def test_bad_values_through_the_api(daemon: Caisd, host: dict, message: str) -> None:
    """What docker's CLI checks itself, the engine checks too (docker-py and curl do not)."""
    body = json.dumps({"Image": "busybox", "Cmd": ["true"], "HostConfig": host}).encode()
    status, reply = call(daemon, "POST", "/v1.50/containers/create", body)
    assert status == 400 and message in reply["message"], reply


def test_cais_cli_passes_the_same_options(daemon: Caisd) -> None:
    with tempfile.TemporaryDirectory(prefix="cais-se-") as d:
        path = os.path.join(d, "profile.json")
        with open(path, "w") as f:
            json.dump({"defaultAction": "SCMP_ACT_ALLOW",
                       "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}, f)
        result = daemon.cais("run", "--rm", "--security-opt", f"seccomp={path}", "--cap-drop", "all",
                             "--group-add", "10", "--user", "7", "--device-cgroup-rule", "c 1:3 rwm",
                             "--userns", "host", "busybox", "sh", "-c",
                             "mkdir /tmp/x; id -G; grep CapEff /proc/self/status", check=False)
    assert b"Operation not permitted" in result.stderr, result.stderr
    assert b"10" in result.stdout.split(b"\n")[0] and b"0000000000000000" in result.stdout
    missing = daemon.cais("run", "--rm", "--security-opt", "seccomp=/nonexistent/cais-se.json", "busybox", "true",
                          check=False)
    assert missing.returncode == 125 and b"opening seccomp profile" in missing.stderr


def test_exec_gets_the_same_confinement(daemon: Caisd, probe: str) -> None:
    name = f"cais-se-{os.urandom(4).hex()}"
    daemon.docker("run", "-d", "--name", name, "-v", f"{probe}:/probe:ro", "busybox", "sleep", "600")
    try:
        text = daemon.docker("exec", name, "cat", "/proc/self/status").stdout.decode()
        st = {k: v.strip() for k, _, v in (line.partition(":") for line in text.splitlines())}
        assert st["Seccomp"] == "2" and int(st["CapEff"], 16) == mask(defaults.CAPS)
        out = daemon.docker("exec", name, "/probe", "unshare_user", "keyctl").stdout.decode()
        assert out.split() == ["unshare_user", "EPERM", "keyctl", "EPERM"]
        fds = daemon.docker("exec", name, "sh", "-c", "for f in /proc/$$/fd/*; do readlink $f; done; true").stdout
        assert all(t.startswith((b"pipe:", b"/dev/", b"/proc/")) for t in fds.split()), fds
    finally:
        daemon.docker("rm", "-f", name, check=False)
