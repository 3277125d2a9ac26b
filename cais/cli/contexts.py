"""The docker CLI's formatter contexts: what `--format` sees of a listed container, image, volume…

The docker CLI renders its lists through a context per item (ContainerContext, imageContext,
volumeContext, networkContext, historyContext, statsContext, the `system df` ones), whose
methods are the template's fields (`{{.Size}}`) and whose `{{json .}}` — `--format json` — is a
map of those fields, all strings but for ps' Platform. Here a context is a format.Context: the
fields with their values as the docker CLI computes them from the same API answer, and the
labels behind `{{.Label "key"}}`.
"""

from __future__ import annotations

import time

from cais.cli.format import Context
from cais.engine import humanize


def go_time(seconds: float) -> str:
    """Go's time.Unix(s, 0).String(): `2006-01-02 15:04:05 -0700 MST` in the local zone."""
    return time.strftime("%Y-%m-%d %H:%M:%S %z %Z", time.localtime(seconds))


def go_rfc3339_time(text: str) -> str:
    """An API timestamp (RFC 3339, UTC) as Go's Time.String() prints it: fraction without its
    trailing zeros, `+0000 UTC`."""
    if not text.endswith("Z") or "T" not in text:
        return text
    day, _, clock = text[:-1].partition("T")
    whole, _, fraction = clock.partition(".")
    fraction = fraction.rstrip("0")
    return f"{day} {whole}{'.' + fraction if fraction else ''} +0000 UTC"


def ago(seconds: float) -> str:
    return humanize.duration(time.time() - seconds) + " ago"


def truncate_id(identifier: str) -> str:
    """stringid.TruncateID: the algorithm prefix dropped, 12 characters kept."""
    return identifier.partition(":")[2][:12] if ":" in identifier else identifier[:12]


def _width(c: str) -> int:
    if c < "\u1100":
        return 1
    import unicodedata
    return 2 if unicodedata.east_asian_width(c) in ("W", "F") else 1


def ellipsis(s: str, width: int) -> str:
    """formatter.Ellipsis: at most WIDTH columns (wide characters count two), `…` at the cut."""
    if s.isascii():
        return s if len(s) <= width else s[:width - 1] + "…"
    total, ends = 0, []
    for c in s:
        total += _width(c)
        ends.append(total)
    if total <= width:
        return s
    keep = next((i + 1 for i in range(len(ends) - 1) if ends[i] <= width - 1 < ends[i + 1]), len(s))
    return s[:keep] + "…"


_GO_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v",
               '"': '\\"', "\\": "\\\\"}


def go_quote(s: str) -> str:
    """strconv.Quote: printable characters kept (non-ASCII too), the others escaped."""
    out = []
    for c in s:
        if c in _GO_ESCAPES:
            out.append(_GO_ESCAPES[c])
        elif c.isprintable() or c == " ":
            out.append(c)
        elif c < "\x80":
            out.append(f"\\x{ord(c):02x}")
        else:
            out.append(f"\\u{ord(c):04x}" if ord(c) < 0x10000 else f"\\U{ord(c):08x}")
    return '"' + "".join(out) + '"'


def _join_labels(labels: dict | None, ordered: bool) -> str:
    """`k=v,…`: sorted for containers; volumes and networks join Go's map order (any), kept as sent."""
    pairs = [f"{k}={v}" for k, v in (labels or {}).items()]
    return ",".join(sorted(pairs) if ordered else pairs)


# ---- containers (ps, system df -v) -------------------------------------------------------------
def _host_port(ip: str, port: object) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def ports(summary: list[dict] | None) -> str:
    """formatter.DisplayablePorts: `0.0.0.0:80->80/tcp, 9000-9001/udp`, consecutive ports grouped."""
    items = sorted(summary or [], key=lambda p: (p.get("PrivatePort", 0), p.get("IP", ""), p.get("PublicPort", 0),
                                                  p.get("Type", "")))
    groups: dict[str, list[int]] = {}
    result, mappings = [], []
    for p in items:
        current, key, ip = p.get("PrivatePort", 0), p.get("Type", ""), p.get("IP", "")
        if ip:
            if p.get("PublicPort", 0) != current:
                mappings.append(f"{_host_port(ip, p.get('PublicPort', 0))}->{current}/{p.get('Type', '')}")
                continue
            key = f"{ip}/{key}"
        group = groups.get(key)
        if group is None:
            groups[key] = [current, current]
        elif current == group[1] + 1:
            group[1] = current
        else:
            result.append(_port_group(key, *group))
            groups[key] = [current, current]
    result += [_port_group(key, *group) for key, group in groups.items()]
    return ", ".join(result + mappings)


def _port_group(key: str, first: int, last: int) -> str:
    parts = key.split("/")
    ip, kind = (parts[0], parts[1]) if len(parts) > 1 else ("", parts[0])
    group = str(first) if first == last else f"{first}-{last}"
    return f"{_host_port(ip, group)}->{group}/{kind}" if ip else f"{group}/{kind}"


