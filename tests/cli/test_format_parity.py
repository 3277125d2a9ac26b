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
_PADDING = re.compile(r"  +")
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
    timed = _DURATION.sub("<duration>", text)
    if timed != text:  # "Up 9 seconds" then "Up 10 seconds": a table's columns may widen between two runs
        timed = _PADDING.sub("  ", timed)
    text = _STATS.sub(r'\1"<reading>"', timed)
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


@pytest.mark.parametrize("template", [
    "{{range .NetworkSettings.Networks}}{{.IPAddress}}|{{.NetworkID}}{{end}}",
    "{{range $k, $v := .Config.Labels}}{{$k}}={{$v}} {{end}}",
    "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}",
    "{{range .Mounts}}{{.Type}} {{.Name}} {{.Destination}} {{.RW}}{{end}}",
    "{{range $i, $e := .Config.Env}}{{$i}}:{{$e}},{{end}}", "{{range .Config.Env}}{{println .}}{{end}}",
    "{{range .Config.Cmd}}[{{.}}]{{else}}none{{end}}", "{{range .Config.Entrypoint}}{{.}}{{else}}no entrypoint{{end}}",
    "{{with .State}}{{.Status}} {{.ExitCode}} {{.Running}}{{end}}",
    "{{if .State.Running}}running {{.State.Pid | printf \"%.0d\"}}{{else}}stopped {{.State.ExitCode}}{{end}}",
    "{{if eq .State.Status \"running\"}}up{{else if eq .State.Status \"created\"}}new{{else}}{{.State.Status}}{{end}}",
    "{{with .Config}}{{with .Labels}}{{index . \"com.example\"}}{{else}}nolabels{{end}}{{end}}",
    "{{with .Config.Labels.nope}}x{{else with .Config.Hostname}}host {{len .}}{{end}}",
    "{{json .Mounts}}", "{{json .Config.Env}}", "{{json .State.Running}}", "{{json .HostConfig.PortBindings}}",
    "{{printf \"%s:%d\" .Name .RestartCount}}", "{{.Name | upper}} {{.Name | lower | len}}", "{{len .Mounts}}",
    "{{printf \"%-20s|%5d|%05d|%q|%t|%x|%v|%10.3s|\" .Name .RestartCount 42 .Driver .State.Running 255 .Args .Path}}",
    "{{printf \"%d %s\" .Name}} {{printf \"%s\" .Name 3}} {{printf \"%z\" 1}}",
    "{{pad .Name 2 3}}|{{truncate .Name 5}}|{{split .Config.Image \"b\"}}|{{title \"hello wide world\"}}|{{join .Args \", \"}}",
    "{{$n := .Name}}{{$n}} {{$n = \"other\"}}{{$n}} {{$.Id | printf \"%.12s\"}}",
    "{{- /* a comment */ -}}\n  {{.Name -}}  \n {{- .Driver}}",
    "{{and .State.Running .Name}} {{or .State.Running .Name}} {{not .State.Running}} {{and 1 0 2}} {{or 0 \"\" 3}}",
    "{{eq .RestartCount 0}} {{ne .Name \"x\"}} {{lt 1 2}} {{le 2 2}} {{gt 1.5 2.5}} {{ge \"b\" \"a\"}} {{eq 1 2 3 1}}",
    "{{index .Config.Env 0}} {{index .Config.Labels \"h\"}} {{index .HostConfig.PortBindings \"80/tcp\" 0 \"HostPort\"}}",
    "{{slice .Id 0 12}} {{slice .Config.Env 1}} {{print 1 2 \"a\" \"b\" 3 true}} {{println 1 \"a\"}}",
    "{{(index .Mounts 0).Name}} {{(index .Mounts 0).Destination | upper}}",
    "{{range $i, $e := .Config.Env}}{{if $i}},{{end}}{{$e}}{{end}}",
    "{{range .Args}}{{if eq . \"-c\"}}{{continue}}{{end}}{{.}}{{break}}{{end}}", "{{range 3}}{{.}}{{end}}",
    "{{if and .Config.Labels (index .Config.Labels \"com.example\")}}yes{{end}} {{.Config.Labels.nope}}",
    "{{true}} {{false}} {{1.5}} {{0x10}} {{-3}} {{'a'}} {{\"\\tq\"}} {{`raw`}} {{nil | print}}",
])
@pytest.mark.parametrize("name", ["cais-cf-one", "cais-cf-up"])
def test_control_flow(d: Caisd, template: str, name: str) -> None:
    """text/template's actions, variables, functions and docker's own on inspect's objects."""
    _same(d, "inspect", "--format", template, name)


