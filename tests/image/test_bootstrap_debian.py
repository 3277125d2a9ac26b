"""`bootstrap_debian`: a clear error when the mirror is unreachable; a real build when one is given."""

import os
import shutil

import pytest

from cais.image.bootstrap import BootstrapError, bootstrap_debian


def test_unreachable_mirror_is_a_clear_error(store):
    if shutil.which("debootstrap") is None:
        pytest.skip("debootstrap is not installed")
    with pytest.raises(BootstrapError, match=r"^debootstrap bookworm from http://127.0.0.1:9/debian failed: "):
        bootstrap_debian(store, mirror="http://127.0.0.1:9/debian")
    assert store.list() == []
    assert not [n for n in os.listdir("/tmp") if n.startswith("cais-image-debootstrap-")]


@pytest.mark.skipif(not os.environ.get("CAIS_TEST_DEBIAN_MIRROR"),
                    reason="set CAIS_TEST_DEBIAN_MIRROR to a Debian mirror URL (tests use no internet)")
def test_debian_image(store):
    image_id = bootstrap_debian(store, "debian:test", mirror=os.environ["CAIS_TEST_DEBIAN_MIRROR"])
    assert store.inspect("debian:test")["Id"] == image_id
