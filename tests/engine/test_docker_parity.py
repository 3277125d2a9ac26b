"""Small things docker users notice, checked against dockerd 20.10 on the same busybox image:
exit codes and errors of processes that cannot start."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import tempfile
import time
from collections.abc import Iterator

import pytest

from tests.caisd import Caisd
from tests.peers import Dockerd, dockerd

pytestmark = pytest.mark.peers

Peer = Caisd | Dockerd


@pytest.fixture(scope="module")
def docker_peer(daemon: Caisd) -> Iterator[Dockerd]:
    """dockerd with caisd's busybox image (from a `cais save`)."""
    image = daemon.cais("save", "busybox").stdout
    with dockerd() as d:
        d.docker("load", input=image)
        yield d


def _name() -> str:
    return f"cais-pol-{secrets.token_hex(4)}"


def _runc_words(error: str) -> str:
    """The runtime's part of a start error: what dockerd wraps around runc's is dropped."""
    for wrapper in ("Error response from daemon: ", "OCI runtime exec failed: ", "unable to start container process: "):
        error = error.rpartition(wrapper)[2]
    return error.removesuffix(": unknown")


# ---- processes that cannot start ---------------------------------------------------------------
START_FAILURES = [
    ("nonexistent",),
    ("/etc/passwd",),  # not executable
    ("/etc",),  # a directory
    ("/nonexistent/x",),
    ("-u", "65534", "/root/x"),  # the lookup is made as the user: /root is closed to it
]


def _failed_run(d: Peer, args: tuple[str, ...]) -> dict:
    name = _name()
    try:
        *flags, cmd = args
        result = d.docker("run", "--name", name, "--network", "none", *flags, "busybox", cmd, check=False)
        state = json.loads(d.docker("inspect", "-f", "{{json .State}}", name).stdout)
        return {"rc": result.returncode, "status": state["Status"], "exit": state["ExitCode"],
                "error": _runc_words(state["Error"]), "finished": state["FinishedAt"],
                "said": _runc_words(result.stderr.decode().splitlines()[0])}
    finally:
        d.docker("rm", "-f", name, check=False)


def test_run_that_cannot_start_exits_as_with_dockerd(daemon: Caisd, docker_peer: Dockerd) -> None:
    ours = {args: _failed_run(daemon, args) for args in START_FAILURES}
    theirs = {args: _failed_run(docker_peer, args) for args in START_FAILURES}
    assert ours == theirs
    assert [ours[a]["rc"] for a in START_FAILURES] == [127, 126, 126, 127, 126]
    assert ours[("nonexistent",)]["error"] == 'exec: "nonexistent": executable file not found in $PATH'


@pytest.mark.parametrize("args", START_FAILURES)
def test_cais_run_exit_codes_are_the_docker_clis(daemon: Caisd, args: tuple[str, ...]) -> None:
    *flags, cmd = args
    expected = daemon.docker("run", "--rm", "--network", "none", *flags, "busybox", cmd, check=False)
    attached = daemon.cais("run", "--rm", "--network", "none", *flags, "busybox", cmd, check=False)
    detached = daemon.cais("run", "-d", "--rm", "--network", "none", *flags, "busybox", cmd, check=False)
    assert attached.returncode == detached.returncode == expected.returncode
    assert attached.stderr.decode().splitlines()[-1] in expected.stderr.decode()
    assert len(detached.stdout.split()) == 1  # the id, printed before the start, as docker does


def _start_attached(d: Peer, cais: bool = False) -> tuple[int, bytes, int, str]:
    """A script whose interpreter is missing: the start succeeds, the exec fails."""
    name = _name()
    with tempfile.TemporaryDirectory(prefix="cais-pol-") as tmp:
        script = os.path.join(tmp, "badsh")
        with open(script, "w") as f:
            f.write("#!/nonexistent\necho hi\n")
        os.chmod(script, 0o755)
        try:
            d.docker("create", "--name", name, "--network", "none", "busybox", "/badsh")
            d.docker("cp", script, f"{name}:/badsh")
            started = (d.cais if cais and isinstance(d, Caisd) else d.docker)("start", "-a", name, check=False)
            state = json.loads(d.docker("inspect", "-f", "{{json .State}}", name).stdout)
            return started.returncode, started.stderr, state["ExitCode"], state["Status"]
        finally:
            d.docker("rm", "-f", name, check=False)


