"""Containers outlive caisd: SIGKILL it, start it again; they run on, logs are whole, exits are kept."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from collections.abc import Iterator

import pytest

import cais
from tests.caisd import Caisd, _stop_supervisor, caisd
from tests.wait import wait_for


@pytest.fixture
def restartable() -> Iterator[Caisd]:
    with caisd() as d:
        yield d


def _out(result) -> str:  # type: ignore[no-untyped-def]
    return result.stdout.decode().strip()


def test_daemon_crash_and_restart(restartable: Caisd) -> None:
    d = restartable
    long = _out(d.docker("run", "-d", "busybox", "sh", "-c",
                         "for i in $(seq 1 40); do echo line$i; sleep 0.05; done; sleep 2; exit 3"))
    short = _out(d.docker("run", "-d", "busybox", "sh", "-c", "sleep 0.5; echo bye; exit 42"))
    forever = _out(d.docker("run", "-d", "busybox", "sleep", "300"))
    supervisor = d.supervisor_pid()
    d.kill(signal.SIGKILL)
    # `short` exits while nobody serves the API: the supervisor writes its exit file
    wait_for(lambda: os.path.exists(os.path.join(d.data_root, "containers", short, "exit.json")), "short's exit")
    d.start()
    assert d.supervisor_pid() == supervisor
    assert _out(d.docker("inspect", "-f", "{{.State.Running}}", forever)) == "true"
    state = json.loads(_out(d.docker("inspect", "-f", "{{json .State}}", short)))
    assert state["Status"] == "exited" and state["ExitCode"] == 42
    assert _out(d.docker("logs", short)) == "bye"
    assert _out(d.docker("wait", long)) == "3"
    assert _out(d.docker("logs", long)).splitlines() == [f"line{i}" for i in range(1, 41)]
    assert d.docker("exec", forever, "true").returncode == 0
    d.kill(signal.SIGTERM)  # a clean stop leaves containers running too
    d.start()
    assert _out(d.docker("inspect", "-f", "{{.State.Running}}", forever)) == "true"


def test_two_daemons_never_share_a_data_root(restartable: Caisd) -> None:
    import subprocess
    args = restartable.args()
    args[args.index("-H") + 1] = f"unix://{restartable.root}/second.sock"
    args += ["--pidfile", f"{restartable.root}/second.pid"]
    second = subprocess.run(args, capture_output=True, timeout=60)
    assert second.returncode == 1
    assert b"in use by another caisd" in second.stderr
    assert b"Traceback" not in second.stderr


def test_restart_policy_and_autoremove(restartable: Caisd) -> None:
    d = restartable
    cid = _out(d.docker("run", "-d", "--restart", "on-failure:2", "busybox", "sh", "-c", "exit 1"))

    def given_up() -> bool:
        state = json.loads(_out(d.docker("inspect", "-f", "{{json .}}", cid)))
        return state["RestartCount"] == 2 and not state["State"]["Running"] and not state["State"]["Restarting"]

    wait_for(given_up, "on-failure:2 to give up")
    assert _out(d.docker("inspect", "-f", "{{.State.ExitCode}}", cid)) == "1"
    always = _out(d.docker("run", "-d", "--restart", "always", "busybox", "sh", "-c", "sleep 0.2"))
    wait_for(lambda: int(_out(d.docker("inspect", "-f", "{{.RestartCount}}", always))) >= 1, "a restart")
    d.docker("stop", always)
    # a restart already under way when stop came finishes, then stays down
    wait_for(lambda: _out(d.docker("inspect", "-f", "{{.State.Status}}", always)) == "exited", "the stop")
    count = _out(d.docker("inspect", "-f", "{{.RestartCount}}", always))
    time.sleep(1)
    assert _out(d.docker("inspect", "-f", "{{.State.Status}} {{.RestartCount}}", always)) == f"exited {count}"
    auto = _out(d.docker("run", "-d", "--rm", "busybox", "true"))
    wait_for(lambda: d.docker("inspect", auto, check=False).returncode != 0, "the --rm container's removal")


def test_healthcheck_init_oom_and_limits(restartable: Caisd) -> None:
    d = restartable
    healthy = _out(d.docker("run", "-d", "--health-cmd", "test -e /tmp/ok", "--health-interval", "200ms",
                            "--health-retries", "1", "busybox", "sh", "-c", "touch /tmp/ok; sleep 60"))
    wait_for(lambda: _out(d.docker("inspect", "-f", "{{.State.Health.Status}}", healthy)) == "healthy", "healthy")
    d.docker("exec", healthy, "rm", "/tmp/ok")
    wait_for(lambda: _out(d.docker("inspect", "-f", "{{.State.Health.Status}}", healthy)) == "unhealthy",
             "unhealthy")
    d.docker("rm", "-f", healthy)
    init = d.docker("run", "--rm", "--init", "busybox", "sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '")
    assert _out(init).startswith("/sbin/docker-init")
    oom = _out(d.docker("run", "-d", "-m", "8m", "--memory-swap", "8m", "busybox", "sh", "-c",
                        "x=a; while true; do x=$x$x; done"))
    assert _out(d.docker("wait", oom)) == "137"
    assert _out(d.docker("inspect", "-f", "{{.State.OOMKilled}}", oom)) == "true"
    limits = d.docker("run", "--rm", "--pids-limit", "10", "--cpus", "0.5", "--ulimit", "nofile=512:1024",
                      "--user", "65534:65534", "--workdir", "/tmp", "--read-only", "--cap-drop", "NET_RAW",
                      "--hostname", "cais-en-h", "--shm-size", "1m", "busybox", "sh", "-c",
                      "id -u; pwd; ulimit -n; hostname; touch /x 2>/dev/null || echo ro; "
                      "df -k /dev/shm | tail -1 | awk '{print $2}'; grep CapEff /proc/self/status")
    assert _out(limits).splitlines() == ["65534", "/tmp", "512", "cais-en-h", "ro", "1024",
                                         "CapEff:\t0000000000000000"]  # caps are dropped for a non-root user
    dropped = d.docker("run", "--rm", "--cap-drop", "ALL", "busybox", "grep", "CapEff", "/proc/self/status")
    assert _out(dropped) == "CapEff:\t0000000000000000"
    failed = d.docker("run", "--rm", "busybox", "/cais-en-missing", check=False)
    assert failed.returncode != 0 and b"no such" in failed.stderr
    privileged = d.docker("run", "--rm", "--privileged", "busybox", "sh", "-c", "grep CapEff /proc/self/status")
    assert _out(privileged) != "CapEff:\t0000000000000000"
    default = d.docker("run", "--rm", "busybox", "sh", "-c", "cat /proc/kcore 2>/dev/null | head -c 1 | wc -c; "
                       "echo 1 > /proc/sys/kernel/shmmax 2>/dev/null || echo ro-proc")
    assert _out(default).splitlines() == ["0", "ro-proc"]


def test_log_rotation_and_drivers(restartable: Caisd) -> None:
    import os
    d = restartable
    cid = _out(d.docker("run", "-d", "--log-opt", "max-size=2k", "--log-opt", "max-file=3", "busybox", "sh", "-c",
                        "for i in $(seq 1 200); do echo line-$i-padding-padding-padding; done"))
    d.docker("wait", cid)
    path = _out(d.docker("inspect", "-f", "{{.LogPath}}", cid))
    files = sorted(f for f in os.listdir(os.path.dirname(path)) if f.startswith(os.path.basename(path)))
    assert len(files) == 3  # 2k is 2000 bytes (docker's units); a file passes it by one entry at most
    assert all(os.path.getsize(os.path.join(os.path.dirname(path), f)) < 2000 + 100 for f in files)
    assert _out(d.docker("logs", "--tail", "1", cid)) == "line-200-padding-padding-padding"
    none = _out(d.docker("run", "-d", "--log-driver", "none", "busybox", "echo", "x"))
    d.docker("wait", none)
    assert d.docker("logs", none, check=False).returncode != 0
    bad = d.docker("run", "--rm", "--log-driver", "syslog", "busybox", "true", check=False)
    assert bad.returncode != 0 and b"not supported" in bad.stderr


def test_local_log_driver_across_a_daemon_restart(restartable: Caisd) -> None:
    """docker's local format, rotated and gzipped, written by the supervisor while caisd is down."""
    d = restartable
    cid = _out(d.docker("run", "-d", "--log-driver", "local", "--log-opt", "max-size=1k", "--log-opt", "max-file=4",
                        "busybox", "sh", "-c", "for i in $(seq 1 200); do echo out-$i; [ $i = 60 ] && sleep 1.5; done; "
                        "sleep 0.2; echo err-end >&2; sleep 0.5"))
    assert _out(d.docker("inspect", "-f", "{{.LogPath}}|{{.HostConfig.LogConfig.Type}}", cid)) == "|local"
    time.sleep(0.5)
    d.kill(signal.SIGKILL)
    time.sleep(1)  # the container goes on writing while nobody serves the API
    d.start()
    follow = d.docker("logs", "-f", "--tail", "3", cid, timeout=60)
    assert follow.returncode == 0
    logdir = os.path.join(d.data_root, "containers", cid, "local-logs")
    names = sorted(os.listdir(logdir))
    assert names[0] == "container.log" and names[1:] and all(n.endswith(".gz") for n in names[1:])
    everything = d.docker("logs", cid)
    outs = everything.stdout.decode().split()
    assert outs == [f"out-{i}" for i in range(201 - len(outs), 201)]  # what 4 files of 1 kB hold, in order
    assert len(outs) > 100
    assert everything.stderr == b"err-end\n" and follow.stderr == b"err-end\n"
    tail = d.docker("logs", "--tail", "2", "-t", cid)
    assert tail.stdout.endswith(b" out-200\n") and tail.stderr.startswith(b"20")
    first_ts = d.docker("logs", "-t", cid).stdout.split(b" ", 1)[0].decode()
    since = d.docker("logs", "--since", first_ts, cid).stdout.decode().split()
    assert since == outs
    assert d.docker("run", "--rm", "--log-driver", "local", "--log-opt", "max-file=1", "busybox", "true",
                    check=False).stderr.count(b"compression cannot be enabled") == 1


