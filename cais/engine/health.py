"""HEALTHCHECK: a thread per watched container runs the probe as an exec, docker's way.

Probe results update State.Health {Status, FailingStreak, Log[≤5]} and emit
`health_status: healthy|unhealthy` events. Durations in the config are nanoseconds.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time

from cais.engine import frames, logs
from cais.engine.errors import EngineError

DEFAULT_INTERVAL = 30.0
DEFAULT_TIMEOUT = 30.0
DEFAULT_RETRIES = 3
MAX_OUTPUT = 4096
MAX_LOG = 5


def _seconds(ns: int | None, default: float) -> float:
    return ns / 1e9 if ns else default


class HealthMonitor:
    def __init__(self, engine) -> None:  # type: ignore[no-untyped-def]
        self.engine = engine
        self.stops: dict[str, threading.Event] = {}

    def watch(self, cid: str) -> None:
        record = self.engine.get(cid)
        check = record["Config"].get("Healthcheck") or {}
        test = check.get("Test") or []
        if not test or test[0] == "NONE" or cid in self.stops:
            return
        stop = threading.Event()
        self.stops[cid] = stop
        with self.engine.store.lock:
            record["State"]["Health"] = {"Status": "starting", "FailingStreak": 0, "Log": []}
            self.engine.store.save(record)
        threading.Thread(target=self._run, args=(cid, check, stop), daemon=True, name=f"health-{cid[:12]}").start()

    def unwatch(self, cid: str) -> None:
        stop = self.stops.pop(cid, None)
        if stop:
            stop.set()

    def stop_all(self) -> None:
        for cid in list(self.stops):
            self.unwatch(cid)

    def _run(self, cid: str, check: dict, stop: threading.Event) -> None:
        interval = _seconds(check.get("Interval"), DEFAULT_INTERVAL)
        timeout = _seconds(check.get("Timeout"), DEFAULT_TIMEOUT)
        start_period = _seconds(check.get("StartPeriod"), 0)
        start_interval = _seconds(check.get("StartInterval"), 5.0)
        retries = check.get("Retries") or DEFAULT_RETRIES
        started = time.monotonic()
        test = check["Test"]
        cmd = ["/bin/sh", "-c", test[1]] if test[0] == "CMD-SHELL" else test[1:]
        wait = start_interval if start_period and check.get("StartInterval") else interval
        while not stop.wait(wait):
            in_start = time.monotonic() - started < start_period
            wait = start_interval if in_start and check.get("StartInterval") else interval
            try:
                result = self._probe(cid, cmd, timeout)
            except EngineError:
                return
            self._record(cid, result, retries, in_start)

    def _probe(self, cid: str, cmd: list[str], timeout: float) -> dict:
        start = logs.timestamp()
        exec_id = self.engine.exec_create(cid, {"Cmd": cmd, "AttachStdout": True, "AttachStderr": True})["Id"]
        output = b""
        code = -1
        try:
            _, sock = self.engine.exec_start(exec_id)
        except EngineError as e:
            return {"Start": start, "End": logs.timestamp(), "ExitCode": -1, "Output": str(e)}
        deadline = time.monotonic() + timeout
        with sock:
            buf = b""
            while time.monotonic() < deadline:
                sock.settimeout(max(0.05, deadline - time.monotonic()))
                try:
                    chunk = sock.recv(65536)
                except TimeoutError:
                    break
                if not chunk:
                    break
                buf += chunk
                while len(buf) >= frames.HEADER.size:
                    stream, length = frames.HEADER.unpack(buf[: frames.HEADER.size])
                    if len(buf) < frames.HEADER.size + length:
                        break
                    data = buf[frames.HEADER.size: frames.HEADER.size + length]
                    buf = buf[frames.HEADER.size + length:]
                    if stream == frames.CONTROL:
                        code = json.loads(data)["exit_code"]
                    elif len(output) < MAX_OUTPUT:
                        output += data
        if code != -1:
            self.engine.exec_finished(exec_id, code)  # its exec_die event, before the exec is forgotten
        self.engine.execs.pop(exec_id, None)
        if code == -1:
            text = f"Health check exceeded timeout ({timeout:g}s)"
        else:
            text = output[:MAX_OUTPUT].decode("utf-8", "replace")
        return {"Start": start, "End": logs.timestamp(), "ExitCode": code, "Output": text}

    def _record(self, cid: str, result: dict, retries: int, in_start: bool) -> None:
        with contextlib.suppress(EngineError):
            record = self.engine.get(cid)
            with self.engine.store.lock:
                health = record["State"].setdefault("Health", {"Status": "starting", "FailingStreak": 0, "Log": []})
                before = health["Status"]
                health["Log"] = [*health["Log"], result][-MAX_LOG:]
                if result["ExitCode"] == 0:
                    health["Status"] = "healthy"
                    health["FailingStreak"] = 0
                elif not in_start:
                    health["FailingStreak"] += 1
                    if health["FailingStreak"] >= retries:
                        health["Status"] = "unhealthy"
                self.engine.store.save(record)
            if health["Status"] != before:
                self.engine._event(record, f"health_status: {health['Status']}")
