"""The CLI's flag parser: docker's (pflag) syntax, errors, exit statuses and --help."""

from __future__ import annotations

import os
import subprocess

import pytest

from cais.cli.args import ArgumentTypeError, Parser, duration_ns, size
from cais.cli.main import CliError
from cais.cli.runopts import add_container_flags, container_body
from tests.caisd import VENV_BIN


def _run_parser() -> Parser:
    p = Parser("run", "[OPTIONS] IMAGE [COMMAND] [ARG...]", interspersed=False)
    add_container_flags(p)
    return p


def test_mount_flags_in_the_body() -> None:
    host = container_body(_run_parser().parse_args(["busybox"]))["HostConfig"]
    assert (host["Binds"], host["Mounts"], host["Tmpfs"]) == (None, None, None)
    body = container_body(_run_parser().parse_args(["-v", "/anon", "-v", "name:/n", "--mount", "type=tmpfs,dst=/t",
                                                    "--tmpfs", "/x:size=1m", "busybox"]))
    assert body["Volumes"] == {"/anon": {}}
    assert (body["HostConfig"]["Binds"], body["HostConfig"]["Tmpfs"]) == (["name:/n"], {"/x": "size=1m"})
    assert body["HostConfig"]["Mounts"] == [{"Type": "tmpfs", "Target": "/t"}]


def test_flag_forms() -> None:
    opts = _run_parser().parse_args(["-it", "--rm", "-e", "A=1", "-eB=2", "-e=C=3", "--env=D=4", "--name", "x",
                                     "-m", "64m", "--memory-swap=-1", "--cpus", "1.5", "-p80:80", "--rm=false",
                                     "busybox", "sh", "-c", "echo -e --rm"])
    assert opts.interactive and opts.tty and not opts.rm
    assert opts.env == ["A=1", "B=2", "C=3", "D=4"]
    assert (opts.name, opts.memory, opts.memory_swap, opts.cpus) == ("x", 64 << 20, -1, 1_500_000_000)
    assert opts.publish == ["80:80"]
    assert (opts.image, opts.command) == ("busybox", ["sh", "-c", "echo -e --rm"])  # flags end at the image
    assert (opts.network, opts.pull, opts.label) == (None, "missing", [])  # defaults, lists not shared
    assert _run_parser().parse_args(["--", "busybox", "-x"]).command == ["-x"]


def test_interspersed_flags_and_positionals() -> None:
    p = Parser("rm", "[OPTIONS] CONTAINER [CONTAINER...]")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("containers", nargs="+")
    opts = p.parse_args(["a", "-f", "b"])
    assert opts.force and opts.containers == ["a", "b"]
    p = Parser("port", "CONTAINER [PRIVATE_PORT[/PROTO]]")
    p.add_argument("container")
    p.add_argument("port", nargs="?")
    assert vars(p.parse_args(["c"])) == {"help": False, "container": "c", "port": None}
    assert p.parse_args(["c", "80"]).port == "80"


@pytest.mark.parametrize(("args", "message"), [
    (["--foo"], "unknown flag: --foo"),
    (["-x", "busybox"], "unknown shorthand flag: 'x' in -x"),
    (["--name"], "flag needs an argument: --name"),
    (["-e"], "flag needs an argument: 'e' in -e"),
    (["-m", "lots", "busybox"], "invalid argument \"lots\" for \"-m, --memory\" flag: invalid size: 'lots'"),
    (["-c", "x", "busybox"], 'invalid argument "x" for "-c, --cpu-shares" flag: strconv.ParseInt: parsing "x": '
                             "invalid syntax"),
    (["--cpus", "x", "busybox"], 'invalid argument "x" for "--cpus" flag: failed to parse x as a rational number'),
    (["--rm=maybe", "busybox"], 'invalid argument "maybe" for "--rm" flag: strconv.ParseBool: parsing "maybe": '
                                "invalid syntax"),
    (["--pull", "x", "busybox"], 'invalid argument "x" for "--pull" flag: must be one of "always", "missing" '
                                 'or "never"'),
])
def test_flag_errors_are_dockers(args: list[str], message: str) -> None:
    with pytest.raises(CliError) as e:
        _run_parser().parse_args(args)
    assert e.value.status == 125
    assert str(e.value) == (f"{message}\n\nUsage:  cais run [OPTIONS] IMAGE [COMMAND] [ARG...]\n\n"
                            "Run 'cais run --help' for more information")


def test_argument_count_errors() -> None:
    p = Parser("rename", "CONTAINER NEW_NAME")
    p.add_argument("container")
    p.add_argument("name")
    with pytest.raises(CliError) as e:
        p.parse_args(["a"])
    assert e.value.status == 1 and str(e.value).startswith("cais: 'cais rename' requires 2 arguments\n")
    p = Parser("ps", "[OPTIONS]")
    with pytest.raises(CliError, match="'cais ps' accepts no arguments"):
        p.parse_args(["x"])
    with pytest.raises(CliError, match="requires at least 1 argument$|requires at least 1 argument\n"):
        _run_parser().parse_args(["-d"])


def test_help_lists_every_flag() -> None:
    with pytest.raises(CliError) as e:
        _run_parser().parse_args(["--rm", "--help"])
    assert e.value.status == 0
    text = str(e.value)
    assert text.startswith("Usage:  cais run [OPTIONS] IMAGE [COMMAND] [ARG...]\n")
    assert "  -m, --memory bytes " in text and "      --rm " in text and "  -e, --env list " in text
    for flag in ("--health-start-period", "--oom-kill-disable", "--security-opt", "--volumes-from", "--pull"):
        assert flag in text
    # without a -h flag of its own, -h is help; run's -h is --hostname
    p = Parser("ps", "[OPTIONS]")
    with pytest.raises(CliError, match="^Usage:  cais ps"):
        p.parse_args(["-h"])
    assert _run_parser().parse_args(["-h", "box", "busybox"]).hostname == "box"


def test_sizes_and_durations() -> None:
    assert [size(t) for t in ("512", "512b", "64k", "64kb", "1.5g", "100MB", "2GiB", "10 m")] == [
        512, 512, 64 << 10, 64 << 10, 3 << 29, 100 << 20, 2 << 30, 10 << 20]
    for bad in ("", "lots", "1x", "-1", "1..5m", "m"):
        with pytest.raises(ArgumentTypeError):
            size(bad)
    assert duration_ns("1m30s") == 90_000_000_000 and duration_ns("500ms") == 500_000_000 and duration_ns("0") == 0
    for bad in ("10", "1x", "s", "1.2.3s"):
        with pytest.raises(ArgumentTypeError):
            duration_ns(bad)


def test_cli_flag_error_is_dockers_without_daemon() -> None:
    result = subprocess.run([os.path.join(VENV_BIN, "cais"), "-H", "unix:///nonexistent/cais-en.sock", "run",
                             "--memory", "lots", "busybox"], capture_output=True)
    assert result.returncode == 125 and b"Traceback" not in result.stderr
    assert result.stderr.decode().splitlines()[0] == \
        "invalid argument \"lots\" for \"-m, --memory\" flag: invalid size: 'lots'"


def test_bool_flag_on_by_default() -> None:
    """`network create --ipv4=false`: a boolean flag that is on unless turned off."""
    p = Parser("network create", "[OPTIONS] NETWORK")
    p.add_argument("--ipv4", action="store_true", default=True)
    p.add_argument("--ipv6", action="store_true")
    assert p.parse_args([]).ipv4 and not p.parse_args([]).ipv6
    assert not p.parse_args(["--ipv4=false"]).ipv4 and p.parse_args(["--ipv4"]).ipv4
