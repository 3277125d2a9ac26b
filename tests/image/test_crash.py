"""Crash safety: SIGKILL a process in the middle of a blob write and of a register."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

from cais.image.content import digest_bytes
from tests.image.builders import put_image, tar_layer
from tests.image.conftest import make_store

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def child(code: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for(predicate, proc, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_sigkill_during_blob_write(image_root):
    data = os.urandom(4 << 20)
    expected = digest_bytes(data)
    proc = child(f"""
        import os, sys, time
        from tests.image.conftest import make_store
        store = make_store({image_root!r})
        w = store.content.writer({expected!r}, {len(data)}, ref="cais-crash")
        data = open({os.path.join(image_root, "data")!r}, "rb").read()
        for i in range(0, len(data), 65536):
            w.write(data[i:i + 65536])
            w._file.flush()
            time.sleep(0.01)
        w.commit()
    """)
    with open(os.path.join(image_root, "data"), "wb") as f:
        f.write(data)
    store = make_store(image_root)
    try:
        partial = os.path.join(store.content.root, "ingest", "cais-crash")
        wait_for(lambda: os.path.exists(partial) and os.path.getsize(partial) > 256 << 10, proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert not store.content.has(expected)  # never visible half-written
        # the partial ingest is resumable: the writer rehashes what is there and continues
        w = store.content.writer(expected, len(data), ref="cais-crash")
        assert 0 < w.offset < len(data)
        w.write(data[w.offset:])
        assert w.commit() == expected and store.content.verify(expected)
    finally:
        store.close()


def test_sigkill_during_register(image_root):
    store = make_store(image_root)
    try:
        big = tar_layer({f"d{i // 500}/f{i}": os.urandom(64) * 32 for i in range(1500)})
        small = tar_layer({"top": b"top\n"})
        digest = put_image(store, [big, small], "gzip")
        proc = child(f"""
            from tests.image.conftest import make_store
            make_store({image_root!r}).register({digest!r}, "crash:1")
        """)
        wait_for(lambda: store.meta.q("SELECT 1 FROM layers WHERE state = 'unpacking'"), proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        # nothing half-registered: no image, no tag, no layer the driver shows as complete
        assert store.list() == [] and store.meta.q("SELECT * FROM refs") == []
        [(chain, st)] = store.meta.q("SELECT chain_id, state FROM layers")
        assert st == "unpacking" and not store.driver.has_layer(chain[7:])
        # the blobs are intact and re-verifiable; registering again recovers the crashed layer
        assert all(store.content.verify(d) for d, _ in store.content.walk())
        image_id = store.register(digest, "crash:1")
        assert store.inspect("crash:1")["Id"] == image_id
        assert {s for _, s in store.meta.q("SELECT chain_id, state FROM layers")} == {"ready"}
    finally:
        store.close()


def test_gc_cleans_a_crashed_unpack(image_root):
    store = make_store(image_root)
    try:
        big = tar_layer({f"f{i}": os.urandom(64) * 32 for i in range(1500)})
        digest = put_image(store, [big], "gzip")
        proc = child(f"""
            from tests.image.conftest import make_store
            make_store({image_root!r}).register({digest!r})
        """)
        wait_for(lambda: store.meta.q("SELECT 1 FROM layers WHERE state = 'unpacking'"), proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        out = store.gc()
        assert len(out["LayersDeleted"]) == 1 and store.meta.layers() == []
        assert digest in out["BlobsDeleted"]  # never became an image: its blobs are garbage
    finally:
        store.close()


def test_sigkill_during_register_leaves_pins_gc_drops(image_root):
    """A register killed after pinning a shared layer: its pins outlive it, protect nothing once
    nobody holds the store, and `gc` drops them with the crashed layer and the unused one."""
    store = make_store(image_root)
    try:
        small = tar_layer({"shared": b"shared\n"})
        big = tar_layer({f"f{i}": os.urandom(64) * 32 for i in range(1500)})
        first = store.register(put_image(store, [small]), "a:1")
        [shared] = [x["ChainID"] for x in store.layers_of(first)]
        digest = put_image(store, [small, big], "gzip")
        proc = child(f"""
            from tests.image.conftest import make_store
            make_store({image_root!r}).register({digest!r}, "b:1")
        """)
        wait_for(lambda: store.meta.q("SELECT 1 FROM layers WHERE state = 'unpacking'"), proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert store.meta.q("SELECT chain_id FROM layer_pins") == [(shared,)]
        assert [r["Deleted"] for r in store.remove("a:1") if "Deleted" in r] == [first]  # the crashed child keeps it
        out = store.gc()
        assert shared in out["LayersDeleted"] and len(out["LayersDeleted"]) == 2
        assert store.meta.layers() == [] and store.meta.q("SELECT * FROM layer_pins") == []
    finally:
        store.close()
