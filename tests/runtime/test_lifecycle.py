"""create/start/state/kill/delete/run of real busybox containers, observed from inside and outside."""

from __future__ import annotations

import json
import os

from tests.runtime.bundle import Runtime, read
from tests.wait import wait_for


def test_run_pid1_hostname_exit_status(rt: Runtime) -> None:
    b = rt.bundle("sh", "-c", "echo pid=$$ host=$(hostname); exit 3")
    b.config["hostname"] = "cais-rt-box"
    done = rt.run(b)
    assert done.returncode == 3, done.stderr
    assert "pid=1 host=cais-rt-box" in done.stdout
    assert os.uname().nodename != "cais-rt-box"


def test_only_its_own_mounts(rt: Runtime) -> None:
    done = rt.run(rt.bundle("cat", "/proc/self/mountinfo"))
    assert done.returncode == 0, done.stderr
    mountpoints = [line.split()[4] for line in done.stdout.splitlines()]
    assert "/" in mountpoints and "/proc" in mountpoints and "/dev/pts" in mountpoints
    assert not any(m.startswith(("/work", "/run/", "/boot", "/home")) for m in mountpoints), mountpoints


def test_lifecycle_states(rt: Runtime) -> None:
    cid = rt.create(rt.bundle("sleep", "100000"))
    state = rt.state(cid)
    assert state["status"] == "created" and state["pid"] > 0
    pid = state["pid"]
    assert rt("start", cid).returncode == 0
    assert rt.state(cid)["status"] == "running"
    again = rt("start", cid)
    assert again.returncode == 1 and "running" in again.stderr
    refused = rt("delete", cid)
    assert refused.returncode == 1 and "not stopped" in refused.stderr
    listed = json.loads(rt("list", "--format", "json", check=True).stdout)
    assert [c["id"] for c in listed] == [cid]
    assert rt("kill", cid, "KILL").returncode == 0
    wait_for(lambda: rt.state(cid)["status"] == "stopped", "the killed container to stop")
    assert not os.path.exists(f"/proc/{pid}/exe") or read(f"/proc/{pid}/stat").split()[2] == "Z"
    assert rt("delete", cid).returncode == 0
    missing = rt("state", cid)
    assert missing.returncode == 1 and "does not exist" in missing.stderr


def test_delete_created_container_kills_init(rt: Runtime) -> None:
    cid = rt.create(rt.bundle("true"))
    pid = rt.state(cid)["pid"]
    assert rt("delete", cid).returncode == 0
    assert not os.path.exists(f"/proc/{pid}/status") or "zombie" in read(f"/proc/{pid}/status")


def test_capabilities_as_configured(rt: Runtime) -> None:
    b = rt.bundle("grep", "Cap", "/proc/self/status")
    done = rt.run(b)
    caps = dict(line.split(":\t") for line in done.stdout.splitlines())
    # CAP_AUDIT_WRITE (29), CAP_KILL (5), CAP_NET_BIND_SERVICE (10): the spec's default
    assert int(caps["CapEff"], 16) == (1 << 29) | (1 << 5) | (1 << 10)
    assert int(caps["CapBnd"], 16) == int(caps["CapEff"], 16)
    b.config["process"]["capabilities"] = {
        k: ["CAP_CHOWN", "CAP_NET_RAW"]
        for k in ("bounding", "effective", "permitted", "inheritable", "ambient")
    }
    b.config["process"]["user"] = {"uid": 1000, "gid": 1000}
    done = rt.run(b)
    caps = dict(line.split(":\t") for line in done.stdout.splitlines())
    assert int(caps["CapEff"], 16) == (1 << 0) | (1 << 13)
    assert int(caps["CapAmb"], 16) == (1 << 0) | (1 << 13)


def test_user_group_umask_env_cwd(rt: Runtime) -> None:
    b = rt.bundle("sh", "-c", "id -u; id -G; umask; pwd; echo $GREETING")
    b.config["process"].update(
        user={"uid": 1234, "gid": 567, "additionalGids": [10, 20], "umask": 0o27},
        env=["PATH=/bin", "GREETING=ola"],
        cwd="/tmp",
    )
    done = rt.run(b)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:5] == ["1234", "567 10 20", "0027", "/tmp", "ola"]


def test_masked_and_readonly_paths(rt: Runtime) -> None:
    b = rt.bundle(
        "sh",
        "-c",
        "wc -c < /proc/timer_list; ls /sys/firmware | wc -l; "
        "echo 1 > /proc/sys/kernel/ns_last_pid && echo WROTE; echo x > /etc/x && echo WROTE2; exit 0",
    )
    done = rt.run(b)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.split()
    assert lines[:2] == ["0", "0"]
    assert "WROTE" not in done.stdout
    assert "Read-only file system" in done.stderr


