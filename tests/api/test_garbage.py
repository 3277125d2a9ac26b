"""Every route caisd serves, sent garbage: docker's status codes and `{"message": …}`, never a 500
where dockerd answers 4xx, never Python text, never a hang; the daemon stays up and nothing leaks.

The routes are walked from the router itself (cais/api registers them), so a new endpoint is
fuzzed without touching this file. Nothing here reaches a registry: every image reference a
route could pull or push names `localhost:1`, where nothing listens.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import urllib.parse
from collections.abc import Iterator

import pytest

from tests.api.garbage import BAD_IDS, BAD_QUERY, NOT_OBJECTS, WRONG_VALUES, Answer, probe, problems, raw
from tests.caisd import Caisd, caisd
from tests.wait import wait_for

IMAGE = "localhost:1/cais-bi/target:1"  # busybox, under a name that pushes and pulls go nowhere with
# the target container stops on SIGTERM at once (busybox's sleep as pid 1 would ignore it)
TARGET_CMD = ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.2; done"]
STREAMS = re.compile(r"/(logs|stats|events|attach|wait|export|archive|get)$")
REGISTRY = ("/images/create", "/push", "/distribution/", "/images/search", "/auth", "/build")


def _routes() -> list[tuple[str, str, object]]:
    from cais.api import routing, server
    server.make_app(None)
    return [(m, p, h) for m, p, h in routing.ROUTES if p != "/_ping"]


def _query_names(handler: object) -> list[str]:
    """The query parameters a handler reads (from its source), for the bad-value sweep."""
    source = inspect.getsource(handler)  # type: ignore[arg-type]
    names = set(re.findall(r"""q(?:int|str|bool)\(request, "([\w-]+)\"""", source))
    names |= set(re.findall(r"""query\.get(?:all)?\("([\w-]+)\"""", source))
    if "qfilters(request)" in source:
        names.add("filters")
    if "_timeout(request)" in source:
        names |= {"t", "timeout"}
    if "options" in source and "/build" in source:
        names |= {"t", "dockerfile", "buildargs", "labels", "memory", "memswap", "cpushares", "shmsize",
                  "networkmode", "target", "platform", "cachefrom", "ulimits", "extrahosts"}
    return sorted(names - {"fromImage", "term", "remote"})  # those would name a registry


