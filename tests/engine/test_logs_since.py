"""`logs --since` finds where to start without reading what is older: json-file bisects on line
starts, local walks its length footers backwards, rotated files wholly older are skipped. What is
shown is what reading everything and filtering each entry shows — and what dockerd shows."""

from __future__ import annotations

import os
import random
import subprocess
import time

import pytest

from cais.engine import jsonfilelog, locallog, logs
from cais.engine.logfile import Message, Partial

FORMATS = {"json-file": jsonfilelog, "local": locallog}


def _entries(n: int, seed: int) -> list[Message]:
    """n entries, times rising, with now and then a long line cut in parts that carry the first
    part's (older) time while the other stream writes between them."""
    rnd = random.Random(seed)
    out: list[Message] = []
    t = 1_700_000_000_000_000_000
    while len(out) < n:
        t += rnd.randrange(1, 50_000_000)
        if rnd.random() < 0.02:
            first, pid = t, f"{len(out):064x}"
            for k in range(1, 4):
                out.append(Message("stdout", first, b"p" * rnd.randrange(1, 300), Partial(pid, k, k == 3)))
                t += rnd.randrange(1, 50_000_000)
                out.append(Message("stderr", t, b"between-%d" % len(out)))
        else:
            out.append(Message(rnd.choice(("stdout", "stderr")), t, b"line-%d-" % len(out) + b"x" * rnd.randrange(200)))
    return out


def _expected(entries: list[Message], since: int) -> list[bytes]:
    return [m.text for m in entries if m.time_ns >= since]


@pytest.mark.parametrize("driver", ["json-file", "local"])
def test_since_matches_reading_everything(tmp_root: str, driver: str) -> None:
    fmt = FORMATS[driver]
    entries = _entries(8000, seed=7)
    path = os.path.join(tmp_root, f"cais-lg-since-{driver}.log")
    offsets, pos = [], 0
    with open(path, "wb") as f:
        for m in entries:
            offsets.append(pos)
            data = fmt.encode(m)
            f.write(data)
            pos += len(data)
    times = sorted({m.time_ns for m in entries})
    rnd = random.Random(1)
    probes = [times[0] - 1, times[0], times[-1], times[-1] + 1, *rnd.sample(times, 20),
              *(t + 1 for t in rnd.sample(times, 10))]
    for since in probes:
        got = [data for _, _, data in logs.read(path, driver, since=since)]
        assert got == _expected(entries, since), since
        with open(path, "rb") as f:
            start = fmt.since_offset(f, pos, since)
        # never past the first entry to show, and close before it: what is older is mostly not read
        first = next((i for i, m in enumerate(entries) if m.time_ns >= since), len(entries))
        limit = offsets[first] if first < len(entries) else pos
        assert start <= limit
        older_before = [i for i in range(first) if entries[i].partial is None]
        if older_before:
            assert limit - start < 70 * 1024 if driver == "json-file" else start >= offsets[older_before[-1]]