def test_supervisor_killed_leaves_no_orphan(restartable: Caisd) -> None:
    import os
    d = restartable
    cid = _out(d.docker("run", "-d", "busybox", "sleep", "300"))
    pid = int(_out(d.docker("inspect", "-f", "{{.State.Pid}}", cid)))
    old = d.supervisor_pid()
    os.kill(old, signal.SIGKILL)  # type: ignore[arg-type]
    wait_for(lambda: _out(d.docker("inspect", "-f", "{{.State.Running}}", cid)) == "false", "the container's end")
    state = json.loads(_out(d.docker("inspect", "-f", "{{json .State}}", cid)))
    assert state["ExitCode"] == 137 and "supervisor" in state["Error"]
    wait_for(lambda: not os.path.exists(f"/proc/{pid}"), "the orphaned init to be gone")
    assert d.supervisor_pid() != old  # a new one was started, and it runs containers again
    assert d.docker("run", "--rm", "busybox", "echo", "again").stdout == b"again\n"


def test_upgrade_keeps_an_older_supervisor_for_its_containers(restartable: Caisd) -> None:
    """caisd of a new build finds the supervisor of an older one: it says so, keeps it (and its
    containers) while they run, and replaces it once it supervises nothing."""
    d = restartable
    old = os.path.join(d.root, "old")
    shutil.copytree(os.path.dirname(cais.__file__), os.path.join(old, "cais"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    with open(os.path.join(old, "cais", "__init__.py"), "a") as f:
        f.write('\n__version__ = "0.0.9"\n')
    with open(os.path.join(old, "cais", "engine", "build.py"), "a") as f:
        f.write("\nPROTOCOL = 1\n")  # before `create`: caisd starts containers there with `start`
    d.kill(signal.SIGTERM)
    _stop_supervisor(d)
    d.env = {"PYTHONPATH": old}  # the "installed" cais before the upgrade
    d.start()
    cid = _out(d.docker("run", "-d", "busybox", "sh", "-c", "echo before; sleep 300"))
    old_supervisor = d.supervisor_pid()

    d.kill(signal.SIGTERM)
    d.env = {}
    d.start()  # the upgraded caisd
    assert d.supervisor_pid() == old_supervisor
    assert "runs cais 0.0.9" in d.read_log()
    info = json.loads(_out(d.docker("info", "--format", "{{json .Warnings}}")))
    assert any("cais 0.0.9" in w and "replaced once they have stopped" in w for w in info)
    assert "cais 0.0.9" in d.cais("info").stderr.decode()
    assert _out(d.docker("inspect", "-f", "{{.State.Running}}", cid)) == "true"
    assert _out(d.docker("logs", cid)) == "before"
    assert _out(d.docker("exec", cid, "echo", "exec works")) == "exec works"
    assert _out(d.docker("run", "--rm", "busybox", "echo", "started by protocol 1")) == "started by protocol 1"
    d.docker("rm", "-f", cid)  # nothing left under the old supervisor: replaced by one of our build
    wait_for(lambda: d.supervisor_pid() != old_supervisor, "the old supervisor's replacement")
    assert "replaced the idle supervisor" in d.read_log()
    assert d.docker("info", "--format", "{{json .Warnings}}").stdout.strip() == b"null"
    assert _out(d.docker("run", "--rm", "busybox", "echo", "new")) == "new"


def test_an_older_supervisor_is_not_asked_for_log_drivers_it_lacks(restartable: Caisd) -> None:
    """A supervisor of protocol 2 (from before the local driver and log attributes) kept for its
    containers after an upgrade: caisd refuses a local-driver or attributed start with a clear
    error (nothing started, nothing lost), and gives both once the old supervisor is replaced."""
    d = restartable
    old = os.path.join(d.root, "old")
    shutil.copytree(os.path.dirname(cais.__file__), os.path.join(old, "cais"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    with open(os.path.join(old, "cais", "__init__.py"), "a") as f:
        f.write('\n__version__ = "0.0.8"\n')
    with open(os.path.join(old, "cais", "engine", "build.py"), "a") as f:
        f.write("\nPROTOCOL = 2\n")
    with open(os.path.join(old, "cais", "engine", "logs.py"), "a") as f:
        f.write('\n_FORMATS = {"json-file": jsonfilelog}  # before the local driver\n')
    d.kill(signal.SIGTERM)
    _stop_supervisor(d)
    d.env = {"PYTHONPATH": old}
    d.start()
    cid = _out(d.docker("run", "-d", "busybox", "sh", "-c", "echo before; sleep 300"))
    old_supervisor = d.supervisor_pid()
    d.kill(signal.SIGTERM)
    d.env = {}
    d.start()
    assert d.supervisor_pid() == old_supervisor
    local = d.docker("run", "-d", "--name", "cais-en-local", "--log-driver", "local", "busybox", "true", check=False)
    assert local.returncode != 0
    error = local.stderr.decode()
    assert "cannot write the local log driver" in error and "cais 0.0.8" in error and "Traceback" not in error
    assert _out(d.docker("inspect", "-f", "{{.State.Status}}", "cais-en-local")) == "created"
    tagged = d.docker("run", "--rm", "--log-opt", "tag={{.Name}}", "busybox", "true", check=False)
    assert tagged.returncode != 0 and "cannot write log attributes" in tagged.stderr.decode()
    assert _out(d.docker("run", "--rm", "busybox", "echo", "json-file")) == "json-file"
    assert _out(d.docker("logs", cid)) == "before"
    d.docker("rm", "-f", cid)
    wait_for(lambda: d.supervisor_pid() != old_supervisor, "the old supervisor's replacement")
    started = d.docker("start", "-a", "cais-en-local", check=False)
    assert started.returncode == 0, started.stderr
    assert d.docker("logs", "cais-en-local").returncode == 0
    listed = d.docker("run", "-d", "--log-driver", "local", "busybox", "echo", "local").stdout.decode().strip()
    d.docker("wait", listed)
    assert _out(d.docker("logs", listed)) == "local"


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(p) for p in f.read().split()]


def _zygote_of(supervisor: int) -> int | None:
    """The zygote, not its spare init (a copy of it, in a pid namespace of its own)."""
    for child in _children(supervisor):
        try:
            with open(f"/proc/{child}/cmdline", "rb") as f:
                if b"zygote" in f.read() and os.readlink(f"/proc/{child}/ns/pid") == os.readlink("/proc/self/ns/pid"):
                    return child
        except OSError:  # a child that exited meanwhile
            continue
    return None


def test_inits_come_from_the_zygote_which_is_replaced_if_it_dies(restartable: Caisd) -> None:
    d = restartable
    supervisor = d.supervisor_pid()
    zygote = _zygote_of(supervisor)  # type: ignore[arg-type]
    assert zygote is not None
    with open(f"/proc/{zygote}/status") as f:
        zygote_ppid = next(int(line.split()[1]) for line in f if line.startswith("PPid:"))
    assert zygote_ppid == supervisor
    cid = _out(d.docker("run", "-d", "--network", "none", "busybox", "sleep", "60"))
    pid = int(_out(d.docker("inspect", "-f", "{{.State.Pid}}", cid)))
    assert pid in _children(supervisor)  # cloned by the zygote, the supervisor's child (it reaps it)
    # the start was answered once the init was released; its byte on the exec fifo read afterwards
    from cais import runtime
    wait_for(lambda: runtime.state(cid, root=os.path.join(d.exec_root, "runtime"))["status"] == "running",
             "the init's byte on its exec fifo")
    assert _out(d.docker("exec", cid, "cat", "/sys/class/net/lo/operstate")) in ("unknown", "up")
    # an exec comes from the zygote too (a helper joins the namespaces): confined as the init
    probe = "grep -E '^(Seccomp|CapBnd):' /proc/{0}/status; cat /proc/{0}/cgroup"
    confined = _out(d.docker("exec", cid, "sh", "-c", probe.format("self")))
    assert confined == _out(d.docker("exec", cid, "sh", "-c", probe.format(1))) and "Seccomp:\t2" in confined
    os.kill(zygote, signal.SIGKILL)
    assert _out(d.docker("exec", cid, "echo", "after")) == "after"  # a fresh bootstrap, or a new zygote
    assert _out(d.docker("run", "--rm", "busybox", "echo", "after")) == "after"
    wait_for(lambda: _zygote_of(supervisor) not in (None, zygote), "a new zygote")  # type: ignore[arg-type]
    assert d.docker("run", "--rm", "--network", "none", "busybox", "true").returncode == 0
    d.docker("rm", "-f", cid)


def test_removed_containers_leave_nothing_behind(restartable: Caisd) -> None:
    """A removal answers once the container is gone; its directories are deleted in the background,
    and what a crash left of them is swept at the next start."""
    d = restartable
    containers = os.path.join(d.data_root, "containers")
    layers = os.path.join(d.data_root, "storage", "overlay", "containers")
    assert d.docker("run", "--rm", "busybox", "true").returncode == 0
    kept = _out(d.docker("create", "busybox", "true"))
    d.docker("rm", kept)

    def only_a_spare() -> bool:  # what may stay: the next container's directory, made ahead
        names = os.listdir(layers)
        return len(names) <= 1 and all(n.startswith(".tmp-") and not n.startswith(".tmp-rm-") and sorted(
            os.listdir(os.path.join(layers, n))) == ["diff", "merged", "work"] for n in names)

    wait_for(lambda: os.listdir(containers) == [] and only_a_spare(), "the background deletions")
    left = os.path.join(containers, ".removed-" + "0" * 64)
    os.makedirs(os.path.join(left, "sub"))
    d.kill(signal.SIGKILL)
    d.start()
    assert os.listdir(containers) == []
    assert _out(d.docker("ps", "-aq")) == ""


def test_a_log_file_that_cannot_be_opened_fails_the_start_and_leaves_no_init(restartable: Caisd) -> None:
    """The supervisor opens the log file while the runtime creates the container: when it cannot,
    the container just created is deleted (no init left, no runtime state) and the start fails."""
    d = restartable
    supervisor = d.supervisor_pid()
    cid = _out(d.docker("create", "busybox", "sleep", "60"))
    log_path = _out(d.docker("inspect", "-f", "{{.LogPath}}", cid))
    os.mkdir(log_path)  # a directory where the log file goes
    before = set(_children(supervisor))  # type: ignore[arg-type]
    failed = d.docker("start", cid, check=False)
    assert failed.returncode != 0 and b"Traceback" not in failed.stderr, failed.stderr
    assert not os.path.exists(os.path.join(d.exec_root, "runtime", cid))
    wait_for(lambda: set(_children(supervisor)) <= before | {_zygote_of(supervisor), _spare_of(supervisor)},  # type: ignore[arg-type]
             "no init left")
    os.rmdir(log_path)
    assert d.docker("start", cid).returncode == 0
    assert _out(d.docker("inspect", "-f", "{{.State.Running}}", cid)) == "true"
    d.docker("rm", "-f", cid)


def _spare_of(supervisor: int) -> int | None:
    """The zygote's spare init (a copy of the zygote in a pid namespace of its own), if any now."""
    for child in _children(supervisor):
        try:
            with open(f"/proc/{child}/cmdline", "rb") as f:
                if b"zygote" in f.read() and os.readlink(f"/proc/{child}/ns/pid") != os.readlink("/proc/self/ns/pid"):
                    return child
        except OSError:
            continue
    return None


def test_concurrent_starts_and_execs_keep_every_exit_code(restartable: Caisd) -> None:
    """The supervisor creates in worker threads: a process that exits before it is registered
    (an exec'd `exit N`) still has its exit code reported."""
    from concurrent.futures import ThreadPoolExecutor
    d = restartable
    box = _out(d.docker("run", "-d", "busybox", "sleep", "60"))
    with ThreadPoolExecutor(6) as pool:
        execs = list(pool.map(lambda n: d.docker("exec", box, "sh", "-c", f"exit {n}", check=False).returncode,
                              range(1, 7)))
        runs = list(pool.map(lambda n: d.docker("run", "--rm", "busybox", "sh", "-c", f"echo {n}; exit {n}",
                                                check=False), range(1, 7)))
    assert execs == list(range(1, 7))
    assert [(r.returncode, r.stdout) for r in runs] == [(n, f"{n}\n".encode()) for n in range(1, 7)]
    d.docker("rm", "-f", box)


def test_an_interrupted_autoremove_is_finished_at_start(restartable: Caisd) -> None:
    """A --rm container that exited but was not removed (a crash came between) goes at the next start,
    as with dockerd; the image is then free to remove."""
    d = restartable
    cid = _out(d.docker("run", "-d", "busybox", "true"))
    assert _out(d.docker("wait", cid)) == "0"
    d.kill(signal.SIGKILL)
    path = os.path.join(d.data_root, "containers", cid, "config.v2.json")
    with open(path) as f:
        record = json.load(f)
    record["HostConfig"]["AutoRemove"] = True  # what the crash left: exited, not yet removed
    with open(path, "w") as f:
        json.dump(record, f)
    d.start()
    assert d.docker("inspect", cid, check=False).returncode != 0
    assert not os.path.exists(os.path.dirname(path))
    # a --rm container's record lost to a crash: the image store's row for it goes too
    lost = _out(d.docker("create", "--rm", "busybox", "true"))
    d.kill(signal.SIGKILL)
    shutil.rmtree(os.path.join(d.data_root, "containers", lost))
    d.start()
    rmi = d.docker("rmi", "busybox", check=False)
    assert rmi.returncode == 0, rmi.stderr  # no container (row) holds the image any more


def test_a_rm_container_that_exits_while_caisd_is_down_goes_at_its_start(restartable: Caisd) -> None:
    """Its exit is applied at the next start and the removal follows it; meanwhile a --rm container
    killed with caisd before its create ended leaves nothing behind."""
    d = restartable
    cid = _out(d.docker("run", "-d", "--rm", "busybox", "sh", "-c", "sleep 0.5; exit 5"))
    d.kill(signal.SIGKILL)
    wait_for(lambda: os.path.exists(os.path.join(d.data_root, "containers", cid, "exit.json")), "its exit")
    os.makedirs(os.path.join(d.data_root, "containers", "f" * 64))  # a --rm create cut short: no record yet
    d.start()
    assert d.docker("inspect", cid, check=False).returncode != 0
    assert os.listdir(os.path.join(d.data_root, "containers")) in ([], [f".removed-{cid}"])
    assert _out(d.docker("ps", "-aq")) == ""


def test_run_rm_events_in_dockers_order(restartable: Caisd) -> None:
    """create, attach, start, die, destroy — the removal made where the exit is recorded."""
    d = restartable
    since = str(int(time.time()) - 1)
    assert _out(d.docker("run", "--rm", "--name", "cais-en-rm-events", "busybox", "sh", "-c", "exit 3",
                         check=False)) == ""
    until = str(int(time.time()) + 1)
    events = d.docker("events", "--since", since, "--until", until, "--filter", "container=cais-en-rm-events",
                      "--format", "{{.Action}}")
    assert _out(events).splitlines() == ["create", "attach", "start", "die", "destroy"]
