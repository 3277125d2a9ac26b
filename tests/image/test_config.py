"""Image configs: validation, chain IDs, docker's --change instructions."""

import json

import pytest

from cais.image.config import ConfigError, apply_changes, chain_ids, parse_config

D1, D2, D3 = ("sha256:" + c * 64 for c in "123")


def test_chain_ids_follow_the_oci_spec():
    import hashlib
    second = "sha256:" + hashlib.sha256(f"{D1} {D2}".encode()).hexdigest()
    third = "sha256:" + hashlib.sha256(f"{second} {D3}".encode()).hexdigest()
    assert chain_ids([D1, D2, D3]) == [D1, second, third]
    assert chain_ids([]) == []


@pytest.mark.parametrize(("cfg", "message"), [
    ({}, 'rootfs.type must be "layers"'),
    ({"rootfs": {"type": "layers"}}, "rootfs.diff_ids must be a list"),
    ({"rootfs": {"type": "layers", "diff_ids": ["sha256:12"]}}, "invalid digest"),
    ({"rootfs": {"type": "layers", "diff_ids": [1]}}, "invalid digest"),
    ({"rootfs": {"type": "layers", "diff_ids": []}, "os": 3}, "os must be a string"),
    ({"rootfs": {"type": "layers", "diff_ids": []}, "config": []}, "config must be an object"),
    ({"rootfs": {"type": "layers", "diff_ids": []}, "history": ["x"]}, "history must be a list of objects"),
])
def test_bad_configs(cfg, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(json.dumps(cfg).encode())


def test_changes():
    base = {"Env": ["PATH=/bin", "A=old"], "Labels": {"keep": "1"}}
    out = apply_changes(base, [
        'CMD ["/bin/app", "--flag"]', "ENTRYPOINT /entry.sh", "ENV A=new B=two", "ENV C three",
        "LABEL x=y", "EXPOSE 80 53/udp", 'VOLUME ["/data", "/logs"]', "VOLUME /cache",
        "USER 1000:1000", "WORKDIR /srv", "STOPSIGNAL SIGTERM", "ONBUILD RUN make", "cmd echo lower"])
    assert out["Cmd"] == ["/bin/sh", "-c", "echo lower"]
    assert out["Entrypoint"] == ["/bin/sh", "-c", "/entry.sh"]
    assert out["Env"] == ["PATH=/bin", "A=new", "B=two", "C=three"]
    assert out["Labels"] == {"keep": "1", "x": "y"}
    assert out["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}}
    assert out["Volumes"] == {"/data": {}, "/logs": {}, "/cache": {}}
    assert (out["User"], out["WorkingDir"], out["StopSignal"]) == ("1000:1000", "/srv", "SIGTERM")
    assert out["OnBuild"] == ["RUN make"]
    assert base["Env"] == ["PATH=/bin", "A=old"]  # the input is not modified


@pytest.mark.parametrize(("change", "message"), [
    ("RUN rm -rf /", "RUN is not a valid change command"),
    ("SHELL [\"/bin/bash\"]", "SHELL is not a valid change command"),
    ("USER", "USER requires exactly one argument"),
    ("CMD", "CMD requires at least one argument"),
    ("ENV", "ENV requires at least one argument"),
    ("LABEL novalue", "LABEL names must be followed by '='"),
    ("ENV A='unterminated", "ENV: No closing quotation"),
])
def test_bad_changes(change, message):
    with pytest.raises(ConfigError, match=message):
        apply_changes({}, [change])