@pytest.mark.parametrize("driver", ["json-file", "local"])
def test_since_through_rotations_and_damage(tmp_root: str, driver: str) -> None:
    entries = _entries(6000, seed=3)
    path = os.path.join(tmp_root, "cais-lg-rot", "container.log")
    settings = logs.log_settings({"Type": driver, "Config": {"max-size": "100k", "max-file": "5",
                                                             "compress": "true"}})
    assert settings is not None
    f = logs.RotatingFile(path, settings["max_size"], settings["max_file"], settings["compress"])
    fmt = FORMATS[driver]
    f.write_many([fmt.encode(m) for m in entries], [m.time_ns for m in entries])
    f.close()
    assert os.path.exists(path + ".4.gz")
    kept = [data for _, _, data in logs.read(path, driver)]
    shown = entries[len(entries) - len(kept):]  # what the kept files hold
    assert [m.text for m in shown] == kept
    for since in (shown[0].time_ns, shown[len(shown) // 3].time_ns, shown[-5].time_ns, shown[-1].time_ns + 1):
        assert [data for _, _, data in logs.read(path, driver, since=since)] == _expected(shown, since)
        followed = logs.read(path, driver, since=since, follow=True, running=lambda: False)
        assert [data for _, _, data in followed] == _expected(shown, since)
    # garbage in the middle of the current file: reading falls back to what it did before
    with open(path, "r+b") as out:
        out.seek(os.path.getsize(path) // 2)
        out.write(b"\xff\xff\xff\xff garbage")
    since = shown[-3].time_ns
    got = [data for _, _, data in logs.read(path, driver, since=since)]
    assert got == _expected(shown, since)


def test_since_as_dockerd(busybox_dir: str, tmp_root: str) -> None:
    """dockerd's own files (json-file, and local rotated into gzipped files): cais reads them with
    --since at several entries' times and shows what `docker logs --since` shows there. One stream:
    dockerd's two copiers stamp and write in turns, so its files of both are a little out of
    time order, and its own --since then skips rotated files by their last entry's time."""
    from tests.peers import dockerd
    tar = os.path.join(tmp_root, "busybox.tar")
    subprocess.run(["tar", "-C", busybox_dir, "-cf", tar, "."], check=True)
    with dockerd() as d:
        d.docker("import", tar, "cais-lg-busybox:latest")
        runs = {"json-file": [], "local": ["--log-opt", "max-size=100k", "--log-opt", "max-file=4"]}
        for driver, opts in runs.items():
            cid = d.docker("run", "-d", "--network=none", "--log-driver", driver, *opts, "cais-lg-busybox",
                           "seq", "1", "40000").stdout.decode().strip()
            assert d.docker("wait", cid).stdout.strip() == b"0", d.docker("logs", cid).stderr[-500:]
            if driver == "local":
                path = os.path.join(d.root, "data", "containers", cid, "local-logs", "container.log")
                deadline = time.monotonic() + 10
                while os.path.exists(path + ".1") and time.monotonic() < deadline:
                    time.sleep(0.1)  # dockerd compresses in the background (and its logs skip that file meanwhile)
                assert os.path.exists(path + ".1.gz")
            else:
                path = os.path.join(d.root, "data", "containers", cid, f"{cid}-json.log")
            stamped = [line.split(b" ", 1) for line in d.docker("logs", "-t", cid).stdout.splitlines()]
            assert len(stamped) > 1000
            full = [(logs.parse_timestamp_ns(stamp.decode()), text + b"\n") for stamp, text in stamped]
            rnd = random.Random(5)
            for k in [0, len(stamped) - 1, *rnd.sample(range(len(stamped)), 6)]:
                stamp = stamped[k][0].decode()
                since = logs.parse_timestamp_ns(stamp)
                ours = b"".join(data for _, _, data in logs.read(path, driver, since=since))
                assert ours == b"".join(text for t, text in full if t >= since), (driver, stamp)
                # dockerd 20.10's local driver skips every rotated file but the oldest once `since`
                # is past the oldest one's last entry (moby fixed it since): compare where it is right
                if driver == "json-file" or k in (0, len(stamped) - 1):
                    assert ours == d.docker("logs", "--since", stamp, cid).stdout, (driver, stamp)


@pytest.mark.parametrize("driver", ["json-file", "local"])
def test_lines_encoded_at_once_are_the_bytes_of_one_at_a_time(driver: str) -> None:
    """The writer's batch encoding (whole lines of a write) gives encode()'s bytes, entry by entry."""
    fmt = FORMATS[driver]
    lines = [b"", b"a", b"x" * 127, b"y" * 128, b"z" * 300, b"tab\there", b"<&>", "é".encode(), b"\xff", b'q"b\\']
    times = [1_700_000_000_000_000_000, 1_700_000_000_999_999_999, 1_700_000_001_000_000_000,
             1_700_000_001_000_000_100, 1_700_000_001_123_456_789, (1 << 28) + 5, 1_700_000_268_435_455,
             1_700_000_268_435_456, 1_700_000_300_000_000_010, 1_700_000_300_000_000_011]
    for stream in ("stdout", "stderr"):
        for chosen in (lines, lines[:6], [b"plain"] * 3):
            stamps = times[:len(chosen)]
            assert fmt.encode_lines(stream, chosen, stamps) == [
                fmt.encode(Message(stream, t, line)) for line, t in zip(chosen, stamps, strict=True)]


@pytest.mark.parametrize("driver", ["json-file", "local"])
def test_writer_cuts_as_docker_whatever_the_reads(tmp_root: str, driver: str) -> None:
    """The same bytes written in reads of any size (lines cut across reads, lines of 16 KiB and more,
    an unterminated end) give the same entries: the batch path and the partial path agree."""
    rnd = random.Random(11)
    data = b"".join(rnd.choice([b"short\n", b"", b"\n", b"a" * rnd.randrange(16_380, 16_390) + b"\n",
                                b"b" * rnd.randrange(1, 40_000) + b"\n", b"<esc>\x01\n"]) for _ in range(300))
    data += b"no newline at the end"
    results = []
    for sizes in ((1 << 16,), (1, 7, 4096, 16_384, 70_000), (len(data),)):
        path = os.path.join(tmp_root, f"cais-lg-cut-{len(results)}", "c.log")
        settings = logs.log_settings({"Type": driver, "Config": {}})
        assert settings is not None
        w = logs.LogWriter(path, settings)
        pos = 0
        while pos < len(data):
            n = rnd.choice(sizes)
            w.write("stdout", data[pos:pos + n])
            pos += n
        w.close()
        got = list(logs.read(path, driver))
        results.append([(s, d) for s, _, d in got])
        assert all(len(d.rstrip(b"\n")) <= 16_384 for _, _, d in got)
    assert results[0] == results[1] == results[2]
    assert b"".join(d for _, d in results[0]) == data


@pytest.mark.parametrize("driver", ["json-file", "local"])
def test_docker_logs_since_through_caisd(daemon, driver: str) -> None:  # type: ignore[no-untyped-def]
    """The docker CLI against caisd: `logs --since T` (also with -f on a stopped container, and with
    --until) shows exactly the entries `logs -t` stamps at T or later, across local's rotations."""
    opts = ["--log-opt", "max-size=200k", "--log-opt", "max-file=4"] if driver == "local" else []
    cid = daemon.docker("run", "-d", "--log-driver", driver, *opts, "busybox", "sh", "-c",
                        "seq 1 30000; seq 1 3000 >&2").stdout.decode().strip()
    try:
        daemon.docker("wait", cid, timeout=120)
        stamped = [line.split(b" ", 1) for line in daemon.docker("logs", "-t", cid, timeout=120).stdout.splitlines()]
        assert len(stamped) > 5000
        rnd = random.Random(2)
        for k in (0, len(stamped) // 2, *rnd.sample(range(len(stamped)), 3), len(stamped) - 1):
            stamp = stamped[k][0].decode()
            since = logs.parse_timestamp_ns(stamp)
            want = b"".join(text + b"\n" for t, text in stamped if logs.parse_timestamp_ns(t.decode()) >= since)
            assert daemon.docker("logs", "--since", stamp, cid).stdout == want, (k, stamp)
            assert daemon.docker("logs", "-f", "--since", stamp, cid).stdout == want, (k, stamp)
        since_text, until_text = stamped[len(stamped) // 2][0].decode(), stamped[-10][0].decode()
        since, until = logs.parse_timestamp_ns(since_text), logs.parse_timestamp_ns(until_text)
        want = b"".join(text + b"\n" for t, text in stamped if since <= logs.parse_timestamp_ns(t.decode()) <= until)
        assert daemon.docker("logs", "--since", since_text, "--until", until_text, cid).stdout == want
    finally:
        daemon.docker("rm", "-f", cid)