def test_rlimits_set_and_clamped(rt: Runtime) -> None:
    b = rt.bundle("sh", "-c", "ulimit -n; ulimit -Hn")
    b.config["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 123, "hard": 456}]
    done = rt.run(b)
    assert done.stdout.split() == ["123", "456"]
    b.config["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 1 << 40, "hard": 1 << 40}]
    done = rt.run(b)
    assert done.returncode == 0, done.stderr
    nr_open = int(read("/proc/sys/fs/nr_open"))
    soft, hard = done.stdout.split()
    assert soft == hard and int(hard) <= nr_open
    assert "clamped" in done.stderr and "Traceback" not in done.stderr


def test_sysctl_and_domainname(rt: Runtime) -> None:
    b = rt.bundle("sh", "-c", "cat /proc/sys/net/ipv4/ip_forward; cat /proc/sys/kernel/domainname")
    b.config["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1"}
    b.config["domainname"] = "cais.example"
    done = rt.run(b)
    assert done.stdout.split() == ["1", "cais.example"], done.stderr


def test_bind_mounts_with_options(rt: Runtime) -> None:
    data = os.path.join(rt.top, "data")
    os.makedirs(data)
    with open(os.path.join(data, "hello"), "w") as f:
        f.write("from the host\n")
    b = rt.bundle("sh", "-c", "cat /data/hello; touch /data/new && echo WROTE; cat /proc/self/mountinfo")
    b.config["mounts"].append(
        {
            "destination": "/data",
            "type": "bind",
            "source": data,
            "options": ["rbind", "ro", "nosuid", "nodev", "rprivate"],
        }
    )
    done = rt.run(b)
    assert "from the host" in done.stdout and "WROTE" not in done.stdout
    line = next(x for x in done.stdout.splitlines() if " /data " in x)
    assert "ro," in line and "nosuid" in line and "nodev" in line
    assert not os.path.exists(os.path.join(data, "new"))


def test_no_pivot_moves_the_root(rt: Runtime) -> None:
    b = rt.bundle("sh", "-c", "cat /proc/self/mountinfo | wc -l; ls /")
    done = rt.run(b, "--no-pivot")
    assert done.returncode == 0, done.stderr
    assert "bin" in done.stdout.split() and "work" not in done.stdout.split()


def test_spec_features_and_version(rt: Runtime) -> None:
    bundle = os.path.join(rt.top, "spec-bundle")
    os.makedirs(bundle)
    assert rt("spec", "-b", bundle).returncode == 0
    config = json.loads(read(os.path.join(bundle, "config.json")))
    assert config["process"]["args"] == ["sh"] and config["root"]["path"] == "rootfs"
    again = rt("spec", "-b", bundle)
    assert again.returncode == 1 and "exists" in again.stderr
    features = json.loads(rt("features", check=True).stdout)
    assert "user" in features["linux"]["namespaces"] and features["linux"]["seccomp"]["enabled"]
    assert "startContainer" in features["hooks"]
    assert "cais-runtime version" in rt("--version", check=True).stdout


def test_all_capabilities_granted_as_far_as_the_runtime_holds_them(rt: Runtime) -> None:
    from cais.linux.capabilities import NAMES, last_cap

    b = rt.bundle("grep", "CapEff", "/proc/self/status")
    b.config["process"]["capabilities"] = {
        k: list(NAMES[: last_cap() + 1]) for k in ("bounding", "effective", "permitted")
    }
    done = rt.run(b)
    assert done.returncode == 0, done.stderr
    own = next(
        int(line.split()[1], 16)
        for line in read("/proc/self/status").splitlines()
        if line.startswith("CapBnd")
    )
    assert int(done.stdout.split()[1], 16) == own & ((1 << (last_cap() + 1)) - 1)
    if own != (1 << (last_cap() + 1)) - 1:  # this host confines its root: the gap is reported
        assert "not granted" in done.stderr


def test_device_nodes_keep_their_mode_despite_the_umask(rt: Runtime) -> None:
    b = rt.bundle("sh", "-c", "echo hi > /dev/null && stat -c %a /dev/null /dev/zero")
    b.config["process"]["user"] = {"uid": 1000, "gid": 1000}
    done = rt.run(b)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["666", "666"]


def test_delete_kills_what_outlives_an_init_without_pid_namespace(rt: Runtime) -> None:
    b = rt.bundle("sh", "-c", "sleep 300 & echo $!")
    b.config["linux"]["namespaces"] = [n for n in b.config["linux"]["namespaces"] if n["type"] != "pid"]
    done = rt.run(b)  # run = create, start, wait for sh, delete
    assert done.returncode == 0, done.stderr
    orphan = int(done.stdout.split()[0])
    wait_for(lambda: not _runs_sleep(orphan), "the container's orphan to die after delete")


def _runs_sleep(pid: int) -> bool:
    try:
        return "sleep" in read(f"/proc/{pid}/cmdline")
    except OSError:  # gone
        return False


def test_cgroup_namespace_is_rooted_at_the_containers_cgroup(rt: Runtime) -> None:
    b = rt.bundle("sh", "-c", "cut -d: -f3 /proc/self/cgroup | sort -u; cat /sys/fs/cgroup/pids/cgroup.procs")
    done = rt.run(b)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.split()
    assert lines[0] == "/"  # every hierarchy: the container's own cgroup is its root
    assert "1" in lines[1:]  # and /sys/fs/cgroup shows that cgroup, with the init in it
    b.config["linux"]["namespaces"] = [n for n in b.config["linux"]["namespaces"] if n["type"] != "cgroup"]
    done = rt.run(b)
    assert done.returncode == 0, done.stderr
    assert any(rt.ids[-1] in line for line in done.stdout.split())  # the host's path of its cgroup


def test_personality_linux32(rt: Runtime) -> None:
    b = rt.bundle("uname", "-m")
    b.config["linux"]["personality"] = {"domain": "LINUX32"}
    done = rt.run(b)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() in ("i686", "armv8l", "armv7l")


def test_init_has_a_session_of_its_own(rt: Runtime) -> None:
    done = rt.run(rt.bundle("sh", "-c", "cut -d' ' -f6 /proc/self/stat; echo $$"))
    session, pid = done.stdout.split()
    assert session == pid == "1"  # the container's sh leads its session: not the caller's terminal's