class Fuzz:
    """Targets (a running container, an exec, an image, a volume) and the list of problems found."""

    def __init__(self, d: Caisd) -> None:
        self.d = d
        self.found: list[str] = []
        self.cid = ""
        self.exec_id = ""
        self.log_seen = 0
        self.dirty = True  # a request may have changed the targets since the last ensure()

    def send(self, method: str, path: str, body: bytes | None = None, *, what: str = "", **kw: object) -> Answer:
        stream = bool(STREAMS.search(path.split("?")[0])) or "follow" in path or "stream" in path
        answer = probe(self.d.sock, method, path, body, stream=stream, timeout=30, **kw)  # type: ignore[arg-type]
        self.dirty |= method not in ("GET", "HEAD") and (answer.status < 400 or answer.status >= 500)
        problem = problems(answer, head=method == "HEAD",
                           allow_500=path.endswith("/update") and answer.message().startswith("Cannot update container"))
        if problem:
            self.found.append(f"{method} {path[:160]} {what}: {problem}")
        if answer.status == 201 and path.split("?")[0].endswith("/containers/create"):
            probe(self.d.sock, "DELETE", f"/v1.41/containers/{json.loads(answer.body)['Id']}?force=1")
        return answer

    def report(self) -> str:
        """Every problem found since the last report, and what the daemon left behind."""
        found, self.found = self.found, []
        if not self.d.ping():
            found.append("caisd stopped answering")
        left = self.d.docker("ps", "-a", "--no-trunc", "--format", "{{.ID}} {{.Names}} {{.Command}}").stdout.decode()
        found += [f"container left: {line}" for line in left.splitlines() if not line.startswith(self.cid)]
        log = self.d.read_log()
        found += [f"traceback in caisd's log: {t[:1500]}" for t in log[self.log_seen:].split("Traceback")[1:]]
        self.log_seen = len(log)
        return "\n".join(found)

    def api(self, method: str, path: str, body: object = None) -> Answer:
        return probe(self.d.sock, method, "/v1.41" + path, None if body is None else json.dumps(body).encode())

    def ensure(self) -> None:
        """Put back whatever a request may have stopped, paused, renamed or removed (through the API: fast)."""
        if not self.dirty:
            return
        self.dirty = False
        if self.api("GET", f"/images/{IMAGE}/json").status != 200:
            repo, tag = IMAGE.rsplit(":", 1)
            self.api("POST", f"/images/busybox/tag?repo={repo}&tag={tag}")
        state = self.api("GET", f"/containers/{self.cid}/json") if self.cid else None
        if state is None or state.status != 200:
            if self.cid:
                self.api("DELETE", f"/containers/{self.cid}?force=1")
            self.cid = json.loads(self.api("POST", "/containers/create", {"Image": IMAGE, "Cmd": TARGET_CMD}).body)["Id"]
            self.api("POST", f"/containers/{self.cid}/start")
            self.exec_id = ""
        elif json.loads(state.body)["State"]["Paused"]:
            self.api("POST", f"/containers/{self.cid}/unpause")
        elif not json.loads(state.body)["State"]["Running"]:
            self.api("POST", f"/containers/{self.cid}/start")
        if not self.exec_id or self.api("GET", f"/exec/{self.exec_id}/json").status != 200:
            self.exec_id = json.loads(self.api("POST", f"/containers/{self.cid}/exec", {"Cmd": ["true"]}).body)["Id"]
        if self.api("GET", "/volumes/cais-bi-vol").status != 200:
            self.api("POST", "/volumes/create", {"Name": "cais-bi-vol"})

    def fill(self, path: str, value: str | None = None) -> str:
        """The route's path with its placeholders filled: the targets, or `value` everywhere."""
        def one(match: re.Match) -> str:
            if value is not None:
                return value
            if path.startswith("/exec/"):
                return self.exec_id
            if path.startswith("/containers/"):
                return self.cid
            if path.startswith(("/images/", "/distribution/")):
                return IMAGE
            if path.startswith("/volumes/"):
                return "cais-bi-vol"
            if path.startswith("/networks/"):
                return "none"
            return "cais-bi-x"
        return re.sub(r"\{[^}]+\}", one, path)


@pytest.fixture(scope="module")
def fuzz() -> Iterator[Fuzz]:
    with caisd() as d:
        f = Fuzz(d)
        f.ensure()
        yield f


def test_bodies_that_are_not_objects(fuzz: Fuzz) -> None:
    for method, path, _ in _routes():
        if method not in ("POST", "PUT") or path.startswith("/auth"):
            continue
        for body in NOT_OBJECTS:
            fuzz.send(method, "/v1.41" + fuzz.fill(path), body, what=f"body {body[:20]!r}")
            if method != "GET":
                fuzz.ensure()
    assert not (report := fuzz.report()), report


def test_bad_ids_names_and_references(fuzz: Fuzz) -> None:
    for method, path, _ in _routes():
        if "{" not in path or path.startswith("/distribution/") or path.endswith("/push"):
            continue
        for bad in BAD_IDS:
            fuzz.send(method, "/v1.41" + fuzz.fill(path, bad), b"{}" if method in ("POST", "PUT") else None,
                      what="bad id")
        fuzz.ensure()
    for bad in BAD_IDS:  # names and references given in the query or the body
        fuzz.send("POST", f"/v1.41/containers/create?name={bad}",
                  json.dumps({"Image": IMAGE, "Cmd": ["true"]}).encode(), what="bad name")
        fuzz.send("POST", f"/v1.41/containers/{fuzz.cid}/rename?name={bad}", what="bad name")
        fuzz.send("POST", f"/v1.41/images/{IMAGE}/tag?repo={bad}&tag={bad}", what="bad repo")
        fuzz.send("POST", f"/v1.41/images/create?fromImage=localhost:1/{bad}", what="bad reference")
        fuzz.send("POST", "/v1.41/volumes/create", json.dumps({"Name": urllib.parse.unquote(bad)}).encode())
        fuzz.send("POST", "/v1.41/containers/create",
                  json.dumps({"Image": "localhost:1/" + urllib.parse.unquote(bad), "Cmd": ["true"]}).encode())
        fuzz.ensure()
    assert not (report := fuzz.report()), report


