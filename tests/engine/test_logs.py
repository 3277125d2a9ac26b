"""Log drivers on real files: docker's local format (protobuf frames), rotation, gzip, tail, since,
follow, partial lines, option validation; and dockerd's own local-driver files read back and
re-encoded byte for byte."""

from __future__ import annotations

import gzip
import io
import json
import os
import pathlib
import subprocess
import threading
import time

import pytest

from cais.engine import jsonfilelog, locallog, logs
from cais.engine.errors import InvalidParameter
from cais.engine.logfile import Message, Partial, gzip_last_time
from tests.wait import wait_for


def _writer(path: str, driver: str, **opts: str) -> logs.LogWriter:
    settings = logs.log_settings({"Type": driver, "Config": opts})
    assert settings is not None
    return logs.LogWriter(path, settings)


def _texts(path: str, driver: str, **kw) -> list[bytes]:  # type: ignore[no-untyped-def]
    return [data for _, _, data in logs.read(path, driver, **kw)]


def test_local_entry_bytes() -> None:
    """The exact bytes gogo/protobuf writes for docker (fields in order, defaults left out)."""
    whole = locallog.encode(Message("stdout", 1, b"hi"))
    assert whole == b"\0\0\0\x0e" + b"\n\x06stdout" + b"\x10\x01" + b"\x1a\x02hi" + b"\0\0\0\x0e"
    part = Message("stderr", 2**62, b"", Partial("ab", 300, True))
    encoded = locallog.encode(part)
    assert locallog.decode_entry(encoded[4:-4]) == part
    assert b"\x1a" not in encoded[12:14]  # an empty line is left out
    assert locallog.decode_entry(locallog.encode(Message("stdout", -5, b"x"))[4:-4]).time_ns == -5


@pytest.mark.parametrize("driver", ["local", "json-file"])
def test_rotation_compression_tail_since(tmp_root: str, driver: str) -> None:
    path = os.path.join(tmp_root, "cais-logs", "container.log")
    w = _writer(path, driver, **{"max-size": "1k", "max-file": "4", "compress": "true"})
    stamps = []
    for i in range(1, 201):
        w.write("stdout", f"out-{i}\n".encode())
        w.write("stderr", f"err-{i}\n".encode())
        if i == 195:
            stamps.append(time.time_ns())
    w.write("stdout", b"tail-without-newline")
    w.close()
    names = sorted(os.listdir(os.path.dirname(path)))
    assert names == ["container.log", "container.log.1.gz", "container.log.2.gz", "container.log.3.gz"]
    with open(path + ".1.gz", "rb") as f:
        last = gzip_last_time(f)
    assert last and last.endswith("Z")
    everything = _texts(path, driver)
    assert everything[-1] == b"tail-without-newline"
    assert everything[-3:-1] == [b"out-200\n", b"err-200\n"]
    # tail counts both streams, then the stream selection applies (as docker)
    assert _texts(path, driver, tail=3) == [b"out-200\n", b"err-200\n", b"tail-without-newline"]
    assert _texts(path, driver, tail=3, stderr=False) == [b"out-200\n", b"tail-without-newline"]
    n = len(everything)
    assert _texts(path, driver, tail=n + 50) == everything
    assert _texts(path, driver, tail=n - 7) == everything[7:]  # reaches into the compressed files
    assert _texts(path, driver, tail=0) == []
    since = _texts(path, driver, since=stamps[0])
    assert since[0] == b"out-196\n" and since[-1] == b"tail-without-newline"
    until = _texts(path, driver, until=stamps[0], stdout=False)
    assert until[-1] == b"err-195\n"


@pytest.mark.parametrize("driver", ["local", "json-file"])
def test_attributes_labels_env_tag(tmp_root: str, driver: str) -> None:
    record = {"Id": "ab" * 32, "Name": "/cais-en-web", "Image": "sha256:" + "cd" * 32,
              "Config": {"Image": "busybox", "Labels": {"app": "web", "tier": "front", "x": "1"},
                         "Env": ["PATH=/bin", "MODE=fast lane", "EMPTY="]},
              "HostConfig": {"LogConfig": {"Type": driver, "Config": {
                  "labels": "app,missing", "labels-regex": "^ti", "env": "MODE,EMPTY", "tag": "{{.Name}}@{{.ImageID}}"}}}}
    settings = logs.log_settings(record["HostConfig"]["LogConfig"])
    assert settings is not None
    settings["attrs"] = [list(pair) for pair in logs.log_attrs(record)]  # as JSON carries them
    assert logs.log_attrs(record) == (("EMPTY", ""), ("MODE", "fast lane"), ("app", "web"),
                                      ("tag", "cais-en-web@" + "cd" * 6), ("tier", "front"))
    path = os.path.join(tmp_root, "attrs", "container.log")
    w = logs.LogWriter(path, settings)
    w.write("stdout", b"hello\n")
    w.close()
    if driver == "json-file":
        with open(path) as f:
            assert list(json.loads(f.readline())) == ["log", "stream", "attrs", "time"]
    assert _texts(path, driver, with_details=True) == [
        b"EMPTY=,MODE=fast+lane,app=web,tag=cais-en-web%40" + b"cd" * 6 + b",tier=front hello\n"]
    assert _texts(path, driver) == [b"hello\n"]
    with pytest.raises(InvalidParameter, match="invalid tag template"):
        logs.log_settings({"Type": driver, "Config": {"tag": "{{.Nope}}"}})
    with pytest.raises(InvalidParameter, match="invalid env-regex"):
        logs.log_settings({"Type": driver, "Config": {"env-regex": "("}})