def _image_name(image: str, image_id: str) -> str:
    """ContainerContext.Image when truncating: the short ID for an ID, the name without its digest."""
    if not image:
        return "<no image>"
    if truncate_id(image_id) == truncate_id(image):
        return truncate_id(image)
    name, at, _ = image.partition("@")
    return name if at else image


def container(c: dict, trunc: bool, virtual: bool = True) -> Context:
    names = [n.lstrip("/") if n.startswith("/") else n for n in c.get("Names") or []]
    if trunc:
        names = [next((n for n in names if "/" not in n), "")] if names else []
    size = humanize.size(c.get("SizeRw") or 0)
    if virtual and (c.get("SizeRootFs") or 0) > 0:
        size += f" (virtual {humanize.size(c['SizeRootFs'])})"
    mounts = [m.get("Name") or m.get("Source", "") for m in c.get("Mounts") or []]
    return Context({
        "Command": go_quote(ellipsis(c.get("Command", ""), 20) if trunc else c.get("Command", "")),
        "CreatedAt": go_time(c["Created"]),
        "ID": truncate_id(c["Id"]) if trunc else c["Id"],
        "Image": _image_name(c.get("Image", ""), c.get("ImageID", "")) if trunc else c.get("Image") or "<no image>",
        "Labels": _join_labels(c.get("Labels"), ordered=True),
        "LocalVolumes": str(sum(1 for m in c.get("Mounts") or [] if m.get("Driver") == "local")),
        "Mounts": ",".join(ellipsis(m, 15) if trunc else m for m in mounts),
        "Names": ",".join(names),
        "Networks": ",".join((c.get("NetworkSettings") or {}).get("Networks") or {}),
        "Platform": None,  # the image's platform from ImageManifestDescriptor: API 1.48, not sent here
        "Ports": ports(c.get("Ports")),
        "RunningFor": ago(c["Created"]),
        "Size": size,
        "State": c.get("State", ""),
        "Status": c.get("Status", ""),
    }, c.get("Labels"), "*formatter.ContainerContext")


def check_container_template(template: str) -> None:
    """`ps --format`: the docker CLI executes the template on an empty ContainerContext before
    listing; a field it does not have fails then, with or without containers."""
    from cais.cli import format as fmt
    empty = container({"Id": "", "Created": 0}, True)
    try:
        fmt.check(template)
    except fmt.FormatError as e:
        raise fmt.FormatError(str(e).replace("template parsing error: ", "failed to parse template: ")) from None
    try:
        fmt.render(template, fmt.Context(dict.fromkeys(empty, ""), None, empty.go_type),
                   "failed to execute template: ", escapes=False)
    except fmt.FormatError:
        raise
    except Exception:  # what an empty context cannot give (an index of ""): the real ones will tell
        return


# ---- images (images, system df -v) -------------------------------------------------------------
def familiar(name: str) -> str:
    for prefix in ("docker.io/library/", "docker.io/"):
        if name.startswith(prefix) and "/" in name:
            return name[len(prefix):]
    return name


def _dangling(image: dict) -> bool:
    tags, digests = image.get("RepoTags") or [], image.get("RepoDigests") or []
    return (not tags and not digests) or (tags == ["<none>:<none>"] and digests == ["<none>@<none>"])


def image(i: dict, repo: str, tag: str, digest: str, trunc: bool) -> Context:
    size, shared = i.get("Size", 0), i.get("SharedSize", -1)
    containers = i.get("Containers", -1)
    return Context({
        "Containers": "N/A" if containers == -1 else str(containers),
        "CreatedAt": go_time(i["Created"]),
        "CreatedSince": ago(i["Created"]),
        "Digest": digest,
        "ID": truncate_id(i["Id"]) if trunc else i["Id"],
        "Repository": repo,
        "SharedSize": "N/A" if shared == -1 else humanize.size(shared, 4),
        "Size": humanize.size(size),
        "Tag": tag,
        "UniqueSize": "N/A" if size == -1 or shared == -1 else humanize.size(size - shared, 4),
        "VirtualSize": humanize.size(size, 4),
    }, go_type="*formatter.imageContext")


def images(summaries: list[dict], trunc: bool, digests: bool, need_digest: bool) -> list[Context]:
    """formatter.imageFormat: a row per repository and tag (per digest with --digests), a
    `<none>` row for a dangling image; digest-only repositories get their own rows."""
    out = []
    for i in summaries:
        if _dangling(i):
            out.append(image(i, "<none>", "<none>", "<none>", trunc))
            continue
        tags: dict[str, list[str]] = {}
        by_repo: dict[str, list[str]] = {}
        for ref in i.get("RepoTags") or []:
            name, _, tag = ref.rpartition(":")
            if name and "/" not in tag:
                tags.setdefault(familiar(name), []).append(tag)
        for ref in i.get("RepoDigests") or []:
            name, at, digest = ref.partition("@")
            if at:
                by_repo.setdefault(familiar(name), []).append(digest)
        for repo, repo_tags in tags.items():
            repo_digests = by_repo.pop(repo, [])  # never rows of their own
            if not need_digest:
                repo_digests = []
            for tag in repo_tags:
                out += [image(i, repo, tag, d, trunc) for d in repo_digests] or [image(i, repo, tag, "<none>", trunc)]
        for repo, repo_digests in by_repo.items():
            out += ([image(i, repo, "<none>", d, trunc) for d in repo_digests] if digests
                    else [image(i, repo, "<none>", "", trunc)])
    return out