def test_bad_query_parameters(fuzz: Fuzz) -> None:
    for method, path, handler in _routes():
        if path.startswith(REGISTRY[1:3]) or path.endswith("/push"):
            continue
        for name in _query_names(handler):
            for value in BAD_QUERY:
                query = f"{name}={value}"
                if path == "/images/create":
                    query += "&fromImage=localhost:1/cais-bi/x"
                if path.endswith("/logs"):
                    query += "&stdout=1"
                body = b"" if method in ("POST", "PUT") else None
                fuzz.send(method, "/v1.41" + fuzz.fill(path) + "?" + query, body, what="bad query")
                if method != "GET":
                    fuzz.ensure()
    assert not (report := fuzz.report()), report


CONFIG_FIELDS = ["Hostname", "Domainname", "User", "AttachStdin", "Tty", "OpenStdin", "StdinOnce", "Env", "Cmd",
                 "Entrypoint", "Image", "Volumes", "WorkingDir", "Labels", "StopSignal", "StopTimeout",
                 "Healthcheck", "ExposedPorts", "ArgsEscaped", "MacAddress", "Shell", "OnBuild", "NetworkDisabled"]
HOST_FIELDS = ["Binds", "ContainerIDFile", "LogConfig", "NetworkMode", "PortBindings", "RestartPolicy", "AutoRemove",
               "VolumeDriver", "VolumesFrom", "Mounts", "CapAdd", "CapDrop", "CgroupnsMode", "Dns", "DnsOptions",
               "DnsSearch", "ExtraHosts", "GroupAdd", "IpcMode", "Cgroup", "Links", "OomScoreAdj", "PidMode",
               "Privileged", "PublishAllPorts", "ReadonlyRootfs", "SecurityOpt", "StorageOpt", "Tmpfs", "UTSMode",
               "UsernsMode", "ShmSize", "Sysctls", "Runtime", "Isolation", "MaskedPaths", "ReadonlyPaths",
               "CpuShares", "Memory", "CgroupParent", "BlkioWeight", "BlkioWeightDevice", "BlkioDeviceReadBps",
               "CpuPeriod", "CpuQuota", "CpuRealtimePeriod", "CpusetCpus", "CpusetMems", "Devices",
               "DeviceCgroupRules", "DeviceRequests", "MemoryReservation", "MemorySwap", "MemorySwappiness",
               "NanoCpus", "OomKillDisable", "Init", "PidsLimit", "Ulimits", "ConsoleSize", "Annotations"]
# inner fields of the structured ones, sent garbage one at a time
NESTED = {
    "Healthcheck": {"Test": ["CMD", "true"], "Interval": 1000000000, "Timeout": 1000000000, "Retries": 1,
                    "StartPeriod": 0},
    "LogConfig": {"Type": "json-file", "Config": {"max-size": "1m"}},
    "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 1},
    "Mounts": [{"Type": "volume", "Source": "cais-bi-vol", "Target": "/data", "ReadOnly": False,
                "VolumeOptions": {"NoCopy": False, "Labels": {"a": "b"}}}],
    "PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "0"}]},
    "Ulimits": [{"Name": "nofile", "Soft": 1024, "Hard": 2048}],
    "Devices": [{"PathOnHost": "/dev/null", "PathInContainer": "/dev/cais-null", "CgroupPermissions": "rwm"}],
    "BlkioWeightDevice": [{"Path": "/dev/null", "Weight": 10}],
    "Tmpfs": {"/cais-tmp": "size=1m"},
}


