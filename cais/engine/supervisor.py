"""The supervisor: ONE long-lived process that is the parent of every container.

It replaces docker's per-container containerd-shim (13 MB each) and podman's conmon (2 MB each):
the API server (caisd) can restart or crash while containers keep running, because this process —
not caisd — holds their stdio, writes their logs and reaps them. It is a child subreaper, creates
containers in-process through `cais.runtime`, and for each container keeps only a few file
descriptors and a small record (well under 1 MB per idle container). Inits are cloned from the
runtime's warm init zygote (launch.Zygote, a child of this process), so a start does not pay
for an interpreter start; jobs that join namespaces by path get a fresh bootstrap, as always.

Protocol (unix socket EXEC_ROOT/supervisor.sock, root only): a client sends one JSON line,
gets one JSON line back ({"ok": true, …} or {"error": "…"}). `attach` and `exec` then turn the
connection into a stream of docker frames (see frames.py), which ends with a CONTROL frame (the
exit code) and a half-close: the client closes; `watch` into JSON lines of exits.

    {"op": "start", "id", "bundle", "root", "tty", "stdin", "log": {...}|null, "log_path", "exit_file"}
    {"op": "create", …as start}  → {"pid"}, then  {"op": "start"} → {}            (protocol 2)
    {"op": "exec", "id", "exec_id", "root", "process", "tty", "stdin"}          → stream
    {"op": "attach", "id", "stdin", "stdout", "stderr"}                         → stream
    {"op": "resize", "id", "exec_id"?, "height", "width"}
    {"op": "list"}   {"op": "watch"}   {"op": "shutdown", "if_idle"?}

`list` also answers the supervisor's build (build.py: version, protocol, code fingerprint, taken
at its start), so caisd can tell that it runs older code after an upgrade.

On exit it writes `exit_file` ({"ExitCode", "FinishedAt"}) atomically before telling anyone, so
an exit that happens while caisd is down is never lost (caisd reads it when it comes back).
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

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from cais.runtime.launch import Zygote

log = logging.getLogger("cais.supervisor")
DRAIN_GRACE = 2.0  # seconds to wait for output after the process exited (a daemonized child may hold it)
# Unsent bytes for one subscriber above which the process's output is no longer read until they
# are sent: a client that reads slowly holds the process up, as with docker, and loses nothing.
HIGH_WATER = 1 << 20


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
        self.paused: set[int] = set()  # output fds not read until a slow subscriber catches up
        self.exec_fifo: tuple[int, Any] | None = None  # a started init's exec fifo and runtime state, until
        # its byte is read (_release)
        self.reported = False  # its exit told to caisd


class Subscriber:
    def __init__(self, writer: asyncio.StreamWriter, stdout: bool, stderr: bool) -> None:
        self.writer = writer
        self.stdout = stdout
        self.stderr = stderr

    def send(self, stream: int, data: bytes) -> None:
        if (stream == frames.STDOUT and not self.stdout) or (stream == frames.STDERR and not self.stderr):
            return
        if not self.writer.transport.is_closing():
            self.writer.write(frames.frame(stream, data))

    def behind(self) -> bool:
        """More unsent than HIGH_WATER: the output is not read further until it catches up."""
        transport = self.writer.transport
        return not transport.is_closing() and transport.get_write_buffer_size() > HIGH_WATER


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
        self.zygote: Zygote | None = None
        self.creating: set[str] = set()  # processes a worker thread is creating (keys)
        self.unclaimed: dict[int, int] = {}  # exit statuses reaped meanwhile, of pids not known yet

    # ---- the init zygote ------------------------------------------------------------------
    def warm(self) -> None:
        """Start the zygote now, so that its interpreter boots before the first container."""
        from cais.runtime.launch import Zygote
        if self.zygote is None:
            try:
                self.zygote = Zygote()
            except Exception as e:  # a start then boots a fresh interpreter, as without a zygote
                log.warning("no init zygote: %s", e)

    def _zygote_gone(self, pid: int) -> None:
        """`pid` (just reaped) was the zygote: forget it; the next start makes a new one."""
        if self.zygote is None or self.zygote.pid != pid:
            return
        log.warning("the init zygote (pid %d) exited; starting another", pid)
        self.zygote.pid = 0  # reaped already
        self.zygote.close()
        self.zygote = None

    @staticmethod
    def _create(cid: str, bundle: str, root: str, console: str | None, stdio: tuple[int, int, int] | None,
                zygote: Zygote | None) -> tuple[int, bool]:
        """runtime.create (in a worker thread): (the init's pid, True if `zygote` turned out to be gone)."""
        from cais import runtime
        from cais.runtime.errors import RuntimeFailure
        if zygote is not None:
            try:
                return runtime.create(cid, bundle, root=root, console_socket=console, stdio=stdio,
                                      bootstrap=zygote.bootstrap(stdio)), False
            except RuntimeFailure as e:
                if "zygote is gone" not in str(e):
                    raise
            # it died between our last reap and this request: once more without
            return runtime.create(cid, bundle, root=root, console_socket=console, stdio=stdio), True
        return runtime.create(cid, bundle, root=root, console_socket=console, stdio=stdio), False

    @staticmethod
    def _exec_process(cid: str, process: dict, root: str, console: str | None,
                      stdio: tuple[int, int, int] | None, zygote: Zygote | None) -> tuple[int, bool]:
        """runtime.exec_process (in a worker thread): (pid, True if `zygote` turned out to be gone)."""
        from cais import runtime
        from cais.runtime.errors import RuntimeFailure
        if zygote is not None:
            try:
                return runtime.exec_process(cid, process, root=root, console_socket=console, stdio=stdio,
                                            bootstrap=zygote.bootstrap(stdio)), False
            except RuntimeFailure as e:
                if "zygote is gone" not in str(e):
                    raise
        return runtime.exec_process(cid, process, root=root, console_socket=console, stdio=stdio), zygote is not None

    def close(self) -> None:
        if self.zygote is not None:
            self.zygote.close()
            self.zygote = None

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
            if op == "create":
                await self._create_then_start(request, reader, writer)
                return
            if op == "start":
                await self._start(request, writer)
                return
            if op == "watch":
                self.watchers.append(writer)
                writer.write(b'{"ok": true}\n')
                await reader.read()  # until the watcher goes away
                with contextlib.suppress(ValueError):
                    self.watchers.remove(writer)
                return
            handler = {"resize": self._resize, "list": self._list,
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

    async def _start(self, request: dict, writer: asyncio.StreamWriter) -> None:
        proc = await self._create_container(request)
        try:
            self._release(proc, request["root"])
        except BaseException:
            self._abandon(proc)
            raise
        writer.write(json.dumps({"ok": True, "pid": proc.pid}).encode() + b"\n")
        await writer.drain()

    async def _create_then_start(self, request: dict, reader: asyncio.StreamReader,
                                 writer: asyncio.StreamWriter) -> None:
        """`create`: the container is created and its pid answered; it starts when the same connection
        then says {"op": "start"}, and is deleted if the connection ends first. caisd plugs in the
        network the runtime made for it meanwhile (no namespace to join: the init comes from the zygote)."""
        from cais import runtime
        proc = await self._create_container(request)
        writer.write(json.dumps({"ok": True, "pid": proc.pid}).encode() + b"\n")
        line = await reader.readline()
        try:
            if not line or json.loads(line).get("op") != "start":
                raise ValueError(f"container {proc.container_id} was created but not started")
            self._release(proc, request["root"])
        except BaseException:
            with contextlib.suppress(Exception):  # its exit is then reaped and reported as any other
                runtime.delete(proc.container_id, root=request["root"], force=True)
            raise
        writer.write(b'{"ok": true}\n')
        await writer.drain()

    def _release(self, proc: Proc, root: str) -> None:
        """runtime.start, answered as soon as the init is released (it is no longer blocked on its
        exec fifo): the byte it then writes there, just before its exec, is read here afterwards
        rather than waited for (start.release). With poststart hooks, the whole start as always."""
        from cais.runtime.verbs import start
        container, fd = start.release(proc.container_id, root=root)
        if start.has_poststart(container):
            try:
                start.wait_released(container, fd)
            finally:
                os.close(fd)
            start.released(container)
            return
        proc.exec_fifo = (fd, container)
        self.loop.add_reader(fd, self._released, proc)

    def _released(self, proc: Proc, exited: bool = False) -> None:
        """The init's byte on its exec fifo (or the end of it), or the init's exit: no byte will come."""
        from cais.runtime.verbs import start
        if proc.exec_fifo is None:
            return
        fd, container = proc.exec_fifo
        if not exited:
            try:
                os.read(fd, 1)
            except BlockingIOError:
                return
            except OSError:
                pass
        self.loop.remove_reader(fd)
        os.close(fd)
        proc.exec_fifo = None
        try:
            start.released(container)
        except OSError as e:
            log.warning("container %s: %s", container.id, e)

    async def _create_container(self, request: dict) -> Proc:
        """The container created (its init waits for `start`) and registered: attaches join it now.

        The runtime's create runs in a worker thread: the init's own setup (mounts, pivot_root…)
        takes a while, during which other starts, output and exits go on here. The init cannot exit
        before it is registered: it waits for `start` (or is reaped by the runtime if setup fails).
        """
        cid = request["id"]
        if cid in self.procs or cid in self.creating:
            raise ValueError(f"container {cid} is already running")
        proc = Proc(cid, cid, None, bool(request.get("tty")))
        proc.exit_file = request["exit_file"]
        stdio, console = self._prepare_io(proc, bool(request.get("stdin")))
        self.warm()
        zygote = self.zygote
        self.creating.add(cid)

        def create() -> bool:
            proc.pid, gone = self._create(cid, request["bundle"], request["root"], console and console.path, stdio,
                                          zygote)
            if console:
                self._receive_console(proc, console)
            return gone

        try:
            creating = asyncio.ensure_future(asyncio.to_thread(create))
            await self._open_log(proc, request, creating)  # meanwhile: a new file, slow on some file systems
            if await creating and self.zygote is zygote and zygote is not None:
                zygote.close()
                self.zygote = None
            self._register(proc)
        except BaseException:
            self._abandon(proc)
            raise
        finally:
            self._created(cid)
            _close_all(stdio)
            if console:
                console.close()
        return proc

    @staticmethod
    async def _open_log(proc: Proc, request: dict, creating: asyncio.Future) -> None:
        """The container's log writer, made while the runtime creates it; if that fails, the
        container (once created) is deleted and the error raised."""
        settings = request.get("log")
        if not settings:
            return
        try:
            proc.log = LogWriter(request["log_path"], settings)
        except BaseException:
            from cais import runtime
            with contextlib.suppress(BaseException):
                await creating
                runtime.delete(proc.container_id, root=request["root"], force=True)
            raise

    async def _exec(self, request: dict, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        cid, exec_id = request["id"], request["exec_id"]
        proc = Proc(_key(cid, exec_id), cid, exec_id, bool(request.get("tty")))
        sub = Subscriber(writer, True, True)
        proc.subscribers.append(sub)
        stdio, console = self._prepare_io(proc, bool(request.get("stdin")))
        self.warm()
        zygote = self.zygote
        self.creating.add(proc.key)

        def start() -> bool:  # a worker thread, as _create_container's
            pid, gone = self._exec_process(cid, request["process"], request["root"], console and console.path,
                                           stdio, zygote)
            if console:
                self._receive_console(proc, console)
            proc.pid = int(pid)
            return gone

        try:
            if await asyncio.to_thread(start) and self.zygote is zygote and zygote is not None:
                zygote.close()
                self.zygote = None
            self._register(proc)
        except BaseException:
            self._abandon(proc)
            raise
        finally:
            self._created(proc.key)
            _close_all(stdio)
            if console:
                console.close()
        writer.write(json.dumps({"ok": True, "pid": proc.pid}).encode() + b"\n")
        await self._pump_stdin(proc, reader)
        await _until_client_leaves(reader, writer)
        with contextlib.suppress(ValueError):
            proc.subscribers.remove(sub)

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
        await _until_client_leaves(reader, writer)
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
        status = self.unclaimed.pop(proc.pid, None)
        if status is not None:  # it exited before it was registered here
            self._exited(proc, status)

    def _abandon(self, proc: Proc) -> None:
        """A start that failed: release its descriptors and end the attaches waiting for it."""
        control = frames.frame(frames.CONTROL, json.dumps({"exit_code": 128}).encode())
        for sub, _ in self.pending.pop(proc.key, []):
            _end(sub.writer, control)
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
        slow = [sub for sub in proc.subscribers if sub.behind()]
        if slow:
            self.loop.remove_reader(fd)
            proc.paused.add(fd)
            self.loop.create_task(self._resume_when_sent(proc, fd, slow))

    async def _resume_when_sent(self, proc: Proc, fd: int, slow: list[Subscriber]) -> None:
        """Read `fd` again once every slow subscriber sent its backlog (or left)."""
        for sub in slow:
            with contextlib.suppress(Exception):  # a subscriber that left is no reason to wait
                await sub.writer.drain()
        proc.paused.discard(fd)
        if not proc.done and fd in proc.outputs:
            self.loop.add_reader(fd, self._readable, proc, fd)

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
            proc = self.by_pid.get(pid)
            if proc is not None:
                self._exited(proc, status)
            elif self.creating:  # perhaps a process a worker thread made, not registered yet
                self.unclaimed[pid] = status
            else:
                self._zygote_gone(pid)  # or an orphan reparented to us: reaped, nothing to record

    def _exited(self, proc: Proc, status: int) -> None:
        self.by_pid.pop(proc.pid, None)
        self._released(proc, exited=True)  # an init that died before its byte (killed meanwhile)
        proc.status = os.waitstatus_to_exitcode(status)
        if proc.status < 0:
            proc.status = 128 - proc.status  # killed by a signal: docker reports 128+N
        proc.grace = self.loop.call_later(DRAIN_GRACE, self._drained_or_given_up, proc)
        self._maybe_finish(proc)

    def _created(self, key: str) -> None:
        """A worker thread's create or exec is over (registered or failed)."""
        self.creating.discard(key)
        if not self.creating:
            for pid in self.unclaimed:
                self._zygote_gone(pid)
            self.unclaimed.clear()

    def _maybe_finish(self, proc: Proc) -> None:
        if proc.status is not None and not proc.outputs:
            self._finish(proc)

    def _drained_or_given_up(self, proc: Proc) -> None:
        """DRAIN_GRACE after the exit, output still open: a daemonized child holds it, and it is
        closed. Unless a slow subscriber holds the reading up: then the exit is reported now (as
        dockerd reports it 2 s after, whatever its streams do) and the output keeps going to the
        subscriber until its end."""
        if not proc.paused:
            self._finish(proc)
            return
        self._report(proc)
        proc.grace = self.loop.call_later(DRAIN_GRACE, self._drained_or_given_up, proc)

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
        control = frames.frame(frames.CONTROL, json.dumps({"exit_code": proc.status}).encode())
        for sub in proc.subscribers:
            _end(sub.writer, control)
        self._report(proc)

    def _report(self, proc: Proc) -> None:
        """The exit, once: the exit file, the watchers (caisd); the key is free for the next start."""
        if proc.reported:
            return
        proc.reported = True
        event = {"id": proc.container_id, "exec_id": proc.exec_id, "exit_code": proc.status,
                 "finished_at": timestamp()}
        if proc.exit_file:  # for a caisd that is down now; not fsynced: a machine crash ends the container too
            write_json_atomic(proc.exit_file, {"ExitCode": proc.status, "FinishedAt": event["finished_at"]},
                              durable=False)
        if self.procs.get(proc.key) is proc:
            del self.procs[proc.key]
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


def _end(writer: asyncio.StreamWriter, control: bytes) -> None:
    """The exit frame, then a half-close: the client reads everything up to it, then closes.

    Never a close here while the client may still send (its end of stdin, a resize): closing with
    bytes unread resets the connection, and the client loses the output it has not read yet."""
    with contextlib.suppress(Exception):
        writer.write(control)
        writer.write_eof()


async def _until_client_leaves(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Read (and drop) what the client still sends until it closes its end, or until the
    connection is closed here (a client that stopped reading, see Subscriber.send)."""
    with contextlib.suppress(Exception):
        while not writer.transport.is_closing() and await reader.read(65536):
            pass


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
    sup.warm()
    print("ready", flush=True)
    try:
        async with server:
            await sup.stop.wait()
    finally:
        sup.close()
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