def test_exec_failure_after_start_as_dockerd(daemon: Caisd, docker_peer: Dockerd) -> None:
    theirs = _start_attached(docker_peer)
    assert theirs == (1, b"exec /badsh: no such file or directory\n", 1, "exited")
    assert _start_attached(daemon) == theirs
    assert _start_attached(daemon, cais=True) == theirs


def test_cais_start_attach_of_a_container_that_cannot_start(daemon: Caisd) -> None:
    name = _name()
    daemon.cais("create", "--name", name, "--network", "none", "busybox", "nonexistent")
    try:
        for cli in (daemon.docker, daemon.cais):
            result = cli("start", "-a", name, check=False)
            assert result.returncode == 1
            assert b'exec: "nonexistent": executable file not found in $PATH' in result.stderr
    finally:
        daemon.cais("rm", "-f", name)


EXEC_FAILURES = [("nonexistent",), ("/etc/passwd",), ("/nonexistent/x",), ("-u", "65534", "/root/x")]


def _failed_execs(d: Peer, cli: str = "docker") -> list[tuple[int, str, int]]:
    name = _name()
    d.docker("run", "-d", "--name", name, "--network", "none", "busybox", "sleep", "300")
    try:
        results = []
        for args in EXEC_FAILURES:
            *flags, cmd = args
            result = getattr(d, cli)("exec", *flags, name, cmd, check=False)
            results.append((result.returncode, _runc_words(result.stdout.decode().strip())))
        return results
    finally:
        d.docker("rm", "-f", name, check=False)


def test_exec_that_cannot_start_as_dockerd(daemon: Caisd, docker_peer: Dockerd) -> None:
    theirs = _failed_execs(docker_peer)
    assert [rc for rc, _ in theirs] == [126] * len(EXEC_FAILURES)
    assert _failed_execs(daemon) == theirs
    assert _failed_execs(daemon, "cais") == theirs
    assert theirs[0][1] == 'exec: "nonexistent": executable file not found in $PATH'


def test_runtime_lookup_words_are_runcs(busybox_dir: str) -> None:
    """Go's exec.LookPath words, which docker clients read (no daemon needed)."""
    from cais.runtime.errors import ConfigError
    from cais.runtime.process import find_executable

    env = {"PATH": os.path.join(busybox_dir, "bin")}
    assert find_executable("sh", env) == os.path.join(busybox_dir, "bin", "sh")
    for name, words in ((os.path.join(busybox_dir, "etc"), "permission denied"),
                        ("/nonexistent/x", "stat /nonexistent/x: no such file or directory"),
                        ('we"ird', "executable file not found in $PATH")):
        with pytest.raises(ConfigError) as e:
            find_executable(name, env)
        assert str(e.value) == f"exec: {json.dumps(name)}: {words}"


# ---- users and groups ----------------------------------------------------------------------------
USERS_IMAGE = "cais-pol/users"
_USERS_SETUP = ("echo wheel:x:10:root,alice >> /etc/group; echo users:x:100:alice,bob >> /etc/group;"
                "echo staff:x:50: >> /etc/group; echo alicegrp:x:1000: >> /etc/group;"
                "echo alice:x:1000:1000:alice:/home/alice:/bin/sh >> /etc/passwd;"
                "echo bob:x:1001:100:bob:/home/bob:/bin/sh >> /etc/passwd")
USER_FLAGS = [(), ("-u", "root"), ("-u", "0"), ("-u", "alice"), ("-u", "1000"), ("-u", "bob"), ("-u", "alice:staff"),
              ("-u", "alice:50"), ("-u", "1000:1000"), ("-u", "2000"), ("-u", "2000:users"), ("-u", "0:0"),
              ("--group-add", "wheel"), ("--group-add", "0"), ("-u", "bob", "--group-add", "users", "--group-add", "4242"),
              ("-u", "nobody", "--group-add", "staff"), ("--group-add", "ghost"), ("-u", "alice:ghost"), ("-u", "ghost")]


def _users_image(d: Peer) -> None:
    """busybox with a group file listing members (the same steps on both daemons)."""
    name = _name()
    d.docker("run", "--name", name, "--network", "none", "busybox", "sh", "-c", _USERS_SETUP)
    d.docker("commit", name, USERS_IMAGE)
    d.docker("rm", name)


def _ids(d: Peer, cli: str = "docker") -> dict[tuple[str, ...], str]:
    out = {}
    for flags in USER_FLAGS:
        result = getattr(d, cli)("run", "--rm", "--network", "none", *flags, USERS_IMAGE, "id", check=False)
        out[flags] = result.stdout.decode().strip() or result.stderr.decode().splitlines()[0].partition(
            "Error response from daemon: ")[2]
    return out


