"""Image references, parsed and normalized exactly as docker's distribution/reference does.

Grammar (distribution/reference v0.6, regexp.go)::

    reference     := name [ ":" tag ] [ "@" digest ]
    name          := [domain '/'] remote-name
    domain        := host [ ":" port-number ]
    host          := domain-name | "[" ipv6address "]"
    remote-name   := path-component [ '/' path-component ]*
    path-component:= [a-z0-9]+ ( (  [._] | __ | [-]+ ) [a-z0-9]+ )*
    tag           := [\\w][\\w.-]{0,127}
    digest        := algorithm ":" hex{32,}

`parse_strict` is docker's `Parse` (no normalization), `parse_normalized` is
`ParseNormalizedNamed` (``busybox`` → ``docker.io/library/busybox``), and `parse` is what the
docker CLI does with a user's image argument: normalize, then add the ``latest`` tag when neither
a tag nor a digest was given (``TagNameOnly``). Errors carry docker's messages word for word.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_REPO_PREFIX = "library/"
DEFAULT_TAG = "latest"
NAME_TOTAL_LENGTH_MAX = 255

_ALPHANUMERIC = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALPHANUMERIC}(?:{_SEPARATOR}{_ALPHANUMERIC})*"
_DOMAIN_NAME_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_NAME = rf"{_DOMAIN_NAME_COMPONENT}(?:\.{_DOMAIN_NAME_COMPONENT})*"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_DOMAIN_AND_PORT = rf"(?:{_DOMAIN_NAME}|{_IPV6})(?::[0-9]+)?"
_REMOTE_NAME = rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_NAME = rf"(?:{_DOMAIN_AND_PORT}/)?{_REMOTE_NAME}"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"

_REFERENCE_RE = re.compile(rf"^({_NAME})(?::({_TAG}))?(?:@({_DIGEST}))?$", re.ASCII)
_ANCHORED_NAME_RE = re.compile(rf"^(?:({_DOMAIN_AND_PORT})/)?({_REMOTE_NAME})$", re.ASCII)
_ANCHORED_TAG_RE = re.compile(rf"^{_TAG}$", re.ASCII)
_ANCHORED_IDENTIFIER_RE = re.compile(r"^[a-f0-9]{64}$")
_SHORT_IDENTIFIER_RE = re.compile(r"^[a-f0-9]{6,64}$")

# go-digest: algorithms docker accepts, and the hex length each one must have.
_DIGEST_ALGORITHMS = {"sha256": 64, "sha384": 96, "sha512": 128}
_DIGEST_ANCHORED_RE = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$")


class ReferenceError(ValueError):
    """An image reference that docker would reject; str() is docker's message."""


