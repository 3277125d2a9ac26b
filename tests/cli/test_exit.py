"""`cais` leaves without the interpreter's finalization, yet nothing it owed is lost: buffered
output, atexit handlers, threads still working, a reader that went away."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.caisd import VENV_BIN

CODE = "import sys\nfrom cais.cli.main import leave\n"
BUFFERED = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # as a user runs it


def _python(code: str, **kw) -> subprocess.CompletedProcess[bytes]:  # type: ignore[no-untyped-def]
    return subprocess.run([sys.executable, "-c", CODE + code], timeout=30, env=BUFFERED, **kw)


@pytest.mark.parametrize("status", [0, 3, 125, 256 + 7])
def test_buffered_output_and_status(status: int) -> None:
    result = _python(f"sys.stdout.write('x' * 100000)\nprint('e', file=sys.stderr, end='')\nleave({status})",
                     capture_output=True)
    assert (result.returncode, len(result.stdout), result.stderr) == (status & 0xFF, 100000, b"e")


def test_atexit_handlers_and_threads_still_run() -> None:
    result = _python("import atexit\natexit.register(print, 'atexit')\nleave(4)", capture_output=True)
    assert (result.returncode, result.stdout) == (4, b"atexit\n")
    result = _python("import threading, time\n"
                     "threading.Thread(target=lambda: (time.sleep(0.2), print('thread'))).start()\nleave(5)",
                     capture_output=True)
    assert (result.returncode, result.stdout) == (5, b"thread\n")


def test_reader_gone_is_as_sys_exit() -> None:
    """Output the reader never takes: the same status and message as a plain sys.exit gives."""
    results = []
    for end in ("leave(0)", "sys.exit(0)"):
        r, w = os.pipe()
        os.close(r)
        try:
            results.append(_python(f"print('x')\n{end}", stdout=w, stderr=subprocess.PIPE))
            assert b"Broken pipe" in results[-1].stderr
        finally:
            os.close(w)
    assert results[0].returncode == results[1].returncode
    assert results[0].stderr.replace(b"leave(0)", b"") == results[1].stderr.replace(b"sys.exit(0)", b"")


def test_cais_output_through_a_pipe() -> None:
    """The installed script: --help's text, written to a pipe (block-buffered), arrives whole."""
    result = subprocess.run([os.path.join(VENV_BIN, "cais"), "--help"], capture_output=True, timeout=30,
                            env=BUFFERED)
    assert result.returncode == 0
    assert result.stdout.startswith(b"Usage:  cais [OPTIONS] COMMAND") and result.stdout.endswith(b"on a command.\n")


@pytest.mark.parametrize("local", [False, True])
def test_in_process_engine_exits_the_usual_way(local: bool) -> None:
    """With the in-process engine, the interpreter finalizes as usual (objects' __del__ run);
    without it, nothing is finalized."""
    code = ("import os\nclass Witness:\n    def __del__(self):\n        os.write(1, b'finalized')\nw = Witness()\n"
            + ("import cais.cli.local\n" if local else "") + "leave(0)")
    result = _python(code, capture_output=True, check=True)
    assert result.stdout == (b"finalized" if local else b"")
