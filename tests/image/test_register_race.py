"""Pulls and loads race rmi and prune of images sharing layers, through caisd and the real docker CLI:
every command succeeds (or reports docker's own "No such image"), and afterwards the images are
whole — no register committed over a layer a concurrent removal deleted."""

from __future__ import annotations

import os
import threading

from tests.caisd import caisd
from tests.registry.conftest import cais_registry


def test_pull_and_load_race_rmi_and_prune():
    with caisd(prefix="cais-eg") as d, cais_registry() as registry:
        d.docker("run", "--name", "cais-eg-c", "busybox", "touch", "/made")
        d.docker("commit", "cais-eg-c", "cais-eg-child:1")
        d.docker("rm", "cais-eg-c")
        base, child = os.path.join(d.root, "base.tar"), os.path.join(d.root, "child.tar")
        d.docker("save", "-o", base, "busybox")
        d.docker("save", "-o", child, "cais-eg-child:1")  # busybox's layer + one more
        remote = f"{registry.host}/cais-eg/child:1"  # a loopback registry: plain http, as docker allows
        d.docker("tag", "cais-eg-child:1", remote)
        d.docker("push", remote, timeout=120)
        d.docker("rmi", "busybox", "cais-eg-child:1", remote)
        errors: list[str] = []

        def churn(steps: list[tuple[tuple[str, ...], str]]) -> None:
            for _ in range(3):
                for get, name in steps:
                    for args in (get, ("rmi", name)):
                        r = d.docker(*args, check=False, timeout=120)
                        if r.returncode and b"No such image" not in r.stderr:
                            errors.append(f"{args}: {r.stderr.decode()}")

        def prune() -> None:
            for _ in range(8):
                r = d.docker("image", "prune", "-af", check=False, timeout=120)
                if r.returncode:
                    errors.append(f"prune: {r.stderr.decode()}")

        loads = [(("load", "-q", "-i", base), "busybox")] * 2
        child_gets = [(("load", "-q", "-i", child), "cais-eg-child:1"), (("pull", "-q", remote), remote)]
        threads = [threading.Thread(target=churn, args=(loads,)), threading.Thread(target=churn, args=(child_gets,)),
                   threading.Thread(target=prune)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        d.docker("pull", "-q", remote)
        d.docker("load", "-q", "-i", child)
        d.docker("load", "-q", "-i", base)
        for image in ("cais-eg-child:1", remote):
            out = d.docker("run", "--rm", "--pull", "never", image, "ls", "/made", "/bin/busybox").stdout
            assert out.split() == [b"/bin/busybox", b"/made"]
        assert d.docker("run", "--rm", "--pull", "never", "busybox", "true").returncode == 0
        assert "Traceback" not in d.read_log()
