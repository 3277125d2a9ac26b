"""Registry credentials in a docker-compatible config.json (`auths`, `credsStore`, `credHelpers`).

The file is the one docker uses ($DOCKER_CONFIG/config.json, else ~/.docker/config.json), so
`cais login` and `docker login` see each other's logins. Secrets held by a credential helper are
read and written by running `docker-credential-NAME get|store|erase`, the helper protocol.
Keys other than the ones touched here are preserved; writes are atomic and mode 0600.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
import tempfile
from dataclasses import dataclass

# Docker Hub's credentials are stored under this legacy key.
HUB_KEY = "https://index.docker.io/v1/"
_HUB_NAMES = ("docker.io", "index.docker.io", "registry-1.docker.io")


class CredentialsError(Exception):
    """config.json or a credential helper failed."""


@dataclass(frozen=True)
class Credentials:
    username: str
    secret: str  # a password, or an identity (refresh) token when username == "<token>"

    @property
    def identity_token(self) -> str | None:
        return self.secret if self.username == "<token>" else None


def default_path() -> str:
    directory = os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    return os.path.join(directory, "config.json")


def server_key(registry: str) -> str:
    """The config.json key for a registry domain."""
    return HUB_KEY if registry in _HUB_NAMES else registry


class CredentialStore:
    """Read and change the logins kept in one config.json."""

    def __init__(self, path: str | None = None) -> None:
        self.path = path or default_path()

    def get(self, registry: str) -> Credentials | None:
        config = self._load()
        key = server_key(registry)
        helper = config.get("credHelpers", {}).get(registry) or config.get("credsStore")
        if helper:
            return self._helper_get(helper, key)
        for name, entry in config.get("auths", {}).items():
            if _normalize(name) == _normalize(key) and isinstance(entry, dict):
                return _decode_entry(entry, name)
        return None

    def store(self, registry: str, creds: Credentials) -> None:
        config = self._load()
        key = server_key(registry)
        helper = config.get("credHelpers", {}).get(registry) or config.get("credsStore")
        auths = config.setdefault("auths", {})
        if helper:
            payload = {"ServerURL": key, "Username": creds.username, "Secret": creds.secret}
            _run_helper(helper, "store", json.dumps(payload))
            auths[key] = {}  # docker records the login without the secret
        elif creds.identity_token:
            auths[key] = {"identitytoken": creds.secret}
        else:
            auths[key] = {"auth": base64.b64encode(f"{creds.username}:{creds.secret}".encode()).decode()}
        self._save(config)

    def erase(self, registry: str) -> bool:
        """Forget a login; False when there was none."""
        config = self._load()
        key = server_key(registry)
        helper = config.get("credHelpers", {}).get(registry) or config.get("credsStore")
        found = False
        if helper:
            with contextlib.suppress(CredentialsError):
                _run_helper(helper, "erase", key)
                found = True
        for name in list(config.get("auths", {})):
            if _normalize(name) == _normalize(key):
                del config["auths"][name]
                found = True
        if found:
            self._save(config)
        return found

    def _load(self) -> dict:
        try:
            with open(self.path) as f:
                config = json.load(f)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            raise CredentialsError(f"cannot read {self.path}: {e}") from None
        if not isinstance(config, dict):
            raise CredentialsError(f"cannot read {self.path}: not a JSON object")
        return config

    def _save(self, config: dict) -> None:
        directory = os.path.dirname(self.path) or "."
        os.makedirs(directory, mode=0o700, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".config.json.", dir=directory)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(config, f, indent="\t")
                f.write("\n")
            os.chmod(tmp, 0o600)
            os.rename(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    @staticmethod
    def _helper_get(helper: str, key: str) -> Credentials | None:
        try:
            out = _run_helper(helper, "get", key)
        except CredentialsError as e:
            if "credentials not found" in str(e).lower():
                return None
            raise
        try:
            data = json.loads(out)
            return Credentials(str(data["Username"]), str(data["Secret"]))
        except (ValueError, KeyError, TypeError):
            raise CredentialsError(f"docker-credential-{helper} returned malformed credentials") from None


def _decode_entry(entry: dict, name: str) -> Credentials | None:
    if entry.get("identitytoken"):
        return Credentials("<token>", str(entry["identitytoken"]))
    if entry.get("auth"):
        try:
            user, sep, password = base64.b64decode(entry["auth"]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            sep = ""
        if not sep:
            raise CredentialsError(f"malformed auth entry for {name} in config.json")
        return Credentials(user, password)
    if entry.get("username"):
        return Credentials(str(entry["username"]), str(entry.get("password", "")))
    return None


def _normalize(key: str) -> str:
    """'https://host:5000/v2/' -> 'host:5000'; the Hub's legacy URL stays as is."""
    if key == HUB_KEY:
        return key
    host = key.partition("://")[2] if "://" in key else key
    return host.partition("/")[0]


def _run_helper(helper: str, action: str, data: str) -> str:
    program = f"docker-credential-{helper}"
    try:
        proc = subprocess.run([program, action], input=data.encode(), capture_output=True, timeout=60)
    except FileNotFoundError:
        raise CredentialsError(f"credential helper {program} is not installed") from None
    except subprocess.TimeoutExpired:
        raise CredentialsError(f"credential helper {program} timed out") from None
    if proc.returncode != 0:
        message = (proc.stdout or proc.stderr).decode(errors="replace").strip().splitlines()
        raise CredentialsError(f"{program} {action}: {message[0] if message else 'failed'}")
    return proc.stdout.decode()