def _create(fuzz: Fuzz, body: dict, what: str) -> None:
    answer = fuzz.send("POST", "/v1.41/containers/create", json.dumps(body).encode(), what=what)
    if answer.status == 201:
        cid = json.loads(answer.body)["Id"]
        start = probe(fuzz.d.sock, "POST", f"/v1.41/containers/{cid}/start")  # dockerd may answer 500 here
        if problems(start, allow_500=True):
            fuzz.found.append(f"start after create {what}: {problems(start, allow_500=True)}")
        if problems(stop := probe(fuzz.d.sock, "DELETE", f"/v1.41/containers/{cid}?force=1")):
            fuzz.found.append(f"remove after create {what}: {problems(stop)}")


def test_create_fields_of_the_wrong_type(fuzz: Fuzz) -> None:
    base = {"Image": IMAGE, "Cmd": ["true"]}
    for field in CONFIG_FIELDS:
        for value in WRONG_VALUES:
            _create(fuzz, {**base, field: value}, f"{field}={value!r}")
    for field in HOST_FIELDS:
        for value in WRONG_VALUES:
            _create(fuzz, {**base, "HostConfig": {field: value}}, f"HostConfig.{field}={value!r}")
    for field, good in NESTED.items():
        item = good[0] if isinstance(good, list) else good
        for key in item:
            for value in WRONG_VALUES:
                bad = {**item, key: value}
                host = {field: [bad] if isinstance(good, list) else bad}
                body = {**base, "Healthcheck": bad} if field == "Healthcheck" else {**base, "HostConfig": host}
                _create(fuzz, body, f"{field}.{key}={value!r}")
    for value in WRONG_VALUES:
        _create(fuzz, {**base, "NetworkingConfig": value}, f"NetworkingConfig={value!r}")
        _create(fuzz, {**base, "NetworkingConfig": {"EndpointsConfig": value}}, f"EndpointsConfig={value!r}")
        _create(fuzz, {**base, "NetworkingConfig": {"EndpointsConfig": {"none": value}}}, f"endpoint={value!r}")
        _create(fuzz, {**base, "Env": ["A=1", value]}, f"Env item {value!r}")
        _create(fuzz, {**base, "Labels": {"a": value}}, f"Labels value {value!r}")
        _create(fuzz, {**base, "HostConfig": {"Binds": [value]}}, f"Binds item {value!r}")
    assert not (report := fuzz.report()), report


def test_other_bodies_with_wrong_types(fuzz: Fuzz) -> None:
    bodies = {
        f"/containers/{fuzz.cid}/update": ["Memory", "CpuShares", "RestartPolicy", "PidsLimit", "BlkioWeight",
                                           "CpuQuota", "MemorySwap", "NanoCpus", "CpusetCpus"],
        f"/containers/{fuzz.cid}/exec": ["Cmd", "Env", "User", "WorkingDir", "Tty", "Privileged", "AttachStdin",
                                         "DetachKeys", "ConsoleSize"],
        "/volumes/create": ["Name", "Driver", "DriverOpts", "Labels"],
        "/networks/create": ["Name", "Driver", "Internal", "Attachable", "IPAM", "Options", "Labels", "EnableIPv6",
                             "CheckDuplicate", "Ingress", "ConfigOnly", "ConfigFrom"],
        "/networks/none/connect": ["Container", "EndpointConfig"],
        "/networks/none/disconnect": ["Container", "Force"],
        "/commit?container=" + fuzz.cid: ["Cmd", "Env", "Labels", "ExposedPorts", "Volumes", "Entrypoint",
                                          "Healthcheck", "User"],
        "/auth": ["username", "password", "serveraddress", "identitytoken"],
    }
    for path, fields in bodies.items():
        for field in fields:
            for value in WRONG_VALUES:
                body = {field: value}
                if path == "/auth":
                    body.setdefault("serveraddress", "localhost:1")
                if path.startswith("/networks/create"):
                    body.setdefault("Name", "cais-bi-net")
                    body.setdefault("Driver", "null")
                answer = fuzz.send("POST", "/v1.41" + path, json.dumps(body).encode(), what=f"{field}={value!r}")
                if answer.status == 201 and path.startswith("/commit"):
                    probe(fuzz.d.sock, "DELETE", f"/v1.41/images/{json.loads(answer.body)['Id']}?force=1")
                if answer.status == 201 and path.startswith("/networks/"):
                    probe(fuzz.d.sock, "DELETE", f"/v1.41/networks/{json.loads(answer.body)['Id']}")
                if answer.status == 201 and path.startswith("/volumes/"):
                    probe(fuzz.d.sock, "DELETE", f"/v1.41/volumes/{json.loads(answer.body)['Name']}")
                fuzz.ensure()
    assert not (report := fuzz.report()), report


