"""The supervisor: ONE long-lived process that is the parent of every container.

It replaces docker's per-container containerd-shim (13 MB each) and podman's conmon (2 MB each):
the API server (caisd) can restart or crash while containers keep running, because this process —
not caisd — holds their stdio, writes their logs and reaps them. It is a child subreaper, creates
containers in-process through `cais.runtime`, and for each container keeps only a few file
descriptors and a small record (well under 1 MB per idle container).

Protocol (unix socket EXEC_ROOT/supervisor.sock, root only): a client sends one JSON line,
gets one JSON line back ({"ok": true, …} or {"error": "…"}). `attach` and `exec` then turn the
connection into a stream of docker frames (see frames.py); `watch` into JSON lines of exits.

    {"op": "start", "id", "bundle", "root", "tty", "stdin", "log": {...}|null, "log_path", "exit_file"}
    {"op": "exec", "id", "exec_id", "root", "process", "tty", "stdin"}          → stream
    {"op": "attach", "id", "stdin", "stdout", "stderr"}                         → stream
    {"op": "resize", "id", "exec_id"?, "height", "width"}
    {"op": "list"}   {"op": "watch"}   {"op": "shutdown", "if_idle"?}

`list` also answers the supervisor's build (build.py: version, protocol, code fingerprint, taken
at its start), so caisd can tell that it runs older code after an upgrade.

On exit it writes `exit_file` ({"ExitCode", "FinishedAt"}) atomically before telling anyone, so
an exit that happens while caisd is down is never lost.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import logging
import os
import signal
import socket
import struct
import sys
import tempfile
import termios
import time

from cais.engine import build, frames
from cais.engine.logs import LogWriter, timestamp
from cais.engine.store import write_json_atomic

log = logging.getLogger("cais.supervisor")
DRAIN_GRACE = 2.0  # seconds to wait for output after the process exited (a daemonized child may hold it)


class Proc:
    """A supervised process: a container's init or an exec'd process."""

    def __init__(self, key: str, container_id: str, exec_id: str | None, tty: bool) -> None:
        self.key = key
        self.container_id = container_id
        self.exec_id = exec_id
        self.tty = tty
        self.pid = 0
        self.stdin_fd: int | None = None
        self.outputs: dict[int, int] = {}  # fd -> stream
        self.log: LogWriter | None = None
        self.exit_file: str | None = None
        self.subscribers: list[Subscriber] = []
        self.status: int | None = None
        self.grace: asyncio.TimerHandle | None = None
        self.done = False


class Subscriber:
    def __init__(self, writer: asyncio.StreamWriter, stdout: bool, stderr: bool) -> None:
        self.writer = writer
        self.stdout = stdout
        self.stderr = stderr

    def send(self, stream: int, data: bytes) -> None:
        if (stream == frames.STDOUT and not self.stdout) or (stream == frames.STDERR and not self.stderr):
            return
        transport = self.writer.transport
        if transport.is_closing():
            return
        if transport.get_write_buffer_size() > (8 << 20):  # a client that stopped reading is dropped
            transport.close()
            return
        self.writer.write(frames.frame(stream, data))


class Supervisor:
    def __init__(self, exec_root: str) -> None:
        self.exec_root = exec_root
        self.procs: dict[str, Proc] = {}
        self.by_pid: dict[int, Proc] = {}
        self.pending: dict[str, list[tuple[Subscriber, asyncio.StreamReader | None]]] = {}
        self.watchers: list[asyncio.StreamWriter] = []
        self.sizes: dict[str, tuple[int, int]] = {}  # window sizes that came before their process
        self.loop = asyncio.get_event_loop()
        self.stop = asyncio.Event()
        self.build = build.identity()  # the code this process imported, whatever is installed later

    # ---- requests -------------------------------------------------------------------------
    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            if not line:
                return
            request = json.loads(line)
            op = request.get("op")
            if op == "attach":
                await self._attach(request, reader, writer)
                return
            if op == "exec":
                await self._exec(request, reader, writer)
                return
            if op == "watch":
                self.watchers.append(writer)
                writer.write(b'{"ok": true}\n')
                await reader.read()  # until the watcher goes away
                with contextlib.suppress(ValueError):
                    self.watchers.remove(writer)
                return
            handler = {"start": self._start, "resize": self._resize, "list": self._list,
                       "shutdown": self._shutdown, "close_stdin": self._close_stdin}.get(op)
            if handler is None:
                raise ValueError(f"unknown op {op!r}")
            reply = handler(request)
            writer.write(json.dumps({"ok": True, **reply}).encode() + b"\n")
            await writer.drain()
        except Exception as e:  # one bad request never takes the supervisor down
            log.warning("request failed: %s", e)
            with contextlib.suppress(Exception):
                writer.write(json.dumps({"error": str(e) or type(e).__name__}).encode() + b"\n")
                await writer.drain()
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    def _list(self, _: dict) -> dict:
        return {"pid": os.getpid(), "build": self.build, "procs": {p.key: {"pid": p.pid, "exited": p.status is not None}
                                             for p in self.procs.values()}}

    def _shutdown(self, request: dict) -> dict:
        if request.get("if_idle") and self.procs:
            raise ValueError(f"not idle: {len(self.procs)} processes")
        self.stop.set()
        return {}

    def _resize(self, request: dict) -> dict:
        key = _key(request["id"], request.get("exec_id"))
        size = (int(request["height"]), int(request["width"]))
        proc = self.procs.get(key)
        if proc is None:  # docker clients resize an exec as soon as they attach: keep it for the start
            if len(self.sizes) > 1000:
                self.sizes.clear()
            self.sizes[key] = size
            return {}
        _set_size(proc, size)
        return {}

    def _close_stdin(self, request: dict) -> dict:
        proc = self.procs.get(_key(request["id"], request.get("exec_id")))
        if proc is not None:
            self._stdin_eof(proc)
        return {}

    def _start(self, request: dict) -> dict:
        from cais import runtime
        cid = request["id"]
        if cid in self.procs:
            raise ValueError(f"container {cid} is already running")
        proc = Proc(cid, cid, None, bool(request.get("tty")))
        proc.exit_file = request["exit_file"]
        settings = request.get("log")
        if settings:
            proc.log = LogWriter(request["log_path"], settings)
        stdio, console = self._prepare_io(proc, bool(request.get("stdin")))
        try:
            runtime.create(cid, request["bundle"], root=request["root"], console_socket=console and console.path,
                           stdio=stdio)
            if console:
                self._receive_console(proc, console)
            proc.pid = int(runtime.state(cid, root=request["root"])["pid"])
            self._register(proc)
            runtime.start(cid, root=request["root"])
        except BaseException:
            self._abandon(proc)
            raise
        finally:
            _close_all(stdio)
            if console:
                console.close()
        return {"pid": proc.pid}

    async def _exec(self, request: dict, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        from cais import runtime
        cid, exec_id = request["id"], request["exec_id"]
        proc = Proc(_key(cid, exec_id), cid, exec_id, bool(request.get("tty")))
        sub = Subscriber(writer, True, True)
        proc.subscribers.append(sub)
        stdio, console = self._prepare_io(proc, bool(request.get("stdin")))
        try:
            pid = runtime.exec_process(cid, request["process"], root=request["root"],
                                       console_socket=console and console.path, stdio=stdio, detach=True)
            if console:
                self._receive_console(proc, console)
            proc.pid = int(pid)
            self._register(proc)
        except BaseException:
            self._abandon(proc)
            raise
        finally:
            _close_all(stdio)
            if console:
                console.close()
        writer.write(json.dumps({"ok": True, "pid": proc.pid}).encode() + b"\n")
        await self._pump_stdin(proc, reader)
        await _wait_closed(writer)

    async def _attach(self, request: dict, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        cid = request["id"]
        sub = Subscriber(writer, bool(request.get("stdout", True)), bool(request.get("stderr", True)))
        writer.write(b'{"ok": true}\n')
        proc = self.procs.get(cid)
        if proc is None:  # attached before start (docker run): join when it starts
            waiter = self.loop.create_future()
            self.pending.setdefault(cid, []).append((sub, reader))
            sub.waiter = waiter  # type: ignore[attr-defined]
            proc = await _first(waiter, reader)
            if proc is None:
                waiting = self.pending.get(cid, [])
                with contextlib.suppress(ValueError):
                    waiting.remove((sub, reader))
                return
        else:
            proc.subscribers.append(sub)
        if request.get("stdin"):
            await self._pump_stdin(proc, reader)
        await _wait_closed(writer)
        with contextlib.suppress(ValueError):
            proc.subscribers.remove(sub)

    # ---- io -------------------------------------------------------------------------------
    def _prepare_io(self, proc: Proc, stdin: bool) -> tuple[tuple[int, int, int] | None, _Console | None]:
        if proc.tty:
            return None, _Console(self.exec_root)
        null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        if stdin:
            in_r, in_w = os.pipe()
            proc.stdin_fd = in_w
        else:
            in_r = os.dup(null)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        os.close(null)
        proc.outputs = {out_r: frames.STDOUT, err_r: frames.STDERR}
        return (in_r, out_w, err_w), None

    def _receive_console(self, proc: Proc, console: _Console) -> None:
        master = console.receive()
        proc.stdin_fd = master
        proc.outputs = {os.dup(master): frames.STDOUT}

    def _register(self, proc: Proc) -> None:
        self.procs[proc.key] = proc
        size = self.sizes.pop(proc.key, None)
        if size is not None:
            _set_size(proc, size)
        self.by_pid[proc.pid] = proc
        for fd in proc.outputs:
            os.set_blocking(fd, False)
            self.loop.add_reader(fd, self._readable, proc, fd)
        if proc.stdin_fd is not None:
            os.set_blocking(proc.stdin_fd, False)
        for sub, _ in self.pending.get(proc.key, []):
            proc.subscribers.append(sub)
        for sub, _ in self.pending.pop(proc.key, []):
            waiter = sub.waiter  # type: ignore[attr-defined]
            if not waiter.done():
                waiter.set_result(proc)

    def _abandon(self, proc: Proc) -> None:
        """A start that failed: release its descriptors and end the attaches waiting for it."""
        control = frames.frame(frames.CONTROL, json.dumps({"exit_code": 128}).encode())
        for sub, _ in self.pending.pop(proc.key, []):
            with contextlib.suppress(Exception):
                sub.writer.write(control)
                sub.writer.close()
        for fd in list(proc.outputs):
            os.close(fd)
        proc.outputs.clear()
        if proc.stdin_fd is not None:
            os.close(proc.stdin_fd)
            proc.stdin_fd = None
        if proc.log:
            proc.log.close()

    def _readable(self, proc: Proc, fd: int) -> None:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:  # EIO: the pty's other side is gone
            data = b""
        stream = proc.outputs.get(fd, frames.STDOUT)
        if not data:
            self.loop.remove_reader(fd)
            os.close(fd)
            proc.outputs.pop(fd, None)
            self._maybe_finish(proc)
            return
        if proc.log is not None:
            try:
                proc.log.write("stderr" if stream == frames.STDERR else "stdout", data)
            except OSError as e:
                log.warning("log write for %s failed: %s", proc.key, e)
        for sub in proc.subscribers:
            sub.send(stream, data)

    async def _pump_stdin(self, proc: Proc, reader: asyncio.StreamReader) -> None:
        """Client frames → the process's stdin, until an empty frame or end of connection."""
        while True:
            got = await frames.read_frame(reader)
            if got is None:
                return  # the client left; stdin stays open for whoever attaches next (docker's behaviour)
            stream, data = got
            if stream != frames.STDIN:
                continue
            if not data:
                self._stdin_eof(proc)
                return
            if proc.stdin_fd is None:
                continue
            try:
                await _write_all(self.loop, proc.stdin_fd, data)
            except OSError:
                self._stdin_eof(proc)
                return

    def _stdin_eof(self, proc: Proc) -> None:
        if proc.stdin_fd is not None and not proc.tty:
            os.close(proc.stdin_fd)
            proc.stdin_fd = None
        elif proc.stdin_fd is not None:
            with contextlib.suppress(OSError):
                os.write(proc.stdin_fd, b"\x04")  # a terminal's end of file

    # ---- exits ----------------------------------------------------------------------------
    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            proc = self.by_pid.pop(pid, None)
            if proc is None:
                continue  # an orphan reparented to us: reaped, nothing to record
            proc.status = os.waitstatus_to_exitcode(status)
            if proc.status < 0:
                proc.status = 128 - proc.status  # killed by a signal: docker reports 128+N
            proc.grace = self.loop.call_later(DRAIN_GRACE, self._finish, proc)
            self._maybe_finish(proc)

    def _maybe_finish(self, proc: Proc) -> None:
        if proc.status is not None and not proc.outputs:
            self._finish(proc)

    def _finish(self, proc: Proc) -> None:
        if proc.done:
            return
        proc.done = True
        if proc.grace:
            proc.grace.cancel()
        for fd in list(proc.outputs):
            self.loop.remove_reader(fd)
            os.close(fd)
        proc.outputs.clear()
        if proc.stdin_fd is not None:
            with contextlib.suppress(OSError):
                os.close(proc.stdin_fd)
            proc.stdin_fd = None
        if proc.log is not None:
            with contextlib.suppress(OSError):
                proc.log.close()
        event = {"id": proc.container_id, "exec_id": proc.exec_id, "exit_code": proc.status,
                 "finished_at": timestamp()}
        if proc.exit_file:
            write_json_atomic(proc.exit_file, {"ExitCode": proc.status, "FinishedAt": event["finished_at"]})
        self.procs.pop(proc.key, None)
        control = frames.frame(frames.CONTROL, json.dumps({"exit_code": proc.status}).encode())
        for sub in proc.subscribers:
            with contextlib.suppress(Exception):
                sub.writer.write(control)
                sub.writer.close()
        line = json.dumps(event).encode() + b"\n"
        for watcher in list(self.watchers):
            with contextlib.suppress(Exception):
                watcher.write(line)