@pytest.mark.parametrize("args", [
    ["ps", "-a", "--format", "{{if .Ports}}{{.Ports}}{{else}}-{{end}}"],
    ["ps", "-a", "--format", "table {{.Names}}\t{{.Status | printf \"%.10s\"}}\t{{.Labels | truncate 8}}"],
    ["ps", "-a", "--format", "table {{.Names | upper}}\t{{if .Ports}}{{.Ports}}{{else}}-{{end}}\t{{json .State}}"],
    ["ps", "-a", "--format", "{{range split .Labels \",\"}}<{{.}}>{{end}} {{len .Names}} {{pad .Mounts 1 1}}"],
    ["ps", "-a", "--format", "{{$n := .Names}}{{with .Label \"com.example\"}}{{$n}}={{.}}{{else}}{{$n}}{{end}}"],
    ["ps", "-a", "--format", "{{title .State}} {{printf \"%-12s|\" .Names}}"],
    ["volume", "ls", "--format", "table {{.Name}}\t{{if .Labels}}{{.Labels | len}}{{end}}"],
    ["images", "--format", "{{if eq .Tag \"v1\"}}{{.Repository}}:{{.Tag}}{{end}}"],
])
def test_control_flow_lists(d: Caisd, args: list[str]) -> None:
    _same(d, *args, unordered=args[0] == "images")  # an image's repositories: Go's map order


@pytest.mark.parametrize("template", [
    "{{.Name", "{{if .Name}}x", "{{end}}", "{{else}}", "{{nope .Name}}", "{{.Name | nope}}", "{{$x}}",
    "{{if}}{{end}}", "{{range}}{{end}}", "{{}}", "{{.Name \"unterminated}}", "{{/* unclosed }}",
    "{{break}}", "{{range .Mounts}}{{else}}{{else}}{{end}}", "{{(.Name}}", "{{.Name)}}", "{{.Name | 3}}",
    "{{index .Config.Env 99}}", "{{index .Config.Env \"x\"}}", "{{eq .Name 1}}", "{{lt true false}}",
    "{{upper .RestartCount}}", "{{len .RestartCount}}", "{{.Config.Nope.Deeper}}", "{{.Name.Nope}}",
    "{{range .Name}}{{end}}", "{{printf}}", "{{not 1 2}}", "{{eq}}", "{{slice .Name 3 1}}", "{{\"a\" | .Name}}",
    "x\n{{if .Name}}\n{{.Nope}}{{end}}", "{{.Config.Labels.h.x}}", "{{range $a, $b, $c := .Mounts}}{{end}}",
    "{{#}}", "{{.Name}}{{end}}{{if 1}}",
])
def test_template_errors(d: Caisd, template: str) -> None:
    """Go's parse and execution errors, word for word, line and column."""
    _same(d, "inspect", "--format", template, "cais-cf-one")


@pytest.mark.parametrize("args", [
    ["ps", "--format", "{{if .Names}}"], ["ps", "--format", "{{nope}}"], ["ps", "-a", "--format", "{{index .Names 99}}"],
    ["ps", "-a", "--format", "table {{range .Names}}{{end}}"], ["volume", "ls", "--format", "{{upper 1}}"],
])
def test_template_errors_lists(d: Caisd, args: list[str]) -> None:
    _same(d, *args)