def test_truncated_requests_and_clients_that_leave(fuzz: Fuzz) -> None:
    sock = fuzz.d.sock
    for data in (b"GET /_ping HTTP/1.1\r\nHost", b"POST /v1.41/containers/create HTTP/1.1\r\nContent-Length: 500\r\n"
                 b"\r\n{\"Image\"", b"GARBAGE\r\n\r\n", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
                 b"GET /v1.41/containers/json HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
                 b"POST /v1.41/build HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"):
        raw(sock, data)
    # a tarball cut off mid-upload: nothing half-loaded, half-copied or half-built is left
    import io
    import tarfile
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("big")
        info.size = 1 << 20
        tar.addfile(info, io.BytesIO(b"x" * info.size))
    half = buf.getvalue()[: 600 << 10]
    for path in ("/v1.41/images/load", f"/v1.41/containers/{fuzz.cid}/archive?path=/tmp",
                 "/v1.41/images/create?fromSrc=-&repo=cais-bi/imported", "/v1.41/build?t=cais-bi/built"):
        method = "PUT" if "archive" in path else "POST"
        raw(sock, f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-tar\r\n"
                  f"Content-Length: {len(buf.getvalue())}\r\n\r\n".encode() + half, read=False)
    assert fuzz.d.ping()
    images = fuzz.d.docker("images", "--format", "{{.Repository}}").stdout.decode().split()
    assert not [i for i in images if i.startswith("cais-bi/")], images
    assert not (report := fuzz.report()), report


def test_nothing_left_under_the_roots(fuzz: Fuzz) -> None:
    fuzz.d.docker("rm", "-f", fuzz.cid)
    fuzz.cid = ""
    with open("/proc/self/mountinfo") as f:
        mounts = [line.split()[4] for line in f if fuzz.d.root in line.split()[4]]
    assert not [m for m in mounts if "/containers/" in m or "/overlay" in m], mounts
    containers = os.path.join(fuzz.d.data_root, "containers")
    # a removed container's directory is deleted in the background
    wait_for(lambda: not os.path.isdir(containers) or not os.listdir(containers), "the background deletion")


# dockerd 20.10's own messages for these bodies (it answers them 500; caisd 400, as later dockerd)
DOCKERD_MESSAGES = [
    ({"HostConfig": {"Memory": "lots"}},
     "json: cannot unmarshal string into Go struct field HostConfig.HostConfig.Memory of type int64"),
    ({"HostConfig": {"PortBindings": {"80/tcp": "x"}}},
     "json: cannot unmarshal string into Go struct field HostConfig.HostConfig.PortBindings of type []nat.PortBinding"),
    ({"NetworkingConfig": [1]}, "json: cannot unmarshal array into Go struct field "
                                "ContainerConfigWrapper.NetworkingConfig of type network.NetworkingConfig"),
    ({"Healthcheck": {"Interval": 1.5}},
     "json: cannot unmarshal number 1.5 into Go struct field HealthConfig.Healthcheck.Interval of type time.Duration"),
    ({"Cmd": 5}, "json: cannot unmarshal number into Go struct field ContainerConfigWrapper.Cmd of type string"),
    ({"HostConfig": {"BlkioWeight": -1}},
     "json: cannot unmarshal number -1 into Go struct field HostConfig.HostConfig.BlkioWeight of type uint16"),
]


def test_wrong_types_have_dockerds_messages(fuzz: Fuzz) -> None:
    for body, message in DOCKERD_MESSAGES:
        answer = fuzz.api("POST", "/containers/create", {"Image": IMAGE, **body})
        assert (answer.status, answer.message()) == (400, message)
