"""System endpoints: ping, version, info, df, events, auth."""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import platform
import threading
import time

from aiohttp import web

from cais import __version__
from cais.api import schema, versions
from cais.api.errors import json_reply, read_json
from cais.api.images import for_version
from cais.api.routing import api_version, qfilters, qstr, route
from cais.api.streams import client_gone
from cais.engine.logs import parse_timestamp
from cais.image.platform import go_arch


def _ping_headers() -> dict[str, str]:
    return {"API-Version": versions.API_VERSION, "Builder-Version": versions.BUILDER_VERSION,
            "Docker-Experimental": "false", "OSType": "linux", "Cache-Control": "no-cache, no-store, must-revalidate",
            "Pragma": "no-cache", "Swarm": "inactive"}


@route("GET", "/_ping")
async def ping(request: web.Request) -> web.Response:
    return web.Response(text="OK", headers=_ping_headers(), content_type="text/plain")


@route("HEAD", "/_ping")
async def ping_head(request: web.Request) -> web.Response:
    return web.Response(headers={**_ping_headers(), "Content-Type": "text/plain; charset=utf-8",
                                 "Content-Length": "0"})


def version_document() -> dict:
    uname = platform.uname()
    details = {"ApiVersion": versions.API_VERSION, "MinAPIVersion": versions.MIN_API_VERSION,
               "Arch": go_arch(uname.machine), "Os": "linux", "KernelVersion": uname.release,
               "GitCommit": "", "GoVersion": f"python{platform.python_version()}", "BuildTime": "",
               "Experimental": "false"}
    return {
        "Platform": {"Name": "cais"},
        "Components": [{"Name": "Engine", "Version": __version__, "Details": details}],
        "Version": __version__, "ApiVersion": versions.API_VERSION, "MinAPIVersion": versions.MIN_API_VERSION,
        "GitCommit": "", "GoVersion": f"python{platform.python_version()}", "Os": "linux",
        "Arch": go_arch(uname.machine), "KernelVersion": uname.release,
        "BuildTime": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.000000000+00:00"),
    }


@route("GET", "/version")
async def version(request: web.Request) -> web.Response:
    return json_reply(version_document())


def info_document(engine, settings: dict) -> dict:  # type: ignore[no-untyped-def]
    from cais.engine.engine import host_info
    host = host_info()
    return {
        "ID": settings.get("id", ""), **engine.counts(), "Images": engine.images.count(),
        "Driver": engine.storage.driver_name, "DriverStatus": [["Backing Filesystem", "extfs"]],
        "Plugins": {"Volume": ["local"], "Network": ["none", "host"], "Authorization": None,
                    "Log": ["json-file", "local", "none"]},
        "MemoryLimit": True, "SwapLimit": True, "CpuCfsPeriod": True, "CpuCfsQuota": True, "CPUShares": True,
        "CPUSet": True, "PidsLimit": True, "IPv4Forwarding": False, "Debug": bool(settings.get("debug")),
        "NFd": len(os.listdir("/proc/self/fd")), "OomKillDisable": True, "NGoroutines": threading.active_count(),
        "SystemTime": datetime.datetime.now(datetime.UTC).isoformat(), "LoggingDriver": engine.log_config["Type"],
        "CgroupDriver": "cgroupfs", "CgroupVersion": "2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers")
        else "1", "NEventsListener": len(engine.events.subscribers), "KernelVersion": host["KernelVersion"],
        "OperatingSystem": host["OperatingSystem"], "OSVersion": "", "OSType": "linux",
        "Architecture": host["Architecture"], "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": {"IndexConfigs": {}, "InsecureRegistryCIDRs": ["127.0.0.0/8"], "Mirrors": []},
        "NCPU": host["NCPU"], "MemTotal": host["MemTotal"], "DockerRootDir": engine.data_root,
        "Name": host["Name"], "Labels": [], "ExperimentalBuild": False, "ServerVersion": __version__,
        "Runtimes": {"cais-runtime": {"path": "cais-runtime"}}, "DefaultRuntime": "cais-runtime",
        "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive", "ControlAvailable": False,
                  "Error": "", "RemoteManagers": None},
        "LiveRestoreEnabled": True, "Isolation": "", "InitBinary": engine.init_path or "",
        "SecurityOptions": ["name=seccomp,profile=builtin", *(["name=userns"] if engine.remap else [])],
        "Warnings": [f"WARNING: {engine.supervisor.mismatch}"] if engine.supervisor.mismatch else None,
    }


@route("GET", "/info")
async def info(request: web.Request) -> web.Response:
    return json_reply(await asyncio.to_thread(info_document, request.app["engine"], request.app["settings"]))


@route("GET", "/system/df")
async def df(request: web.Request) -> web.Response:
    engine = request.app["engine"]
    usage = await asyncio.to_thread(engine.disk_usage)
    for image in usage.get("Images") or []:
        for_version(image, api_version(request))
    return json_reply(usage)


@route("POST", "/auth")
async def auth(request: web.Request) -> web.Response:
    body = schema.check(await read_json(request), schema.AUTH)
    engine = request.app["engine"]
    return json_reply(await asyncio.to_thread(engine.images.login, body))


@route("GET", "/events")
async def events(request: web.Request) -> web.StreamResponse:
    engine = request.app["engine"]
    since = parse_timestamp(qstr(request, "since")) if qstr(request, "since") else None
    until = parse_timestamp(qstr(request, "until")) if qstr(request, "until") else None
    past, sub = engine.events.subscribe(qfilters(request), since, until)
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    try:
        for event in past:
            await response.write(json.dumps(event).encode() + b"\n")
        while not client_gone(request):
            if until is not None and time.time() > until:
                break
            event = await asyncio.to_thread(sub.get, 0.5)
            if event is None:
                continue
            if until is not None and event["timeNano"] / 1e9 > until:
                break
            await response.write(json.dumps(event).encode() + b"\n")
    except (ConnectionError, RuntimeError):
        pass
    finally:
        sub.close()
    return response