def _exec_ids(d: Peer, cli: str = "docker") -> list[str]:
    name = _name()
    d.docker("run", "-d", "--name", name, "--network", "none", "--group-add", "staff", "-u", "bob", USERS_IMAGE,
             "sleep", "300")
    try:
        return [getattr(d, cli)("exec", *flags, name, "id").stdout.decode().strip()
                for flags in ((), ("-u", "alice"), ("-u", "root"), ("-u", "2000:users"))]
    finally:
        d.docker("rm", "-f", name, check=False)


def test_users_and_groups_as_dockerd(daemon: Caisd, docker_peer: Dockerd) -> None:
    for d in (daemon, docker_peer):
        _users_image(d)
    try:
        theirs = _ids(docker_peer)
        assert theirs[()] == "uid=0(root) gid=0(root) groups=0(root),10(wheel)"
        assert _ids(daemon) == theirs
        assert _ids(daemon, "cais") == theirs
        theirs_exec = _exec_ids(docker_peer)
        assert theirs_exec[0] == "uid=1001(bob) gid=100(users) groups=50(staff),100(users)"
        assert _exec_ids(daemon) == _exec_ids(daemon, "cais") == theirs_exec
    finally:
        for d in (daemon, docker_peer):
            d.docker("rmi", USERS_IMAGE, check=False)


# ---- repo digests --------------------------------------------------------------------------------
def _push_pull(d: Peer, ref: str) -> dict:
    """What a push then a pull of `ref` leave in the image's RepoDigests (digests made generic)."""
    def digests() -> list[str]:
        found = json.loads(d.docker("inspect", "-f", "{{json .RepoDigests}}", ref).stdout)
        return [r.replace(pushed, "DIGEST") for r in found]

    d.docker("tag", "busybox", ref)
    try:
        line = d.docker("push", ref, timeout=120).stdout.decode().splitlines()[-1]  # latest: digest: D size: N
        pushed = line.split()[2]
        after_push = digests()
        listed = d.docker("images", "--digests", "--format", "{{.Repository}} {{.Digest}}", ref).stdout.decode()
        removed = d.docker("rmi", ref).stdout.decode().replace(pushed, "DIGEST").splitlines()
        d.docker("pull", ref, timeout=120)
        return {"push": after_push, "listed": listed.replace(pushed, "DIGEST").strip(), "rmi": removed,
                "pull": digests()}
    finally:
        d.docker("rmi", ref, check=False)


def test_push_and_pull_record_repo_digests_as_dockerd(daemon: Caisd, docker_peer: Dockerd) -> None:
    from tests.registry.conftest import distribution_registry

    with distribution_registry() as reg:
        port = reg.host.rpartition(":")[2]
        ours = _push_pull(daemon, f"localhost:{port}/cais-pol/busybox")
        theirs = _push_pull(docker_peer, f"localhost:{port}/cais-pol/busybox")
    repo = f"localhost:{port}/cais-pol/busybox"
    assert theirs["push"] == [f"{repo}@DIGEST"]
    assert theirs["rmi"] == [f"Untagged: {repo}:latest", f"Untagged: {repo}@DIGEST"]
    assert ours == theirs


# ---- cais build's flags ---------------------------------------------------------------------------
def _flags(help_text: str) -> set[str]:
    import re
    return set(re.findall(r"^\s+(?:-\w, )?(--[\w-]+)", help_text, re.M)) - {"--help"}


def test_cais_build_takes_docker_builds_flags(daemon: Caisd, tmp_path) -> None:  # type: ignore[no-untyped-def]
    theirs = subprocess.run(["docker", "build", "--help"], capture_output=True, text=True).stdout
    ours = daemon.cais("build", "--help")
    assert ours.returncode == 0 and ours.stdout.decode().startswith("Usage:  cais build [OPTIONS] PATH | URL | -")
    assert _flags(theirs) <= _flags(ours.stdout.decode())
    for args, status in ((["--bogus", "."], 125), ([], 1), (["-m", "lots", "."], 125)):
        assert daemon.cais("build", *args, check=False).returncode == status
    (tmp_path / "Dockerfile").write_text("FROM busybox\nRUN echo built > /f\n")
    tag = _name()
    built = daemon.cais("build", "-q", "-t", tag, "--rm=false", "-m", "64m", "--build-arg", "A=1", str(tmp_path))
    try:
        assert built.stdout.decode().strip().startswith("sha256:")
        assert daemon.docker("run", "--rm", "--network", "none", tag, "cat", "/f").stdout == b"built\n"
    finally:
        daemon.docker("rmi", tag, check=False)


