"""The engine's images: cais.image's store, archives and commit, cais.registry's pull and push.

Every call translates the image layer's errors into the engine's (same HTTP statuses), and
long operations (pull, push, load, import) yield docker's JSON progress messages.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Iterator
from typing import BinaryIO

from cais.engine.errors import Conflict, EngineError, InvalidParameter, NotFound, Unsupported


def _translate(e: Exception) -> EngineError:
    status = getattr(e, "status", 500)
    cls = {400: InvalidParameter, 404: NotFound, 409: Conflict}.get(status, EngineError)
    return cls(str(e))


@contextlib.contextmanager
def _errors() -> Iterator[None]:
    from cais.image.store import ImageError
    try:
        yield
    except ImageError as e:
        raise _translate(e) from None
    except ValueError as e:  # references and configs
        raise InvalidParameter(str(e)) from None


class ImageService:
    def __init__(self, engine) -> None:  # type: ignore[no-untyped-def]
        from cais.image.store import ImageStore
        self.engine = engine
        self.store = ImageStore(os.path.join(engine.data_root, "image"), engine.storage.driver)
        self.store.running_containers = self._running  # not a write to the image store at each start and exit

    def _running(self) -> set[str]:
        with self.engine.store.lock:
            return {cid for cid, r in self.engine.store.records.items() if r["State"]["Running"]}

    # ---- lookups used by the engine -------------------------------------------------------
    def resolve(self, ref: str) -> dict:
        with _errors():
            image_id = self.store.resolve(ref)
            return {"Id": image_id, "Config": self.store.config(image_id).get("config") or {}}

    def try_id(self, ref: str) -> str:
        try:
            return self.store.resolve(ref)
        except Exception:
            return ref

    def config_of(self, image_id: str) -> dict:
        with _errors():
            return self.store.config(image_id).get("config") or {}

    def top_layer(self, image: dict) -> str | None:
        row = self.store.meta.image(image["Id"])
        if row is None:
            raise NotFound(f"No such image: {image['Id']}")
        return row.top_layer.partition(":")[2] if row.top_layer else None  # the driver's id: the chain id's hex

    def add_container(self, cid: str, image_id: str, *, durable: bool = True) -> None:
        with _errors():
            self.store.add_container(cid, image_id, durable=durable)

    def remove_container(self, cid: str, *, durable: bool = True) -> None:
        with contextlib.suppress(Exception):
            self.store.remove_container(cid, durable=durable)

    def count(self) -> int:
        return len(self.store.list())

    # ---- the API's operations --------------------------------------------------------------
    def list(self, *, all: bool = False, filters: dict | None = None) -> list[dict]:
        with _errors():
            images = self.store.list(all=all, filters=filters)
        counts: dict[str, int] = {}
        for record in self.engine.store.all():
            counts[record["Image"]] = counts.get(record["Image"], 0) + 1
        for image in images:
            image["Containers"] = counts.get(image["Id"], 0)
        return images

    def inspect(self, ref: str) -> dict:
        with _errors():
            return self.store.inspect(ref)

    def history(self, ref: str) -> list[dict]:
        with _errors():
            return self.store.history(ref)

    def tag(self, ref: str, repo: str, tag: str) -> None:
        with _errors():
            self.store.tag(ref, f"{repo}:{tag}" if tag else repo)
            self.engine.events.emit("image", "tag", self.store.resolve(ref), {"name": f"{repo}:{tag or 'latest'}"})

    def remove(self, ref: str, *, force: bool = False, prune: bool = True) -> list[dict]:
        with _errors():
            result = self.store.remove(ref, force=force, prune=prune)  # docker's conflict rules live there
        for entry in result:
            action, subject = next(iter(entry.items()))
            self.engine.events.emit("image", "untag" if action == "Untagged" else "delete", subject, {"name": subject})
        return result

    def prune(self, filters: dict | None = None) -> dict:
        with _errors():
            return self.store.prune(filters)

    def disk_usage(self) -> dict:
        with _errors():
            return self.store.disk_usage()

    def save(self, names: list[str]) -> Iterator[bytes]:
        from cais.engine.archive import pipe_writer
        from cais.image.archive import save
        with _errors():
            for name in names:
                self.store.resolve(name)
        return pipe_writer(lambda out: save(self.store, names, out))

    def load(self, stream: BinaryIO, *, quiet: bool = False) -> Iterator[dict]:
        from cais.image.archive import load
        with _errors():
            messages = load(self.store, stream)
        for message in messages:
            self.engine.events.emit("image", "load", message.rsplit(" ", 1)[-1], {})
            yield {"stream": message + "\n"}

    def import_(self, stream: BinaryIO, repo: str, tag: str, *, changes: list[str], message: str) -> Iterator[dict]:
        from cais.image.rootfs import import_rootfs
        reference = (f"{repo}:{tag}" if tag else repo) or None
        with _errors():
            image_id = import_rootfs(self.store, stream, reference, changes, message)
        self.engine.events.emit("image", "import", image_id, {"name": reference or image_id})
        yield {"status": image_id}

    def commit(self, container: str, *, repo: str, tag: str, comment: str, author: str, changes: list[str],
               pause: bool, config: dict) -> dict:
        from cais.image.commit import commit
        record = self.engine.get(container)
        reference = (f"{repo}:{tag}" if tag else repo) or None
        paused_here = False
        if pause and record["State"]["Running"] and not record["State"]["Paused"]:
            with contextlib.suppress(EngineError):
                self.engine.pause(record["Id"])
                paused_here = True
        try:
            with _errors():
                self.store.add_container(record["Id"], record["Image"])
                base = self.store.config(record["Image"]).get("config") or {}
                merged = {**base, **{k: v for k, v in (config or {}).items() if v not in (None, "", [], {})}}
                image_id = commit(self.store, record["Id"], reference, merged, changes, comment, author)
        finally:
            if paused_here:
                with contextlib.suppress(EngineError):
                    self.engine.unpause(record["Id"])
        self.engine._event(record, "commit")
        return {"Id": image_id}

    def pull(self, name: str, tag: str, *, auth: dict, platform: str) -> Iterator[dict]:
        from cais.image.reference import ReferenceError, parse
        from cais.registry.pull import pull
        try:
            if not tag or "@" in name:
                ref = parse(name)
            elif ":" in tag:  # dockerd: the "tag" may be a digest (docker-py and compose pull NAME@DIGEST so)
                ref = parse(f"{name}@{tag}")
            else:
                ref = parse(name if _has_tag(name) else f"{name}:{tag}")
        except ReferenceError as e:
            raise InvalidParameter(str(e)) from None

        def run(emit) -> None:  # type: ignore[no-untyped-def]
            import asyncio  # the registry client's; not on the path of a daemonless run (~15 ms)
            with self.store.hold():
                result = asyncio.run(pull(ref, self.store.content, credentials=_credentials(auth),
                                          platform=_platform(platform), progress=emit))
                self.store.register(result.digest, ref)
            emit_status(emit, f"Status: Downloaded newer image for {ref.familiar()}")
            self.engine.events.emit("image", "pull", str(ref), {"name": str(ref)})
        yield from _progress_of(run)

    def push(self, name: str, tag: str, *, auth: dict) -> Iterator[dict]:
        from cais.image.archive import _image_manifest
        from cais.image.reference import Reference, parse
        from cais.registry.push import push
        target = f"{name}:{tag}" if tag else name
        with _errors():
            ref = parse(target)
            image_id = self.store.resolve(target)
            digest, _ = _image_manifest(self.store, image_id)

        def run(emit) -> None:  # type: ignore[no-untyped-def]
            import asyncio
            emit_status(emit, f"The push refers to repository [{ref.name}]")
            asyncio.run(push(ref, self.store.content, digest, credentials=_credentials(auth), progress=emit))
            # RepoDigests gets NAME@DIGEST, as after a pull (dockerd does the same)
            self.store.register(digest, Reference(ref.domain, ref.path, None, digest))
            self.engine.events.emit("image", "push", str(ref), {"name": str(ref)})
        yield from _progress_of(run)

    def login(self, body: dict) -> dict:
        """POST /auth: check the credentials against the registry (the client stores them, not us)."""
        from cais.registry.client import Registry
        from cais.registry.errors import RegistryError
        server = str(body.get("serveraddress") or "docker.io")
        domain = server.split("://", 1)[-1].split("/", 1)[0]
        if domain in ("index.docker.io", "registry-1.docker.io", ""):
            domain = "docker.io"
        credentials = _credentials({"username": body.get("username"), "password": body.get("password"),
                                    "identitytoken": body.get("identitytoken")})

        async def check() -> None:
            async with Registry(domain, credentials=credentials) as registry:
                await registry.ping()
                async with registry.request("GET", "/v2/", scopes=(), what="login"):
                    pass
        import asyncio
        try:
            asyncio.run(check())
        except RegistryError as e:
            raise Unauthorized(f"login attempt to {server} failed: {e}") from None
        return {"Status": "Login Succeeded", "IdentityToken": ""}

    def build(self, body: BinaryIO, options: dict, *, auth: dict) -> Iterator[dict]:
        try:
            from cais.image.build import build  # type: ignore[attr-defined]
        except ImportError:
            raise Unsupported("build is not available yet in this cais") from None
        yield from build(self, body, options)


class Unauthorized(EngineError):
    status = 401


def _has_tag(name: str) -> bool:
    return ":" in name.rsplit("/", 1)[-1]


def _credentials(auth: dict):  # type: ignore[no-untyped-def]
    from cais.registry.credentials import Credentials
    if auth.get("identitytoken"):
        return Credentials("<token>", auth["identitytoken"])
    if auth.get("username"):
        return Credentials(auth["username"], auth.get("password", ""))
    return None


def _platform(text: str):  # type: ignore[no-untyped-def]
    if not text:
        return None
    from cais.image.platform import parse_platform
    try:
        return parse_platform(text)
    except ValueError as e:
        raise InvalidParameter(str(e)) from None


def emit_status(emit, text: str) -> None:  # type: ignore[no-untyped-def]
    from cais.registry.progress import ProgressEvent
    emit(ProgressEvent("", text))


def _progress_of(run) -> Iterator[dict]:  # type: ignore[no-untyped-def]
    """Run `run(emit)` in a thread; yield docker's JSON progress messages as they come."""
    import json

    from cais.registry.progress import JSONProgress
    messages: queue.Queue = queue.Queue()
    done = object()
    renderer = JSONProgress(lambda data: messages.put(json.loads(data)))

    def target() -> None:
        try:
            run(renderer)
        except Exception as e:
            messages.put(e)
        finally:
            messages.put(done)
    threading.Thread(target=target, daemon=True).start()
    while (item := messages.get()) is not done:
        if isinstance(item, Exception):
            text = str(item) or type(item).__name__
            yield {"errorDetail": {"message": text}, "error": text}
            continue
        yield item
