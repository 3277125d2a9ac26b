"""The in-process API the engine uses: names, signatures, children it can wait for, one error class."""

from __future__ import annotations

import os
import signal

import pytest

from cais import runtime
from cais.runtime.errors import RuntimeFailure
from tests.runtime.bundle import Runtime, read


def test_in_process_lifecycle_exec_pause_and_errors(rt: Runtime) -> None:
    b = rt.bundle("sleep", "30")
    b.write()
    cid = rt.new_id()
    out_path = os.path.join(rt.top, "exec.out")
    with open(os.devnull, "r+") as null, open(out_path, "w") as out:
        runtime.create(cid, b.path, root=rt.root, stdio=(null.fileno(), null.fileno(), null.fileno()))
        assert runtime.state(cid, root=rt.root)["status"] == "created"
        runtime.start(cid, root=rt.root)
        init = runtime.state(cid, root=rt.root)["pid"]
        pid = runtime.exec_process(cid, {"args": ["sh", "-c", "echo from-exec; exit 9"], "cwd": "/"},
                                   root=rt.root, stdio=(null.fileno(), out.fileno(), out.fileno()))
        _, status = os.waitpid(pid, 0)  # exec'd processes are the caller's children too
    assert os.waitstatus_to_exitcode(status) == 9 and read(out_path) == "from-exec\n"
    assert init in runtime.ps(cid, root=rt.root)
    runtime.pause(cid, root=rt.root)
    assert [c["status"] for c in runtime.list_containers(rt.root)] == ["paused"]
    runtime.resume(cid, root=rt.root)
    runtime.update(cid, {"pids": {"limit": 50}}, root=rt.root)
    with pytest.raises(RuntimeFailure, match="not stopped"):
        runtime.delete(cid, root=rt.root)
    runtime.kill(cid, signal.SIGKILL, root=rt.root)
    _, status = os.waitpid(init, 0)
    assert os.waitstatus_to_exitcode(status) == -signal.SIGKILL
    runtime.delete(cid, root=rt.root)
    with pytest.raises(runtime.ContainerNotFound):
        runtime.state(cid, root=rt.root)
    assert callable(runtime.create) and runtime.DEFAULT_ROOT == "/run/cais-runtime"
