import io
import os

import pytest

from cais.image.content import ContentError, ContentStore, DigestMismatch, digest_bytes


def test_put_read_and_verify(tmp_root):
    store = ContentStore(tmp_root)
    d = store.put(b"hello")
    assert d == digest_bytes(b"hello")
    assert store.has(d) and store.read(d) == b"hello" and store.verify(d)
    assert list(store.walk()) == [(d, 5)]


def test_wrong_digest_stores_nothing(tmp_root):
    store = ContentStore(tmp_root)
    wrong = digest_bytes(b"other")
    with pytest.raises(DigestMismatch):
        store.ingest(io.BytesIO(b"hello"), expected=wrong)
    assert not store.has(wrong)
    assert os.listdir(os.path.join(tmp_root, "ingest")) == []


def test_resume_partial_ingest(tmp_root):
    store = ContentStore(tmp_root)
    data = os.urandom(3000)
    w = store.writer(digest_bytes(data), len(data), ref="layer1")
    w.write(data[:1000])
    w._file.close()  # the process died here
    w2 = store.writer(digest_bytes(data), len(data), ref="layer1")
    assert w2.offset == 1000
    w2.write(data[1000:])
    assert w2.commit() == digest_bytes(data)


def test_invalid_digests_rejected(tmp_root):
    store = ContentStore(tmp_root)
    for bad in ("", "sha256:xyz", "md5:" + "a" * 32, "sha256:" + "a" * 63, "sha256:../../etc"):
        with pytest.raises(ContentError):
            store.path(bad)