@dataclass(frozen=True)
class Reference:
    """A parsed reference. `domain` is empty only for references from `parse_strict`."""

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """The repository, fully qualified: ``docker.io/library/busybox``."""
        return f"{self.domain}/{self.path}" if self.domain else self.path

    def __str__(self) -> str:
        return self.name + (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")

    def familiar_name(self) -> str:
        """The short name docker shows: ``busybox``, ``user/app``, ``ghcr.io/x/y``."""
        if self.domain != DEFAULT_DOMAIN:
            return self.name
        path = self.path
        if path.startswith(OFFICIAL_REPO_PREFIX) and "/" not in path[len(OFFICIAL_REPO_PREFIX):]:
            path = path[len(OFFICIAL_REPO_PREFIX):]
        return path

    def familiar(self) -> str:
        """The reference as docker prints it (``busybox:latest``); docker's `FamiliarString`."""
        return self.familiar_name() + (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")

    def with_tag(self, tag: str) -> Reference:
        if not _ANCHORED_TAG_RE.match(tag):
            raise ReferenceError("invalid tag format")
        return replace(self, tag=tag)

    def with_digest(self, digest: str) -> Reference:
        validate_digest(digest)
        return replace(self, digest=digest)

    def repository(self) -> Reference:
        """The name alone, without tag or digest."""
        return Reference(self.domain, self.path)

    @property
    def is_name_only(self) -> bool:
        return self.tag is None and self.digest is None


def validate_digest(digest: str) -> None:
    """go-digest's `Digest.Validate`, with its messages."""
    algorithm, sep, encoded = digest.partition(":")
    if not algorithm or not sep or not encoded:
        raise ReferenceError("invalid checksum digest format")
    if algorithm not in _DIGEST_ALGORITHMS:
        if not _DIGEST_ANCHORED_RE.match(digest):
            raise ReferenceError("invalid checksum digest format")
        raise ReferenceError("unsupported digest algorithm")
    if len(encoded) != _DIGEST_ALGORITHMS[algorithm]:
        raise ReferenceError("invalid checksum digest length")
    if not re.fullmatch(r"[a-f0-9]+", encoded):
        raise ReferenceError("invalid checksum digest format")


def parse_strict(s: str) -> Reference:
    """docker's `reference.Parse`: the grammar only, no default domain or tag."""
    m = _REFERENCE_RE.match(s)
    if m is None:
        if s == "":
            raise ReferenceError("repository name must have at least one component")
        if _REFERENCE_RE.match(s.lower()):
            raise ReferenceError("repository name must be lowercase")
        raise ReferenceError("invalid reference format")
    name, tag, digest = m.groups()
    nm = _ANCHORED_NAME_RE.match(name)
    domain, path = (nm.group(1) or "", nm.group(2)) if nm else ("", name)
    if len(path) > NAME_TOTAL_LENGTH_MAX:
        raise ReferenceError(f"repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters")
    if digest is not None:
        validate_digest(digest)
    return Reference(domain, path, tag, digest)


def split_docker_domain(name: str) -> tuple[str, str]:
    """docker's `splitDockerDomain`: is the first component a registry host, or a Hub namespace?"""
    first, slash, rest = name.partition("/")
    if not slash:
        return DEFAULT_DOMAIN, OFFICIAL_REPO_PREFIX + name
    if first == "localhost" or "." in first or ":" in first or first.lower() != first:
        domain, remote = first, rest
    else:
        domain, remote = DEFAULT_DOMAIN, name
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in remote:
        remote = OFFICIAL_REPO_PREFIX + remote
    return domain, remote


def parse_normalized(s: str) -> Reference:
    """docker's `ParseNormalizedNamed`: ``busybox`` → ``docker.io/library/busybox`` (no default tag)."""
    if _ANCHORED_IDENTIFIER_RE.match(s):
        raise ReferenceError(f"invalid repository name ({s}), cannot specify 64-byte hexadecimal strings")
    domain, remainder = split_docker_domain(s)
    remote = remainder.split(":", 1)[0]
    if remote.lower() != remote:
        raise ReferenceError(f"invalid reference format: repository name ({remote}) must be lowercase")
    # As in docker, a first component that looks like a host but is not one (``a_b.c/d``) ends up
    # part of the path, with an empty domain.
    return parse_strict(f"{domain}/{remainder}")


def parse(s: str) -> Reference:
    """A user's image argument as the docker CLI reads it: normalized, ``:latest`` if untagged."""
    ref = parse_normalized(s)
    return replace(ref, tag=DEFAULT_TAG) if ref.is_name_only else ref


def parse_docker_ref(s: str) -> Reference:
    """docker's `ParseDockerRef` (pull): like `parse`, but a digest wins over a tag given with it."""
    ref = parse(s)
    return replace(ref, tag=None) if ref.digest else ref


def is_image_id(s: str) -> bool:
    """Does `s` look like a (possibly short, possibly ``sha256:``-prefixed) image ID?"""
    if s.startswith("sha256:"):
        s = s[len("sha256:"):]
    return bool(_SHORT_IDENTIFIER_RE.match(s))
