"""`--format` parity: the cais CLI prints what the docker CLI (28.2) prints from the same caisd.

Both clients talk to one private caisd holding a container with labels, published ports and a
named volume, a volume with labels (one with `<`, `&`, `>` to escape), a running container, a
tagged image and a `<none>` one. Each line must be byte-identical, but for what ticks between the
two runs (durations, stats readings: compared by shape) and what docker prints in Go's random
map order (labels of volumes and networks, rows of an image's repositories: compared sorted).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest

from tests.caisd import Caisd, caisd

_DURATION = re.compile(r"(Less than a second|About an? (minute|hour)|\d+ (second|minute|hour|day|week|month|year)s?)")
_STATS = re.compile(r'("(CPUPerc|MemUsage|MemPerc|NetIO|BlockIO)":)"[^"]*"')
_UNORDERED = re.compile(r'("Labels":)"([^"]*)"')


@pytest.fixture(scope="module")
def d() -> Iterator[Caisd]:
    with caisd(prefix="cais-cf") as daemon:
        daemon.docker("volume", "create", "--label", "a=b", "--label", "x=<y&z>", "cais-cf-vol")
        daemon.docker("volume", "create", "cais-cf-vol2")
        daemon.docker("create", "--name", "cais-cf-one", "--network", "none", "-p", "8080:80",
                      "-p", "9000-9001:9000-9001/udp", "--expose", "7000", "--label", "com.example=1",
                      "--label", "h=<b>é", "-v", "cais-cf-vol:/data", "busybox", "sh", "-c", "echo hi && sleep 1")
        daemon.docker("run", "--name", "cais-cf-two", "--network", "none", "busybox", "true")
        daemon.docker("commit", "cais-cf-two")  # an image without a name: <none>
        daemon.docker("tag", "busybox", "cais-cf/img:v1")
        daemon.docker("run", "-d", "--name", "cais-cf-up", "--network", "none", "-l", "z=1", "busybox", "sleep", "300")
        yield daemon


def _normal(text: str, unordered: bool) -> list[str]:
    text = _STATS.sub(r'\1"<reading>"', _DURATION.sub("<duration>", text))
    if unordered:
        text = _UNORDERED.sub(lambda m: m.group(1) + '"' + ",".join(sorted(m.group(2).split(","))) + '"', text)
    return text.splitlines()


def _same(d: Caisd, *args: str, unordered: bool = False) -> str:
    """Run both clients; their outputs (and exit codes) must match line by line."""
    docker = d.docker(*args, check=False)
    cais = d.cais(*args, check=False)
    assert (cais.returncode, cais.stderr.decode()) == (docker.returncode, docker.stderr.decode()), args
    want, got = _normal(docker.stdout.decode(), unordered), _normal(cais.stdout.decode(), unordered)
    if unordered:
        want, got = sorted(want), sorted(got)
    assert got == want, args
    return docker.stdout.decode()


@pytest.mark.parametrize("args", [
    ["ps", "-a"], ["ps", "-a", "--no-trunc"], ["ps", "--size"], ["ps", "-a", "--size"],
    ["volume", "ls"], ["network", "ls"], ["network", "ls", "--no-trunc"],
    ["history", "busybox"], ["history", "--no-trunc", "busybox"], ["history", "-H=false", "busybox"],
    ["system", "df"], ["stats", "--no-stream"], ["stats", "--no-stream", "cais-cf-up"],
])
def test_json_lines(d: Caisd, args: list[str]) -> None:
    out = _same(d, *args, "--format", "json", unordered=args[0] in ("volume", "network"))
    assert out.strip(), args


@pytest.mark.parametrize("args", [["images"], ["images", "-a"], ["images", "--digests"], ["images", "--no-trunc"],
                                  ["images", "--filter", "dangling=true"], ["images", "busybox"],
                                  ["images", "--filter", "reference=cais-cf/*"]])
def test_images_json(d: Caisd, args: list[str]) -> None:
    """An image's repositories come in Go's map order: the rows are compared sorted."""
    out = _same(d, *args, "--format", "json", unordered=True)
    assert out.strip()


def test_escaping_and_fields(d: Caisd) -> None:
    """What the first comparison against docker found: Go's escaping, ps' Platform and Size, the
    images' N/A sizes, a network's context instead of the API object."""
    ps = _same(d, "ps", "-a", "--filter", "name=cais-cf-one", "--format", "json")
    assert '"Platform":null' in ps and '"Size":"0B"' in ps and '"Mounts":"cais-cf-vol"' in ps
    assert '\\u0026\\u0026 s…' in ps and 'h=\\u003cb\\u003eé' in ps  # Go escapes <>& and keeps UTF-8
    images = _same(d, "images", "--filter", "dangling=true", "--format", "json", unordered=True)
    assert '"Repository":"\\u003cnone\\u003e"' in images and '"SharedSize":"N/A"' in images
    networks = _same(d, "network", "ls", "--format", "json", unordered=True)
    assert '"IPv4":"true"' in networks and '"Id"' not in networks


@pytest.mark.parametrize("args", [
    ["ps", "-a", "--format", '{{.Names}} {{.Label "com.example"}} {{.Label "h"}} {{.Labels}} {{.Mounts}} {{.Ports}}'],
    ["ps", "-a", "--format", "table {{.ID}}\t{{.Names}}\t{{.Size}}\t{{.LocalVolumes}}\t{{.Networks}}"],
    ["ps", "-a", "--format", 'table {{.Label "com.example"}}\t{{.Names}}\t{{.Command}}\t{{.Platform}}'],
    ["ps", "-a", "--format", "{{json .}}"], ["ps", "-a", "--format", "{{json .Labels}}"],
    ["ps", "-a", "--filter", "label=com.example", "--format", "{{.CreatedAt}}|{{.State}}|{{.Image}}"],
    ["volume", "ls", "--format", 'table {{.Name}}\t{{.Driver}}\t{{.Label "a"}}\t{{.Links}}\t{{.Size}}'],
    ["volume", "ls", "--format", "{{.Name}} {{.Scope}} {{.Mountpoint}} {{.Group}}"],
    ["network", "ls", "--format", "table {{.ID}}\t{{.Name}}\t{{.IPv4}}\t{{.IPv6}}\t{{.Internal}}\t{{.CreatedAt}}"],
    ["history", "--format", "table {{.ID}}\t{{.CreatedBy}}\t{{.Size}}\t{{.CreatedAt}}", "busybox"],
    ["stats", "--no-stream", "--format", "table {{.Container}}\t{{.Name}}\t{{.ID}}"],
    ["system", "df", "--format", "{{.Type}}: {{.TotalCount}} {{.Active}} {{.Size}} {{.Reclaimable}}"],
    ["ps", "-a"], ["ps", "-a", "--size"], ["volume", "ls"], ["network", "ls"], ["history", "busybox"],
    ["system", "df"], ["system", "df", "-v"],
    ["ps", "-a", "--format", "raw"], ["ps", "-a", "--size", "--format", "raw"], ["volume", "ls", "--format", "raw"],
    ["network", "ls", "--format", "raw"],
])
def test_templates_and_tables(d: Caisd, args: list[str]) -> None:
    _same(d, *args)


@pytest.mark.parametrize("args", [
    ["images"], ["images", "--digests"],
    ["images", "--format", "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.Size}}\t{{.VirtualSize}}\t{{.Digest}}"],
    ["images", "--format", "table {{.ID}}\t{{.SharedSize}}\t{{.UniqueSize}}\t{{.Containers}}\t{{.CreatedAt}}"],
])
def test_image_tables(d: Caisd, args: list[str]) -> None:
    """The header first, then the rows (in Go's map order across repositories: sorted)."""
    docker = d.docker(*args).stdout.decode().splitlines()
    cais = d.cais(*args).stdout.decode().splitlines()
    assert cais[0] == docker[0]
    assert sorted(_normal("\n".join(cais[1:]), False)) == sorted(_normal("\n".join(docker[1:]), False))


@pytest.mark.parametrize("template", ["json", "{{json .Volumes}}", "{{json .Images}}"])
def test_system_df_verbose(d: Caisd, template: str) -> None:
    """-v with a format: one template over all the lists (full IDs, no trailing newline); the
    volumes' labels come in Go's map order."""
    out = _same(d, "system", "df", "-v", "--format", template, unordered=template != "{{json .Images}}")
    assert not out.endswith("\n")


def test_events(d: Caisd) -> None:
    since = int(time.time())
    d.docker("start", "cais-cf-two")
    d.docker("volume", "create", "--label", "q=<1>", "cais-cf-ev")
    d.docker("volume", "rm", "cais-cf-ev")
    until = str(int(time.time()) + 1)
    window = ["events", "--since", str(since), "--until", until]
    out = _same(d, *window, "--format", "json")
    assert '"Type":"volume"' in out and out.startswith('{"status"')
    _same(d, *window)
    _same(d, *window, "--format", "{{.Type}} {{.Action}} {{.Actor.Attributes.name}} {{json .Actor}}")


@pytest.mark.parametrize(("name", "template"), [("cais-cf-vol", "{{.Name}} {{.Driver}} {{.Labels.a}}"),
                                               ("busybox", "{{.Id}} {{.Os}}"), ("cais-cf-one", "{{.Name}} {{.Id}}"),
                                               ("none", "{{.Name}} {{.Driver}}")])
def test_inspect_finds_every_kind(d: Caisd, name: str, template: str) -> None:
    """`inspect` looks for containers, images, networks and volumes, as docker does."""
    assert _same(d, "inspect", "--format", template, name).strip()


def test_volume_inspect_json_line(d: Caisd) -> None:
    """{{json .}} of an API object: Go's Encoder, without HTML escaping."""
    out = _same(d, "volume", "inspect", "--format", "{{json .}}", "cais-cf-vol")
    assert '"x":"<y&z>"' in out


@pytest.mark.parametrize("name", ["cais-cf-one", "cais-cf-up", "cais-cf-vol", "none", "host"])
def test_inspect_json_line(d: Caisd, name: str) -> None:
    """`inspect -f '{{json .}}'` of containers, volumes and networks: the docker CLI re-encodes the
    daemon's object in its Go types, so caisd writes them in those types' order and shape."""
    _same(d, "inspect", "--format", "{{json .}}", name)


def test_inspect_size_json_line(d: Caisd) -> None:
    _same(d, "inspect", "--size", "--format", "{{json .}}", "cais-cf-one")


@pytest.mark.parametrize("args", [
    ["ps", "--filter", "name=nothing-here", "--format", "{{.Nope}}"],  # checked even without containers
    ["ps", "-a", "--format", "table {{.ID}}\\t{{ .Nope }}"], ["ps", "--format", "{{.ID"],
    ["images", "--format", "table {{.ID}}\\t{{ .Nope }}"], ["volume", "ls", "--format", "x\\n{{.Name}} {{.Nope}}"],
    ["network", "ls", "--format", "{{.Nope}}"], ["history", "--format", "{{.Nope}}", "busybox"],
    ["stats", "--no-stream", "--format", "{{.Nope}}"],
    ["inspect", "--format", "{{.Nope}}", "busybox", "cais-cf-one"], ["inspect", "--format", "{{.Config.Nope}}", "cais-cf-one"],
    ["inspect", "--format", "{{.Id}}", "busybox", "cais-cf-nothing"], ["volume", "inspect", "--format", "{{.Nope}}", "cais-cf-vol"],
    ["network", "inspect", "--format", "{{.Nope}}", "none"],
    ["inspect", "--format", "{{.Config.Labels.nope}}|{{.State.Status}}|{{json .Config.Labels}}", "cais-cf-one"],
    ["top", "cais-cf-up", "-o", "pid,comm"], ["port", "cais-cf-one", "80"], ["port", "cais-cf-one"],
])
def test_errors_and_others(d: Caisd, args: list[str]) -> None:
    """Template errors word for word (Go's line:column, the context's type), inspect's partial
    output, top's ps options, port's messages."""
    _same(d, *args)


@pytest.mark.parametrize("args", [["images", "--format", "raw"], ["images", "--digests", "--format", "raw"]])
def test_images_raw(d: Caisd, args: list[str]) -> None:
    """One block per image row, in Go's map order across repositories: compared sorted."""
    assert sorted(d.cais(*args).stdout.decode().split("\n\n")) == sorted(d.docker(*args).stdout.decode().split("\n\n"))