class _Console:
    """A unix socket on which the runtime sends the pty master (runc's --console-socket protocol)."""

    def __init__(self, exec_root: str) -> None:
        self.dir = tempfile.mkdtemp(prefix="console-", dir=exec_root)
        self.path = os.path.join(self.dir, "c.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        self.sock.listen(1)
        self.sock.settimeout(10)

    def receive(self) -> int:
        conn, _ = self.sock.accept()
        with conn:
            _, fds, _, _ = socket.recv_fds(conn, 4096, 1)
        if not fds:
            raise OSError("the runtime sent no terminal")
        return fds[0]

    def close(self) -> None:
        self.sock.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)
            os.rmdir(self.dir)


def _set_size(proc: Proc, size: tuple[int, int]) -> None:
    if proc.tty and proc.stdin_fd is not None:
        with contextlib.suppress(OSError):
            fcntl.ioctl(proc.stdin_fd, termios.TIOCSWINSZ, struct.pack("HHHH", size[0], size[1], 0, 0))


def _key(container_id: str, exec_id: str | None) -> str:
    return f"{container_id}/{exec_id}" if exec_id else container_id


def _close_all(fds: tuple[int, int, int] | None) -> None:
    for fd in fds or ():
        with contextlib.suppress(OSError):
            os.close(fd)


