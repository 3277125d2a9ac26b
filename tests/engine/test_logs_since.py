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
    f.write_many([(fmt.encode(m), m.time_ns) for m in entries])
    f.close()
    assert os.path.exists(path + ".4.gz")
    kept = [data for _, _, data in logs.read(path, driver)]
    shown = entries[len(entries) - len(kept):]  # what the kept files hold
    assert [m.text for m in shown] == kept
    for since in (shown[0].time_ns, shown[len(shown) // 3].time_ns, shown[-5].time_ns, shown[-1].time_ns + 1):
        assert [data for _, _, data in logs.read(path, driver, since=since)] == _expected(shown, since)
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
