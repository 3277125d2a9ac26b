"""Image JSON at each API version: VirtualSize (dropped by 1.44) stays for older clients;
Container and ContainerConfig (dropped by dockerd at 1.45) stay for docker-compose 1.29."""

from __future__ import annotations

import pytest

from tests.api.test_bad_input import call
from tests.caisd import Caisd

DROPPED = {"1.43": set(), "1.44": {"VirtualSize"}, "1.45": {"VirtualSize"}, "1.50": {"VirtualSize"}}


@pytest.mark.parametrize("version", sorted(DROPPED))
def test_image_fields_follow_the_api_version(daemon: Caisd, version: str) -> None:
    status, image = call(daemon, "GET", f"/v{version}/images/busybox/json")
    assert status == 200
    assert not DROPPED[version] & set(image) and {"Id", "Config", "Size", "RootFS"} <= set(image)
    assert DROPPED[version] | set(image) >= {"VirtualSize", "Container", "ContainerConfig"}
    status, listed = call(daemon, "GET", f"/v{version}/images/json")
    assert status == 200 and listed and all(("VirtualSize" in i) == (version < "1.44") for i in listed)
    status, usage = call(daemon, "GET", f"/v{version}/system/df")
    assert status == 200 and all(("VirtualSize" in i) == (version < "1.44") for i in usage["Images"])