# ---- tables ---------------------------------------------------------------------------------------
TABLES = [("ps", "-a"), ("images",), ("volume", "ls"), ("network", "ls")]


def test_tables_are_laid_out_as_the_docker_clis(daemon: Caisd) -> None:
    """Go's tabwriter with docker's settings (minimum width 10, padding 3): empty and filled lists."""
    def both(*args: str) -> tuple[list[str], list[str]]:
        """The two CLIs' tables, asked again if they differ: what they show may change between the
        two calls (a relative CREATED ticks, "41 seconds ago"; a size the daemon is still reclaiming)."""
        for _ in range(3):
            theirs, ours = (daemon.docker(*args).stdout.decode().splitlines(),
                            daemon.cais(*args).stdout.decode().splitlines())
            if ours == theirs:
                break
        return theirs, ours

    for args in TABLES:  # empty: the header only
        theirs, ours = both(*args, "--filter", "label=cais-pol-none")
        assert ours == theirs and len(theirs) == 1, args
    label = f"cais-pol-{secrets.token_hex(3)}"
    volume = f"cais-pol-a-rather-long-volume-name-{secrets.token_hex(3)}"
    daemon.docker("volume", "create", "--label", label, volume)
    cid = daemon.docker("create", "--label", label, "--name", f"{label}-with-a-long-name", "--network", "none",
                        "busybox", "true").stdout.decode().strip()
    time.sleep(2)  # "Less than a second ago" and "1 second ago" differ in width: past them
    try:
        for args in TABLES:
            query = (*args, *{"images": ["busybox"], "network": []}.get(args[0], ["--filter", f"label={label}"]))
            theirs, ours = both(*query)
            assert ours[0] == theirs[0] and len(ours) == len(theirs) > 1, args
            if args[0] != "ps":  # a container's CREATED moves on too fast to be caught equal
                assert ours == theirs, args
        daemon.docker("run", "-d", "--name", f"{label}-top", "--network", "none", "busybox", "sleep", "60")
        theirs, ours = both("system", "df")
        assert ours == theirs  # sizes with 4 digits, "0B (0%)"
        theirs, ours = both("top", f"{label}-top")  # its own tabwriter: minimum width 20
        assert ours[0] == theirs[0] and ours[1].split() == theirs[1].split()[:3] + ours[1].split()[3:]
    finally:
        daemon.docker("rm", "-f", f"{label}-top", check=False)
        daemon.docker("rm", "-f", cid)
        daemon.docker("volume", "rm", volume)


def test_version_prints_goarch_as_the_docker_cli(daemon: Caisd) -> None:
    theirs = daemon.docker("version", "--format", "{{.Server.Arch}}").stdout.decode().strip()
    assert theirs == "amd64" or os.uname().machine != "x86_64"
    assert daemon.cais("version", "--format", "{{.Client.Arch}}").stdout.decode().strip() == theirs
    assert daemon.cais("version", "--format", "{{.Server.Arch}}").stdout.decode().strip() == theirs


def test_rmi_force_refuses_an_image_a_running_container_uses(daemon: Caisd) -> None:
    """As dockerd: `rmi -f` of an image that a running container uses is a conflict that cannot be
    forced (the engine says what runs; the image store keeps no flag of it); stopped, one that must be."""
    tag = f"cais-en-rmi-{secrets.token_hex(3)}:1"
    daemon.docker("tag", "busybox", tag)
    image_id = daemon.docker("image", "inspect", "-f", "{{.Id}}", tag).stdout.decode().strip()
    cid = daemon.docker("run", "-d", tag, "sleep", "300").stdout.decode().strip()
    try:
        refused = daemon.docker("rmi", "-f", image_id, check=False)
        assert refused.returncode != 0
        assert "(cannot be forced) - image is being used by running container" in refused.stderr.decode()
        assert daemon.docker("image", "inspect", tag, check=False).returncode == 0
        daemon.docker("stop", "-t", "0", cid)
        stopped = daemon.docker("rmi", image_id, check=False)  # not forced: a soft conflict now
        assert stopped.returncode != 0 and "must be forced" in stopped.stderr.decode()
    finally:
        daemon.docker("rm", "-f", cid, check=False)
        daemon.docker("rmi", tag, check=False)