@pytest.mark.parametrize("template", [
    "{{printf \"%5.2f|%e|%g|%v|%d|%.3g|%8.3e\" 3.14159 1234.5 0.000012 1e21 -5 2.0 100.25}}",
    "{{printf \"%+d|% d|%#x|%X|%o|%b|%c|%-5d|%x|%6.2v|\" 5 5 255 255 8 5 65 3 \"hé\" 3.14159}}",
    "{{.Name | printf \"%s\" 5}} {{printf \"%d\" true}} {{printf \"%t\" 1}} {{printf \"%s\" nil}} {{printf \"%!\"}}",
    "{{printf \"%q|%v|%s|%d\" .Config.Env .Config.Labels .Args .Config.Env}}", "{{printf \"%%|%5%|%\" 1}}",
    "{{.Config.Labels}} {{.Config.Env}} {{.Config.Env | len}} {{.Config.Labels | len}}",
    "{{println}}|{{print}}|{{print nil}}|{{print 1 nil \"a\"}}|{{println nil 2}}",
    "{{.Name | len | printf \"%03d\"}} {{ .Name}} {{- \"x\"}}{{-3}} {{+4}} {{1e3}} {{0.5}} {{1_000}} {{0o17}} {{0b11}}",
    "{{index .Name 2}} {{slice .Name 1 4}} {{slice .Name 4}} {{slice .Name}} {{json (slice .Config.Env 0 1)}}",
    "{{eq .Name \"/cais-cf-one\" \"/cais-cf-up\"}} {{eq .State.Pid .State.ExitCode}} {{ne 1.5 2.5}} {{lt \"a\" \"b\"}}",
    "{{title .State.Status}} {{upper .Config.Image}} {{split .Config.Image \"\"}} {{split \"\" \",\"}} {{join (split .Path \"\") \"-\"}}",
    "{{truncate .Name 100}}|{{truncate .Name 0}}|{{pad \"\" 2 2}}|{{pad .Driver 0 0}}|{{json .Config.Labels}}",
    "{{with $x := .Name}}{{$x}}{{end}} {{range $i := .Config.Env}}{{$i}}{{end}} {{$y := 1}}{{range $y = .Args}}{{end}}{{$y}}",
    "{{range .Config.Env}}{{$.Name}}{{.}}{{end}} {{with .Config}}{{with .Labels}}{{$.Id | len}}{{end}}{{end}}",
    "{{- range $k, $v := .Config.Labels -}}\n{{ $k }}: {{ $v }}\n{{ end -}}",
])
@pytest.mark.parametrize("name", ["cais-cf-one", "cais-cf-up"])
def test_printf_and_more(d: Caisd, template: str, name: str) -> None:
    _same(d, "inspect", "--format", template, name)


@pytest.mark.parametrize("template", [
    "{{join .Args 3}}", "{{join \"a\" \",\"}}", "{{index .Config.Labels 3}}", "{{range $i, $c := \"abc\"}}{{end}}",
    "{{eq .Mounts .Mounts}}", "{{eq .State.Running 1}}", "{{lt .Args .Args}}", "{{len nil}}", "{{index nil 1}}",
    "{{with $x := .Name}}{{$x}}{{end}}{{$x}}", "{{index .Name 20}}", "{{pad .Name \"a\" 1}}", "{{truncate .Name 1.5}}",
    "{{split .Name}}", "{{and}}", "{{.Name 1}}", "{{$.Nope}}", "{{$x := .Nope}}", "{{(.Name).Nope}}",
    "{{printf 3}}", "{{ .Name | printf \"%s\" | upper | nope }}", "{{index .Config.Env -1}}", "{{.Name|len|index .Args}}",
    "{{if .Name}}{{else if}}{{end}}", "{{range .Mounts}}{{end}", "{{.Name}}\n\n{{.Config.Env.x}}", "{{é}}",
])
def test_more_errors(d: Caisd, template: str) -> None:
    _same(d, "inspect", "--format", template, "cais-cf-one")


@pytest.mark.parametrize("args", [
    ["inspect", "--format", "{{ /* not a comment */ }}", "cais-cf-one"],
    ["inspect", "--format", "a {{- /* c */ -}} b {{/* c */}}c{{- /* c */}} d", "cais-cf-one"],
    ["images", "--format", "table {{.Repository | truncate 5}}\t{{.Size | printf \"%8s\"}}\t{{if eq .Tag \"v1\"}}v1{{end}}"],
    ["volume", "ls", "--format", "{{.Name}}{{with .Label \"a\"}} a={{.}}{{end}}"],
    ["network", "ls", "--format", "table {{.Name | title}}\t{{if eq .Driver \"null\"}}none{{else}}{{.Driver}}{{end}}"],
    ["ps", "-a", "--format", "{{.Names}}{{if eq .State \"running\"}} is up{{else}} is {{.State}}{{end}}"],
    ["version", "--format", "{{with .Client}}{{.Os}}/{{.Arch}}{{end}} {{if .Server}}server{{end}}"],
])
def test_control_flow_others(d: Caisd, args: list[str]) -> None:
    _same(d, *args, unordered=args[0] == "images")  # an image's repositories: Go's map order
