"""Shared helpers for runtime tests: busybox bundles, running cais-runtime, cleaning up.

Like crun's tests: each test makes a bundle from the pristine busybox rootfs, tweaks the config,
runs the real `cais-runtime` binary, and everything it made is removed afterwards.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from typing import Any

CAIS_RUNTIME = os.path.join(os.path.dirname(sys.executable), "cais-runtime")
# Against a hung command only, never a speed check: under emulation (scripts/vm-test) one command
# takes seconds; pytest's per-test timeout ends the test first.
COMMAND_TIMEOUT = 600


def config_for(args: list[str]) -> dict[str, Any]:
    from cais.runtime import spec

    config = spec.default()
    config["process"]["terminal"] = False
    config["process"]["args"] = args
    return config


class Bundle:
    def __init__(self, top: str, busybox_dir: str, args: list[str]) -> None:
        self.path = os.path.join(top, f"bundle-{uuid.uuid4().hex[:8]}")
        os.makedirs(self.path)
        self.rootfs = os.path.join(self.path, "rootfs")
        subprocess.run(["cp", "-a", busybox_dir, self.rootfs], check=True)
        self.config = config_for(args)

    def write(self) -> str:
        with open(os.path.join(self.path, "config.json"), "w") as f:
            json.dump(self.config, f)
        return self.path


class Runtime:
    """cais-runtime on a temporary --root; cleanup() force-deletes whatever a test left."""

    def __init__(self, busybox_dir: str) -> None:
        self.top = tempfile.mkdtemp(prefix="cais-rt-test-")
        self.root = os.path.join(self.top, "state")
        self.busybox_dir = busybox_dir
        self.ids: list[str] = []
        self.runtime_path = CAIS_RUNTIME

    def bundle(self, *args: str) -> Bundle:
        return Bundle(self.top, self.busybox_dir, list(args))

    def new_id(self) -> str:
        cid = f"cais-rt-{uuid.uuid4().hex[:10]}"
        self.ids.append(cid)
        return cid

    def __call__(
        self, *args: str, check: bool = False, input: bytes | None = None, timeout: float = COMMAND_TIMEOUT,
        **kw: Any,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [CAIS_RUNTIME, "--root", self.root, *args],
            capture_output=True,
            text=True,
            check=check,
            input=input,
            timeout=timeout,
            **kw,
        )

    def run(self, bundle: Bundle, *extra: str) -> subprocess.CompletedProcess[str]:
        bundle.write()
        return self("run", "-b", bundle.path, *extra, self.new_id())

    def run_input(self, bundle: Bundle, data: bytes) -> subprocess.CompletedProcess[str]:
        bundle.write()
        done = subprocess.run(
            [CAIS_RUNTIME, "--root", self.root, "run", "-b", bundle.path, self.new_id()],
            input=data,
            capture_output=True,
            timeout=COMMAND_TIMEOUT,
        )
        return subprocess.CompletedProcess(
            done.args,
            done.returncode,
            done.stdout.decode(errors="replace"),
            done.stderr.decode(errors="replace"),
        )

    def create(self, bundle: Bundle, *extra: str) -> str:
        bundle.write()
        cid = self.new_id()
        # The init keeps the stdio it was given: files, so that nobody waits for a pipe's end.
        self.out = os.path.join(self.top, f"{cid}.out")
        with open(self.out, "w") as out, open(self.out + ".err", "w") as err:
            done = subprocess.run(
                [CAIS_RUNTIME, "--root", self.root, "create", "-b", bundle.path, *extra, cid],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                timeout=COMMAND_TIMEOUT,
            )
        with open(self.out + ".err") as f:
            assert done.returncode == 0, f.read()
        return cid

    def state(self, cid: str) -> dict[str, Any]:
        done = self("state", cid, check=True)
        return json.loads(done.stdout)

    def cleanup(self) -> None:
        for cid in self.ids:
            with contextlib.suppress(Exception):
                self("delete", "--force", cid)
        with open("/proc/self/mountinfo") as f:
            targets = [line.split()[4] for line in f]
        for target in sorted((t for t in targets if t.startswith(self.top + "/")), key=len, reverse=True):
            subprocess.run(["umount", "-l", target], check=False, capture_output=True)
        shutil.rmtree(self.top, ignore_errors=True)


def read(path: str) -> str:
    with open(path) as f:
        return f.read()