def test_long_lines_are_partial_messages(tmp_root: str) -> None:
    path = os.path.join(tmp_root, "local", "container.log")
    w = _writer(path, "local")
    w.write("stdout", b"a" * 40000 + b"\nshort\n")
    w.close()
    with open(path, "rb") as f:
        msgs = list(locallog.decode(f))
    assert [len(m.line) for m in msgs] == [16384, 16384, 7232, 5]
    ids = {m.partial.id for m in msgs[:3] if m.partial}
    assert len(ids) == 1 and [m.partial.ordinal for m in msgs[:3] if m.partial] == [1, 2, 3]
    assert [m.partial.last for m in msgs[:3] if m.partial] == [False, False, True]
    assert msgs[3].partial is None
    assert b"".join(_texts(path, "local")) == b"a" * 40000 + b"\nshort\n"


@pytest.mark.parametrize("driver", ["local", "json-file"])
def test_follow_across_rotations(tmp_root: str, driver: str) -> None:
    """Many rotations (and compressions) between two looks of the follower lose nothing."""
    path = os.path.join(tmp_root, "follow", "container.log")
    w = _writer(path, driver, **{"max-size": "150", "max-file": "60", "compress": "true"})
    w.write("stdout", b"first\n")
    following = threading.Event()
    done = threading.Event()

    def produce() -> None:
        following.wait(10)
        for i in range(150):
            w.write("stdout", f"line-{i:03d}\n".encode())
            if i % 50 == 49:
                time.sleep(0.1)
        w.close()
        done.set()

    got = []
    thread = threading.Thread(target=produce)
    thread.start()
    for _, _, data in logs.read(path, driver, follow=True, running=lambda: not done.is_set(), poll=0.05):
        got.append(data)
        following.set()
    thread.join()
    assert len([n for n in os.listdir(os.path.dirname(path)) if n.endswith(".gz")]) > 10
    assert got == [b"first\n", *[f"line-{i:03d}\n".encode() for i in range(150)]]


