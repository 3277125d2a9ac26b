"""Background deletion (cais/storage/reclaim.py): nothing left behind when a process exits."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from cais.storage import reclaim

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _tree(top: str, name: str, files: int = 300) -> str:
    path = os.path.join(top, name)
    os.makedirs(os.path.join(path, "sub"))
    for i in range(files):
        with open(os.path.join(path, "sub", str(i)), "w") as f:
            f.write("x")
    return path


def test_an_exiting_process_finishes_its_deletions_first(st_root):
    trees = [_tree(st_root, f"t{i}") for i in range(3)]
    code = textwrap.dedent(f"""
        from cais.storage.reclaim import delete_later
        for path in {trees!r}:
            delete_later(path)
    """)  # and exits at once
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, cwd=ROOT)
    assert os.listdir(st_root) == []


def test_a_forked_child_deletes_with_a_worker_of_its_own(st_root):
    reclaim.delete_later(_tree(st_root, "parent"))  # the parent's worker is running
    child_tree = _tree(st_root, "child")
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            reclaim.delete_later(child_tree)
            reclaim.wait_idle()
            os._exit(0 if not os.path.exists(child_tree) else 1)
        finally:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    reclaim.wait_idle()
    assert os.listdir(st_root) == []

