"""Container records on disk: what a machine crash may leave of a record saved without fsync."""

from __future__ import annotations

import os

from cais.engine.store import DURABLE, RECORD, ContainerStore
from cais.storage import reclaim


def _record(cid: str, status: str) -> dict:
    return {"Id": cid, "Name": "/cais-en-store", "Created": "2026-01-01T00:00:00Z", "State": {"Status": status}}


def test_a_record_cut_short_falls_back_to_its_last_durable_save(tmp_root: str) -> None:
    store = ContainerStore(tmp_root)
    cid = "a" * 64
    record = _record(cid, "created")
    store.add(record)
    store.save(record)  # durable: what create ends with
    record["State"]["Status"] = "running"
    store.save(record, durable=False)
    assert ContainerStore(tmp_root).get(cid)["State"]["Status"] == "running"
    with open(os.path.join(store.dir(cid), RECORD), "w"):
        pass  # what a crash may leave of a write that was never flushed
    assert ContainerStore(tmp_root).get(cid)["State"]["Status"] == "created"


def test_a_removed_record_never_comes_back(tmp_root: str) -> None:
    store = ContainerStore(tmp_root)
    cid = "b" * 64
    record = _record(cid, "exited")
    store.add(record)
    store.save(record)
    assert os.path.exists(os.path.join(store.dir(cid), DURABLE))
    store.remove(cid)
    reclaim.wait_idle()
    assert os.listdir(tmp_root) == []
    assert ContainerStore(tmp_root).records == {}


def test_a_directory_left_without_a_record_is_swept(tmp_root: str) -> None:
    """A --rm container's record is first written once it is complete: a crash before that leaves
    its directory alone, which the next start deletes; a removal cut short by a crash goes too."""
    store = ContainerStore(tmp_root)
    cid = "c" * 64
    store.add(_record(cid, "created"), save=False)
    assert os.listdir(store.dir(cid)) == []
    with open(os.path.join(store.dir(cid), "hostname"), "w") as f:
        f.write("cais-en-store\n")
    os.makedirs(os.path.join(tmp_root, ".removed-" + "d" * 64, "sub"))
    kept = "e" * 64
    store.add({**_record(kept, "created"), "Name": "/cais-en-store-kept"})
    assert set(ContainerStore(tmp_root).records) == {kept}
    assert os.listdir(tmp_root) == [kept]