def test_damaged_files_do_not_break_reading(tmp_root: str) -> None:
    path = os.path.join(tmp_root, "bad", "container.log")
    w = _writer(path, "local", **{"max-size": "200", "max-file": "3"})
    for i in range(30):
        w.write("stdout", f"entry-{i}\n".encode())
    w.close()
    with open(path + ".1.gz", "r+b") as f:
        f.truncate(os.path.getsize(path + ".1.gz") // 2)  # a cut archive
    with open(path, "ab") as f:
        f.write(b"\0\0\0\x05abc")  # an entry being written
    texts = _texts(path, "local")
    assert texts[-1] == b"entry-29\n" and _texts(path, "local", tail=1) == [b"entry-29\n"]
    with open(path, "r+b") as f:
        f.write(b"\xff\xff")  # a garbage header: the file is skipped, with a warning
    assert _texts(path, "local", tail=2)


def test_writer_dead_between_rename_and_new_file(tmp_root: str) -> None:
    path = os.path.join(tmp_root, "gap", "container.log")
    w = _writer(path, "local", **{"max-size": "100", "max-file": "3"})
    for i in range(12):
        w.write("stdout", f"entry-{i}\n".encode())
    w.close()
    os.rename(path, path + ".x")  # as if the supervisor died there: only rotated files
    texts = _texts(path, "local", follow=True, running=lambda: True)
    assert texts and texts[-1] != b"entry-11\n" and all(t.startswith(b"entry-") for t in texts)


def test_crash_leftover_is_compressed_on_reopen(tmp_root: str) -> None:
    path = os.path.join(tmp_root, "left", "container.log")
    os.makedirs(os.path.dirname(path))
    with open(path + ".1", "wb") as f:
        f.write(locallog.encode(Message("stdout", time.time_ns(), b"old")))
    w = _writer(path, "local")
    w.write("stdout", b"new\n")
    w.close()
    assert not os.path.exists(path + ".1") and os.path.exists(path + ".1.gz")
    assert _texts(path, "local") == [b"old\n", b"new\n"]


@pytest.mark.parametrize(("driver", "opts", "error"), [
    ("local", {"max-file": "1"}, "compression cannot be enabled when max file count is 1"),
    ("local", {"compress": "maybe"}, "invalid boolean value for compress"),
    ("local", {"max-size": "-1"}, "invalid value for max-size: -1: invalid size: '-1'"),
    ("local", {"max-size": "abc"}, "invalid size: 'abc'"),
    ("local", {"max-file": "x"}, "invalid value for max-file"),
    ("local", {"max-file": "-2", "compress": "false"}, "max-file must not be negative"),
    ("local", {"foo": "bar"}, "unknown log opt 'foo' for local log driver"),
    ("json-file", {"max-file": "0"}, "max-file cannot be less than 1"),
    ("json-file", {"max-size": "0"}, "max-size must be a positive number"),
    ("json-file", {"compress": "true", "max-file": "2"}, "compress cannot be true"),
    ("syslog", {}, "not supported"),
    ("local", {"max-size": 5}, "must map option names to strings"),
    ("local", {"max-size": "1.2.3m"}, "invalid size"),
    ("local", "max-size=1m", "must map option names to strings"),
])
def test_bad_options(driver: str, opts: dict, error: str) -> None:
    with pytest.raises(InvalidParameter, match=error.replace("(", r"\(")):
        logs.log_settings({"Type": driver, "Config": opts})
    default = {"Type": "none", "Config": {}}
    with pytest.raises(InvalidParameter, match=error.replace("(", r"\(")):
        logs.log_settings(logs.merge_log_config({"Type": driver, "Config": opts}, default))  # type: ignore[arg-type]


@pytest.mark.parametrize("config", ["local", ["local"], {"Type": 5}])
def test_malformed_log_config(config: object) -> None:
    with pytest.raises(InvalidParameter, match="LogConfig must be an object"):
        logs.log_settings(logs.merge_log_config(config, {"Type": "json-file", "Config": {}}))  # type: ignore[arg-type]


def test_option_values() -> None:
    assert logs.log_settings({"Type": "local"}) == {"driver": "local", "max_size": 20 * 1024 * 1024, "max_file": 5,
                                                    "compress": True}
    assert logs.log_settings({"Type": "local", "Config": {"max-size": "0", "max-file": "0", "compress": "F"}}) == {
        "driver": "local", "max_size": None, "max_file": 1, "compress": False}
    assert logs.parse_size("1.5m") == 1_500_000 and logs.parse_size("2KiB") == 2000 and logs.parse_size("7") == 7
    assert logs.parse_timestamp_ns("1700000000.5") == 1_700_000_000_500_000_000
    assert logs.parse_timestamp_ns("2023-11-14T22:13:20.000000001+00:00") == 1_700_000_000_000_000_001


def test_dockerd_files_read_and_reencoded(busybox_dir: str, tmp_root: str) -> None:
    """dockerd writes local-driver files (rotated, gzipped) and json-file ones (with attributes):
    cais reads what `docker logs` shows and re-encodes every entry to the very same bytes."""
    from tests.peers import dockerd
    tar = os.path.join(tmp_root, "busybox.tar")
    subprocess.run(["tar", "-C", busybox_dir, "-cf", tar, "."], check=True)
    with dockerd() as d:
        d.docker("import", tar, "cais-logs-busybox:latest")
        cid = d.docker("run", "-d", "--network=none", "--log-driver", "local", "--log-opt", "max-size=1k",
                       "--log-opt", "max-file=3", "cais-logs-busybox", "sh", "-c",
                       "for i in $(seq 1 60); do echo line-$i; done; head -c 20000 /dev/zero | tr '\\0' x; "
                       "echo; printf end").stdout.decode().strip()
        # json-file with what Go escapes, and the attributes of labels, env and tag
        jid = d.docker("run", "-d", "--network=none", "--name", "cais-logs-attrs", "--label", "cais.a=1",
                       "--log-opt", "labels=cais.a", "-e", "CAIS_E=v w", "--log-opt", "env=CAIS_E",
                       "--log-opt", "tag={{.Name}}/{{.ID}}", "cais-logs-busybox", "sh", "-c",
                       "printf '<a&b> \\303\\251 \\342\\200\\250 \\033[0m\\t\\n'; printf 'no end'"
                       ).stdout.decode().strip()
        d.docker("wait", cid)
        d.docker("wait", jid)
        shown = d.docker("logs", cid).stdout
        path = os.path.join(d.root, "data", "containers", cid, "local-logs", "container.log")
        # rotated, then compressed in the background (as dockerd does)
        wait_for(lambda: not os.path.exists(path + ".1") and os.path.exists(path + ".1.gz"), "the compression")
        # dockerd 20.10 forgets the newline of a long line's last part (moby fixed it since): so do
        # we not, and compare the rest
        ours = b"".join(_texts(path, "local"))
        assert ours.endswith(b"x\nend") and ours.replace(b"x\nend", b"xend") == shown
        tail = b"".join(_texts(path, "local", tail=2))
        assert tail.replace(b"x\nend", b"xend") == d.docker("logs", "--tail", "2", cid).stdout
        for name in (path, path + ".1.gz"):
            raw = pathlib.Path(name).read_bytes()
            raw = gzip.decompress(raw) if name.endswith(".gz") else raw
            again = b"".join(locallog.encode(m) for m in locallog.decode(io.BytesIO(raw)))
            assert again == raw
        with open(path + ".1.gz", "rb") as f:
            assert gzip_last_time(f)
        jpath = os.path.join(d.root, "data", "containers", jid, f"{jid}-json.log")
        raw = pathlib.Path(jpath).read_bytes()
        with open(jpath, "rb") as f:
            assert b"".join(jsonfilelog.encode(m) for m in jsonfilelog.decode(f)) == raw
        assert b"".join(_texts(jpath, "json-file", with_details=True)) == d.docker("logs", "--details", jid).stdout
        assert _texts(jpath, "json-file", with_details=True)[0].startswith(
            f"CAIS_E=v+w,cais.a=1,tag=cais-logs-attrs%2F{jid[:12]} <a&b>".encode())


def test_daemon_default_log_driver(tmp_root: str) -> None:
    """log-driver/log-opts (flags or daemon.json) as dockerd: the default driver and its options
    for containers that name none; a container of that driver gets the options it does not set."""
    import json

    from tests.caisd import VENV_BIN, caisd
    with caisd(extra=["--log-driver", "local", "--log-opt", "max-size=1k", "--log-opt", "max-file=2"]) as d:
        assert d.docker("info", "-f", "{{.LoggingDriver}}").stdout == b"local\n"

        def log_config(*flags: str) -> dict:
            cid = d.docker("create", *flags, "busybox", "true").stdout.decode().strip()
            return json.loads(d.docker("inspect", "-f", "{{json .HostConfig.LogConfig}}", cid).stdout)
        assert log_config() == {"Type": "local", "Config": {"max-size": "1k", "max-file": "2"}}
        assert log_config("--log-opt", "max-file=3") == {"Type": "local", "Config": {"max-size": "1k",
                                                                                      "max-file": "3"}}
        assert log_config("--log-driver", "json-file") == {"Type": "json-file", "Config": {}}
        cid = d.docker("run", "-d", "busybox", "echo", "by default").stdout.decode().strip()
        d.docker("wait", cid)
        assert d.docker("logs", cid).stdout == b"by default\n"
        assert os.path.exists(os.path.join(d.data_root, "containers", cid, "local-logs", "container.log"))
    cfg = os.path.join(tmp_root, "daemon.json")
    with open(cfg, "w") as f:
        json.dump({"log-driver": "local", "log-opts": {"max-file": "1"}}, f)
    bad = subprocess.run([os.path.join(VENV_BIN, "caisd"), "--config-file", cfg, "--data-root", f"{tmp_root}/data",
                          "--exec-root", f"{tmp_root}/exec", "-H", f"unix://{tmp_root}/d.sock"],
                         capture_output=True, timeout=60)
    assert bad.returncode == 1 and b"compression cannot be enabled" in bad.stderr and b"Traceback" not in bad.stderr


def test_a_fast_big_output_is_logged_whole() -> None:
    """A container printing 100,000 lines as fast as it can: every line is logged in order (the
    supervisor writes a read's entries at once), through local's rotations too; `logs` (batched
    frames), `--tail` and `-t` give them back."""
    from tests.caisd import caisd
    n = 100_000
    want = b"".join(b"%d\n" % i for i in range(1, n + 1))
    with caisd() as d:
        for driver, opts in (("json-file", []), ("local", ["--log-opt", "max-size=1m", "--log-opt", "max-file=10"])):
            cid = d.docker("run", "-d", "--log-driver", driver, *opts, "busybox", "seq", "1", str(n)
                           ).stdout.decode().strip()
            d.docker("wait", cid, timeout=120)
            assert d.docker("logs", cid, timeout=120).stdout == want, driver
            assert d.docker("logs", "--tail", "3", cid).stdout == b"99998\n99999\n100000\n"
            stamped = d.docker("logs", "-t", cid, timeout=120).stdout.splitlines()
            assert len(stamped) == n and stamped[-1].endswith(b"Z 100000")
        rotated = os.listdir(os.path.join(d.data_root, "containers", cid, "local-logs"))
        assert "container.log.1.gz" in rotated