# ---- volumes, networks -------------------------------------------------------------------------
def volume(v: dict) -> Context:
    usage = v.get("UsageData")
    cluster = v.get("ClusterVolume")
    return Context({
        "Availability": "N/A" if cluster is None else (cluster.get("Spec") or {}).get("Availability", ""),
        "Driver": v.get("Driver", ""),
        "Group": "N/A" if cluster is None else (cluster.get("Spec") or {}).get("Group", ""),
        "Labels": _join_labels(v.get("Labels"), ordered=False),
        "Links": "N/A" if usage is None else str(usage.get("RefCount", 0)),
        "Mountpoint": v.get("Mountpoint", ""),
        "Name": v.get("Name", ""),
        "Scope": v.get("Scope", ""),
        "Size": "N/A" if usage is None else humanize.size(usage.get("Size", 0), 4),
        "Status": "N/A" if cluster is None else "created",
    }, v.get("Labels"), "*formatter.volumeContext")


def network(n: dict, trunc: bool) -> Context:
    return Context({
        "CreatedAt": go_rfc3339_time(n.get("Created", "")),
        "Driver": n.get("Driver", ""),
        "ID": truncate_id(n["Id"]) if trunc else n["Id"],
        "IPv4": "true" if n.get("EnableIPv4", True) else "false",
        "IPv6": "true" if n.get("EnableIPv6") else "false",
        "Internal": "true" if n.get("Internal") else "false",
        "Labels": _join_labels(n.get("Labels"), ordered=False),
        "Name": n.get("Name", ""),
        "Scope": n.get("Scope", ""),
    }, n.get("Labels"), "*network.networkContext")


# ---- history, stats ----------------------------------------------------------------------------
def history(e: dict, trunc: bool, human: bool) -> Context:
    created_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(e["Created"]))
    created_by = e.get("CreatedBy", "").replace("\t", " ")
    return Context({
        "Comment": e.get("Comment", ""),
        "CreatedAt": created_at,
        "CreatedBy": ellipsis(created_by, 45) if trunc else created_by,
        "CreatedSince": ago(e["Created"]) if human else created_at,
        "ID": truncate_id(e["Id"]) if trunc and e["Id"] != "<missing>" else e["Id"],
        "Size": humanize.size(e.get("Size", 0)) if human else str(e.get("Size", 0)),
    }, go_type="*image.historyContext")


def stats(s: dict, container_arg: str, trunc: bool) -> Context:
    cpu, pre = s.get("cpu_stats") or {}, s.get("precpu_stats") or {}
    cpu_delta = (cpu.get("cpu_usage") or {}).get("total_usage", 0) - (pre.get("cpu_usage") or {}).get("total_usage", 0)
    sys_delta = cpu.get("system_cpu_usage", 0) - pre.get("system_cpu_usage", 0)
    percent = cpu_delta / sys_delta * (cpu.get("online_cpus") or 1) * 100 if sys_delta > 0 and cpu_delta > 0 else 0.0
    mem = s.get("memory_stats") or {}
    usage = mem.get("usage", 0) - (mem.get("stats") or {}).get("total_inactive_file",
                                                                 (mem.get("stats") or {}).get("inactive_file", 0))
    limit = mem.get("limit", 0)
    blk = (s.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []
    read = sum(e["value"] for e in blk if e["op"].lower() == "read")
    write = sum(e["value"] for e in blk if e["op"].lower() == "write")
    nets = (s.get("networks") or {}).values()
    rx, tx = sum(n.get("rx_bytes", 0) for n in nets), sum(n.get("tx_bytes", 0) for n in nets)
    name = s.get("name", "")
    return Context({
        "BlockIO": f"{humanize.size(read)} / {humanize.size(write)}",
        "CPUPerc": f"{percent:.2f}%",
        "Container": container_arg,
        "ID": truncate_id(s["id"]) if trunc else s["id"],
        "MemPerc": f"{(usage / limit * 100) if limit else 0:.2f}%",
        "MemUsage": f"{humanize.bytes_size(max(usage, 0))} / {humanize.bytes_size(limit)}",
        "Name": name[1:] if len(name) > 1 else "--",
        "NetIO": f"{humanize.size(rx)} / {humanize.size(tx)}",
        "PIDs": str((s.get("pids_stats") or {}).get("current", 0)),
    }, go_type="*container.statsContext")