async def _write_all(loop: asyncio.AbstractEventLoop, fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
            view = view[n:]
        except BlockingIOError:
            ready = loop.create_future()
            loop.add_writer(fd, ready.set_result, None)
            try:
                await ready
            finally:
                loop.remove_writer(fd)


async def _first(waiter: asyncio.Future, reader: asyncio.StreamReader) -> Proc | None:
    """The started process, or None if the client went away first (stdin frames stay unread)."""
    while not waiter.done():
        if reader.at_eof() or reader.exception() is not None:
            return None
        await asyncio.wait({waiter}, timeout=0.2)
    return waiter.result()


async def _wait_closed(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(Exception):
        while not writer.transport.is_closing():
            await asyncio.sleep(0.1)


async def serve(exec_root: str) -> None:
    from cais.linux.process import set_child_subreaper, set_name
    set_child_subreaper()
    with contextlib.suppress(OSError):
        set_name("cais-supervisor")
    sup = Supervisor(exec_root)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGCHLD, sup.reap)
    loop.add_signal_handler(signal.SIGTERM, sup.stop.set)
    loop.add_signal_handler(signal.SIGINT, sup.stop.set)
    path = os.path.join(exec_root, "supervisor.sock")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    old = os.umask(0o077)
    try:
        server = await asyncio.start_unix_server(sup.handle, path, limit=1 << 20)
    finally:
        os.umask(old)
    sup.reap()
    print("ready", flush=True)
    async with server:
        await sup.stop.wait()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cais-supervisor")
    parser.add_argument("--exec-root", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s supervisor %(levelname)s %(message)s")
    os.makedirs(args.exec_root, mode=0o700, exist_ok=True)
    lock = os.open(os.path.join(args.exec_root, "supervisor.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print("another supervisor runs on this exec root", file=sys.stderr)
        return 1
    os.ftruncate(lock, 0)
    os.write(lock, f"{os.getpid()}\n".encode())
    started = time.monotonic()
    asyncio.run(serve(args.exec_root))
    log.info("stopped after %.0f s", time.monotonic() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
