"""Loads race rmi and prune of images sharing layers, through caisd and the real docker CLI:
every command succeeds (or reports docker's own "No such image"), and afterwards the images are
whole — no register committed over a layer a concurrent removal deleted."""

from __future__ import annotations

import os
import threading

from tests.caisd import caisd


def test_load_races_rmi_and_prune():
    with caisd(prefix="cais-eg") as d:
        d.docker("run", "--name", "cais-eg-c", "busybox", "touch", "/made")
        d.docker("commit", "cais-eg-c", "cais-eg-child:1")
        d.docker("rm", "cais-eg-c")
        base, child = os.path.join(d.root, "base.tar"), os.path.join(d.root, "child.tar")
        d.docker("save", "-o", base, "busybox")
        d.docker("save", "-o", child, "cais-eg-child:1")  # busybox's layer + one more
        d.docker("rmi", "busybox", "cais-eg-child:1")
        errors: list[str] = []

        def churn(tar: str, name: str) -> None:
            for _ in range(6):
                for args in (("load", "-q", "-i", tar), ("rmi", name)):
                    r = d.docker(*args, check=False, timeout=120)
                    if r.returncode and b"No such image" not in r.stderr:
                        errors.append(f"{args}: {r.stderr.decode()}")

        def prune() -> None:
            for _ in range(8):
                r = d.docker("image", "prune", "-af", check=False, timeout=120)
                if r.returncode:
                    errors.append(f"prune: {r.stderr.decode()}")

        threads = [threading.Thread(target=churn, args=(base, "busybox")),
                   threading.Thread(target=churn, args=(child, "cais-eg-child:1")),
                   threading.Thread(target=prune)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        d.docker("load", "-q", "-i", child)
        d.docker("load", "-q", "-i", base)
        out = d.docker("run", "--rm", "cais-eg-child:1", "ls", "/made", "/bin/busybox").stdout
        assert out.split() == [b"/bin/busybox", b"/made"]
        assert d.docker("run", "--rm", "busybox", "true").returncode == 0
        assert "Traceback" not in d.read_log()
