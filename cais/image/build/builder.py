"""The builder: a Dockerfile and a context become an image, step by step, with a cache.

Every step yields an image, as docker's classic builder does: config-only steps (ENV, LABEL,
CMD...) a new config on the same layers; RUN, COPY, ADD and WORKDIR a new layer, captured from
the overlay upper directory of a writable layer (`export_diff`: no walk of the whole tree,
whiteouts for deletions) and registered through the image store. Intermediate images have
their parent set, so they stay hidden and are kept alive by the final image.

The cache maps a step key to the image it produced. A key covers the parent image, the
instruction after expansion, the ARG values in scope, and for COPY/ADD the content and metadata
of the sources. Since a hit returns the very image built before, a rebuild with nothing changed
ends at the same image ID. Only the stages the target needs are built.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import fcntl
import hashlib
import json
import os
import posixpath
import re
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cais.image.build import dispatch
from cais.image.build.context import BuildContext, ContextError
from cais.image.build.copier import (
    Copier,
    CopyError,
    Source,
    lookup_chown,
    makedirs,
    parse_chmod,
    scoped,
    tree_entries,
)
from cais.image.build.dockerignore import Matcher, pattern_regex
from cais.image.build.events import (
    BuildDone,
    BuildWarning,
    Event,
    StepCached,
    StepDone,
    StepOutput,
    StepStarted,
)
from cais.image.build.instructions import (
    ArgCmd,
    Command,
    CopyCmd,
    Dockerfile,
    RunCmd,
    Stage,
    WorkdirCmd,
    command,
    load,
)
from cais.image.build.mounts import RunMount, parse_mount
from cais.image.build.options import BuildError, BuildOptions
from cais.image.build.parser import DockerfileError, parse, parse_heredoc_marker
from cais.image.build.runner import NETWORK_MODES, RunError, Runner, RunSpec
from cais.image.build.shell_words import Lexer, ShellSyntaxError
from cais.storage import userdb
from cais.storage.driver import reachable
from cais.storage.idshift import IdShift
from cais.storage.rootdir import read_text

Emit = Callable[[Event], None]
_EMPTY_TAR_SIZE = 1024  # an empty diff: just the two zero blocks
_PIPES = "/dev/pipes"  # where a `RUN <<EOF` script with a shebang is mounted (on /dev's tmpfs)


@dataclass
class State:
    """A stage in progress: its current image (None: scratch with no step yet) and its scope."""

    image_id: str | None
    image: dict[str, Any]
    layers: list[tuple[str, str, int]]  # (blob digest, diff_id, size), bottom first
    scope: dispatch.Scope
    flags: dict[str, bool] = field(default_factory=dict)

    @property
    def config(self) -> dict[str, Any]:
        return self.image.setdefault("config", {})

    @property
    def key(self) -> str:
        """What the next step's cache key starts from."""
        return self.image_id or _digest(["scratch", self.image])

    @property
    def top_layer(self) -> str | None:
        return _top_layer(self.layers)


def _top_layer(layers: list[tuple[str, str, int]]) -> str | None:
    """The storage driver's id of the top layer (its chain ID's hex)."""
    if not layers:
        return None
    from cais.image.config import chain_ids
    return chain_ids([d for _, d, _ in layers])[-1].split(":", 1)[1]


def _digest(obj: Any) -> str:
    return "sha256:" + hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def tmp_prefix(kind: str) -> str:
    return f"cais-build-{kind}-{os.getpid()}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ").replace(".000000Z", "Z")


class Builder:
    """Builds images into an image store (`cais.image.store.ImageStore`) with a runtime `Runner`."""

    def __init__(self, store: Any, runner: Runner, root: str,
                 puller: Callable[[str, Callable[[str], None]], None] | None = None, *,
                 id_shift: IdShift | None = None) -> None:
        """`puller(reference, log)` fetches an image into `store` (None: never pull); `id_shift`
        (userns-remap): RUN runs in a user namespace with that mapping, on a writable layer whose
        lower layers are idmapped as a container's (its diff is packed back to the image's ids)."""
        self.store = store
        self.id_shift = id_shift
        self.puller = puller
        self.driver = store.driver
        self.runner = runner
        self.root = root
        self.cache_dir = os.path.join(root, "cache")
        self.tmp_dir = os.path.join(root, "tmp")
        self.active_dir = os.path.join(root, "active")
        for d in (self.cache_dir, self.tmp_dir, self.active_dir):
            os.makedirs(d, mode=0o700, exist_ok=True)
        self.reachable(root)
        self.reachable(self.tmp_dir)
        self.sweep()

    # --- writable layers, and what a crashed build left ---

    @contextlib.contextmanager
    def writable(self, top_layer: str | None, purpose: str, id_shift: IdShift | None = None) -> Iterator[str]:
        """A fresh writable layer on `top_layer` (removed afterwards), recorded under active/ with
        our pid so that a build that died is cleaned up by the next builder (`sweep`)."""
        rw = f"cais-build-{purpose}-{secrets.token_hex(6)}"
        entry = os.path.join(self.active_dir, rw)
        with open(entry, "w") as f:
            f.write(str(os.getpid()))
        try:
            self.driver.create_rw(rw, top_layer, id_shift)
            try:
                yield rw
            finally:
                self.driver.remove_rw(rw)
        finally:
            os.unlink(entry)

    def reachable(self, path: str) -> str:
        """Under userns-remap, let the remapped root traverse `path` (a RUN --mount source's way)."""
        if self.id_shift is not None:
            reachable(path, self.id_shift.gid)
        return path

    def tmp(self, kind: str) -> tempfile.TemporaryDirectory[str]:
        """A temporary directory under tmp/, named with our pid so that `sweep` knows its owner."""
        return tempfile.TemporaryDirectory(prefix=tmp_prefix(kind), dir=self.tmp_dir)

    def sweep(self) -> None:
        """Remove the containers, mounts, writable layers and temporary files of builds whose
        process is gone."""
        for name in os.listdir(self.tmp_dir):
            pid = name.split("-")[3] if name.startswith("cais-build-") and name.count("-") >= 4 else ""
            if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
                shutil.rmtree(os.path.join(self.tmp_dir, name), ignore_errors=True)
        for rw in os.listdir(self.active_dir):
            entry = os.path.join(self.active_dir, rw)
            try:
                with open(entry) as f:
                    pid = int(f.read().strip() or 0)
            except (OSError, ValueError):
                continue
            if pid == os.getpid() or _alive(pid):
                continue
            self.runner.cleanup(rw)
            shutil.rmtree(os.path.join(self.tmp_dir, rw), ignore_errors=True)  # its OCI bundle
            for step in (self.driver.unmount, self.driver.remove_rw):
                with contextlib.suppress(Exception):  # half-made: some steps have nothing to undo
                    step(rw)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry)

    def build(self, context: BuildContext, options: BuildOptions, emit: Emit) -> str:
        """Build; returns the image ID. Raises BuildError (nothing left mounted or running)."""
        from cais.image.reference import ReferenceError
        from cais.image.reference import parse as parse_reference

        for tag in options.tags:
            try:
                ref = parse_reference(tag)
            except ReferenceError as e:
                raise BuildError(f"invalid tag {tag!r}: {e}") from None
            if ref.digest:
                raise BuildError(f"invalid tag {tag!r}: a tag cannot contain a digest")
        try:
            dockerfile = load(context.dockerfile, context.dockerfile_name)
        except DockerfileError as e:
            raise BuildError(str(e)) from None
        for w in dockerfile.parsed.warnings:
            emit(BuildWarning(w))
        from cais.image.store import ImageError
        from cais.storage.errors import StorageError

        try:
            return _Build(self, context, dockerfile, options, emit).run()
        except (ImageError, StorageError) as e:  # one-line messages from the layers below
            raise BuildError(str(e)) from None

    # --- cache ---

    def cache_get(self, key: str) -> str | None:
        try:
            with open(os.path.join(self.cache_dir, key.split(":", 1)[1])) as f:
                image_id = f.read().strip()
        except FileNotFoundError:
            return None
        if self.store.meta.image(image_id) is None:
            return None
        return image_id

    def cache_put(self, key: str, image_id: str) -> None:
        path = os.path.join(self.cache_dir, key.split(":", 1)[1])
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            f.write(image_id)
        os.replace(tmp, path)

    # --- images ---

    def image(self, image_id: str) -> tuple[dict[str, Any], list[tuple[str, str, int]]]:
        from cais.image.config import diff_ids
        from cais.image.manifest import Manifest, parse_manifest

        cfg = self.store.config(image_id)
        for digest, _ in self.store.meta.manifests(image_id):
            man = parse_manifest(self.store.content.read(digest))
            if isinstance(man, Manifest):
                return cfg, [(layer.digest, d, layer.size) for layer, d in zip(man.layers, diff_ids(cfg), strict=True)]
        raise BuildError(f"image {image_id} has no manifest")

    def has_image(self, name: str) -> bool:
        try:
            self.store.resolve(name)
        except Exception:  # the store's not-found and invalid-reference errors
            return False
        return True

    def register(self, image: dict[str, Any], layers: list[tuple[str, str, int]], parent: str | None) -> str:
        from cais.image.rootfs import make_image

        cfg = {k: v for k, v in image.items() if k != "rootfs"}
        return make_image(self.store, layers, cfg, parent=parent or "")

    @contextlib.contextmanager
    def mounted(self, top_layer: str | None, purpose: str, id_shift: IdShift | None = None
                ) -> Iterator[tuple[str, str]]:
        """A fresh writable layer on `top_layer`, mounted: yields (its id, the rootfs path)."""
        with self.writable(top_layer, purpose, id_shift) as rw:
            path = self.driver.mount(rw)
            try:
                yield rw, path
            finally:
                self.driver.unmount(rw)


class _Build:
    def __init__(self, builder: Builder, context: BuildContext, dockerfile: Dockerfile, options: BuildOptions,
                 emit: Emit) -> None:
        self.b = builder
        self.ctx = context
        self.df = dockerfile
        self.opts = options = dataclasses.replace(options)  # ours to adjust (SOURCE_DATE_EPOCH)
        self.emit = emit
        self.escape = dockerfile.parsed.directives.escape
        self.results: dict[int, State] = {}
        self.step = 0
        self.meta = self._meta_args()
        self.pulled: set[str] = set()
        self.cache_images = self._cache_images()
        if options.source_date_epoch is None and "SOURCE_DATE_EPOCH" in options.build_args:
            try:  # BuildKit takes it as a build argument too
                options.source_date_epoch = int(options.build_args["SOURCE_DATE_EPOCH"])
            except ValueError:
                raise BuildError("SOURCE_DATE_EPOCH must be a number of seconds") from None
            self.used_meta.add("SOURCE_DATE_EPOCH")
        if options.network not in NETWORK_MODES:
            raise BuildError(f"unknown network mode {options.network!r} (use one of: {', '.join(NETWORK_MODES)})")

    def fail(self, message: str, line: int | None = None) -> BuildError:
        where = f"{self.df.filename}:{line}: " if line else ""
        return BuildError(where + message)

    def _cache_images(self) -> list[tuple[list[dict[str, Any]], list[tuple[str, str, int]]]]:
        found = []
        for name in self.opts.cache_from:
            try:
                image_id = self.b.store.resolve(name)
            except Exception:  # docker only warns about a missing --cache-from image
                self.emit(BuildWarning(f"--cache-from {name}: no such image, ignored"))
                continue
            cfg, layers = self.b.image(image_id)
            found.append((cfg.get("history") or [], layers))
        return found

    def _meta_args(self) -> dict[str, str | None]:
        """ARGs before the first FROM, over BuildKit's automatic platform ARGs (the host's: cais
        builds for the platform it runs on)."""
        from cais.image.platform import host_platform

        host = host_platform()
        meta: dict[str, str | None] = {}
        for prefix in ("BUILD", "TARGET"):
            meta.update({f"{prefix}PLATFORM": str(host), f"{prefix}OS": host.os, f"{prefix}ARCH": host.architecture,
                         f"{prefix}VARIANT": host.variant})
        self.used_meta: set[str] = set()
        for cmd in self.df.meta_args:
            for name, default in cmd.args:
                if name in self.opts.build_args:
                    meta[name] = self.opts.build_args[name]
                    self.used_meta.add(name)
                elif default is not None:
                    try:
                        meta[name] = Lexer(self.escape).process_word(
                            default, {k: v for k, v in meta.items() if v is not None})
                    except ShellSyntaxError as e:
                        raise self.fail(str(e), cmd.line) from None
                elif name not in meta:
                    meta[name] = None
        return meta

    def expand_meta(self, text: str, line: int) -> str:
        try:
            return Lexer(self.escape).process_word(text, {k: v for k, v in self.meta.items() if v is not None})
        except ShellSyntaxError as e:
            raise self.fail(str(e), line) from None

    # --- plan ---

    def stage_ref(self, name: str, before: int) -> Stage | None:
        stage = self.df.stage(name)
        return stage if stage is not None and stage.index < before else None

    def needed(self, target: Stage) -> list[Stage]:
        order: list[Stage] = []
        seen: set[int] = set()

        def visit(stage: Stage) -> None:
            if stage.index in seen:
                return
            seen.add(stage.index)
            base = self.stage_ref(self.expand_meta(stage.base, stage.line), stage.index)
            if base is not None:
                visit(base)
            for cmd in stage.commands:
                for name in self.uses(cmd):
                    dep = self.stage_ref(self.expand_meta(name, cmd.line), stage.index)
                    if dep is not None:
                        visit(dep)
            order.append(stage)

        visit(target)
        return order

    @staticmethod
    def uses(cmd: Command) -> list[str]:
        """The --from names of an instruction (COPY --from, RUN --mount=from=)."""
        if isinstance(cmd, CopyCmd) and cmd.source_stage:
            return [cmd.source_stage]
        names = []
        if isinstance(cmd, RunCmd):
            for spec in cmd.mounts:
                with contextlib.suppress(DockerfileError):  # reported when the step runs
                    mount = parse_mount(spec)
                    if mount.source_stage:
                        names.append(mount.source_stage)
        return names

    def run(self) -> str:
        if self.opts.target:
            target = self.df.stage(self.opts.target)
            if target is None:
                raise BuildError(f"failed to reach build target {self.opts.target} in Dockerfile")
        else:
            target = self.df.stages[-1]
        stages = self.needed(target)
        self.total = sum(1 + len(s.commands) for s in stages) + (1 if self.opts.labels else 0)
        for stage in stages:
            self.results[stage.index] = self.build_stage(stage, stage is target)
        state = self.results[target.index]
        if state.image_id is None:
            state = self.commit(state, "")  # FROM scratch alone: still an image
        unused = set(self.opts.build_args) - self.used_meta - set().union(
            *(s.scope.used_build_args for s in self.results.values())) - set(dispatch.PROXY_ARGS)
        if unused:
            self.emit(BuildWarning(f"One or more build-args [{' '.join(sorted(unused))}] were not consumed"))
        image_id = state.image_id
        assert image_id is not None
        for tag in self.opts.tags:
            try:
                self.b.store.tag(image_id, tag)
            except Exception as e:  # the store's errors are one-line messages
                raise BuildError(f"cannot tag {tag}: {e}") from None
        self.emit(BuildDone(image_id, tuple(self.opts.tags)))
        return image_id

    # --- stages ---

    def begin(self, text: str, stage: Stage) -> int:
        self.step += 1
        label = stage.name or (f"stage-{stage.index}" if len(self.df.stages) > 1 else "")
        self.emit(StepStarted(self.step, self.total, text, label))
        return self.step

    def build_stage(self, stage: Stage, is_target: bool) -> State:
        number = self.begin(f"FROM {stage.base}" + (f" AS {stage.name}" if stage.name else ""), stage)
        state = self.from_base(stage, number)
        self.emit(StepDone(number, state.image_id or state.key))
        for trigger in list(state.config.get("OnBuild") or []):
            state = self.onbuild(trigger, state, stage)
        if state.config.get("OnBuild"):
            state.config["OnBuild"] = None
        for cmd in stage.commands:
            number = self.begin(str(cmd), stage)
            state = self.execute(cmd, state, number)
        if is_target and self.opts.labels:
            text = "LABEL " + " ".join(f"{k}={json.dumps(v)}" for k, v in sorted(self.opts.labels.items()))
            number = self.begin(text, stage)
            state = self.step_config(state, number, text, lambda s: s.config.setdefault("Labels", {}).update(
                self.opts.labels) or text)
        return state

    def onbuild(self, trigger: str, state: State, stage: Stage) -> State:
        try:
            nodes = parse(trigger, self.df.filename).nodes
            if len(nodes) != 1:
                raise DockerfileError("an ONBUILD trigger must be one instruction")
            cmd = command(nodes[0])
        except DockerfileError as e:
            raise self.fail(f"ONBUILD trigger {trigger!r} of the base image: {e.message}", stage.line) from None
        cmd.node.line = stage.line
        number = self.begin(f"# ONBUILD {trigger}", stage)
        return self.execute(cmd, state, number)

    def from_base(self, stage: Stage, number: int) -> State:
        base = self.expand_meta(stage.base, stage.line)
        scope = dispatch.Scope(self.opts.build_args, self.meta, self.escape)
        if not base:
            raise self.fail("base name (FROM) should not be blank", stage.line)
        ref_stage = self.stage_ref(base, stage.index)
        if ref_stage is not None:
            parent = self.results[ref_stage.index]
            return State(parent.image_id, copy.deepcopy(parent.image), list(parent.layers), scope)
        if base.lower() == "scratch":
            from cais.image.platform import host_platform
            image = {"architecture": host_platform().architecture, "os": "linux",
                     "config": {"Env": [f"PATH={dispatch.DEFAULT_PATH}"]}, "history": []}
            return State(None, image, [], scope)
        try:
            image_id = self.resolve_image(base, number, refresh=self.opts.pull)
        except DockerfileError as e:
            raise self.fail(f"FROM {e.message}", stage.line) from None
        cfg, layers = self.b.image(image_id)
        if stage.platform:
            self.check_platform(stage, base, cfg)
        image = {k: v for k, v in cfg.items() if k not in ("container", "container_config", "rootfs")}
        config = image.setdefault("config", {}) or {}
        image["config"] = config
        if "PATH" not in dispatch.env_list_to_dict(config.get("Env")):
            config["Env"] = [*(config.get("Env") or []), f"PATH={dispatch.DEFAULT_PATH}"]
        return State(image_id, image, layers, scope)

    def resolve_image(self, name: str, number: int, *, refresh: bool = False) -> str:
        """An image ID for `name`, pulled first when missing (or always, with --pull), as docker does."""
        puller = self.b.puller
        if puller is not None and (refresh or not self.b.has_image(name)) and name not in self.pulled:
            from cais.image.reference import ReferenceError
            from cais.image.reference import parse as parse_reference
            try:
                parse_reference(name)
            except ReferenceError as e:
                raise DockerfileError(f"{name}: {e}") from None
            try:
                puller(name, lambda line: self.emit(StepOutput(number, line.encode() + b"\n")))
            except Exception as e:  # the registry's errors are one-line messages
                if not self.b.has_image(name):
                    raise DockerfileError(f"{name}: pull failed: {e}") from None
                self.emit(BuildWarning(f"{name}: pull failed ({e}); using the local image"))
            self.pulled.add(name)
        try:
            return self.b.store.resolve(name)
        except Exception as e:
            raise DockerfileError(f"{name}: {e}") from None

    def check_platform(self, stage: Stage, base: str, cfg: dict[str, Any]) -> None:
        from cais.image.platform import Platform, parse_platform

        spec = self.expand_meta(stage.platform or "", stage.line)
        try:
            wanted = parse_platform(spec)
        except ValueError as e:
            raise self.fail(f"FROM --platform: {e}", stage.line) from None
        have = Platform(cfg.get("os") or "linux", cfg.get("architecture") or "", cfg.get("variant") or "")
        if not have.matches(wanted):
            raise self.fail(f"FROM {base}: the image is for {have}, not {wanted} (--platform)", stage.line)

    # --- steps ---

    def execute(self, cmd: Command, state: State, number: int) -> State:
        try:
            if isinstance(cmd, RunCmd):
                return self.step_run(cmd, state, number)
            if isinstance(cmd, CopyCmd):
                return self.step_copy(cmd, state, number)
            if isinstance(cmd, WorkdirCmd):
                return self.step_workdir(cmd, state, number)
            if isinstance(cmd, ArgCmd):  # ARG changes only the scope, not the image
                dispatch.apply(cmd, state.config, state.image, state.scope, state.flags)
                self.emit(StepDone(number, state.key))
                return state
            return self.step_config(state, number, str(cmd),
                                    lambda s: dispatch.apply(cmd, s.config, s.image, s.scope, s.flags))
        except DockerfileError as e:
            raise self.fail(e.message, cmd.line) from None
        except (CopyError, ContextError) as e:
            raise self.fail(f"{cmd.keyword} failed: {e}", cmd.line) from None
        except OSError as e:  # the context or the image holds something we cannot read or write
            where = f": {e.filename}" if e.filename else ""
            raise self.fail(f"{cmd.keyword} failed: {e.strerror or e}{where}", cmd.line) from None

    def now(self) -> str:
        epoch = self.opts.source_date_epoch
        return rfc3339(epoch if epoch is not None else time.time())

    def cached(self, key: str, number: int, state: State) -> State | None:
        if self.opts.no_cache:
            return None
        image_id = self.b.cache_get(key)
        if image_id is None:
            return None
        cfg, layers = self.b.image(image_id)
        image = {k: v for k, v in cfg.items() if k != "rootfs"}
        self.emit(StepCached(number))
        self.emit(StepDone(number, image_id))
        return State(image_id, image, layers, state.scope, state.flags)

    def from_cache_images(self, state: State, created_by: str) -> tuple[str, str, int] | None:
        """--cache-from: the layer an image made at this very step (same layers below, same
        history entry), as docker's classic builder matches them."""
        if self.opts.no_cache:
            return None
        position = len(state.image.get("history") or [])
        ours = [d for _, d, _ in state.layers]
        for history, layers in self.cache_images:
            if position >= len(history) or history[position].get("empty_layer"):
                continue
            if history[position].get("created_by") != created_by or len(layers) <= len(ours):
                continue
            if [d for _, d, _ in layers[:len(ours)]] == ours:
                return layers[len(ours)]
        return None

    def step_key(self, state: State, *parts: Any) -> str:
        return _digest([state.key, *parts])

    def step_config(self, state: State, number: int, text: str, change: Callable[[State], str]) -> State:
        new = State(state.image_id, copy.deepcopy(state.image), state.layers, state.scope, state.flags)
        created_by = change(new)
        key = self.step_key(state, "config", created_by, new.image.get("config"), new.image.get("author"))
        hit = self.cached(key, number, new)
        if hit is not None:
            return hit
        result = self.commit(new, created_by, empty_layer=True)
        self.b.cache_put(key, result.image_id or "")
        self.emit(StepDone(number, result.image_id or ""))
        return result

    def commit(self, state: State, created_by: str, layer: tuple[str, str, int] | None = None, *,
               empty_layer: bool = False) -> State:
        image = copy.deepcopy(state.image)
        created = self.now()
        image["created"] = created
        entry: dict[str, Any] = {"created": created, "created_by": created_by, "comment": "cais build"}
        if empty_layer or layer is None:
            entry["empty_layer"] = True
        image["history"] = [*(image.get("history") or []), entry]
        image["config"] = {k: v for k, v in (image.get("config") or {}).items() if v not in (None, [], {})}
        layers = [*state.layers, layer] if layer is not None else list(state.layers)
        image_id = self.b.register(image, layers, state.image_id)
        cfg, layers = self.b.image(image_id)
        return State(image_id, {k: v for k, v in cfg.items() if k != "rootfs"}, layers, state.scope, state.flags)

    def layer_step(self, state: State, number: int, key: str, created_by: str, work: Callable[[str, str], None],
                   *, skip_empty: bool = False, remapped: bool = False) -> State:
        """Run `work(rw_id, rootfs)` in a fresh writable layer and commit what it changed;
        `remapped`: a layer for the builder's id shift (RUN under userns-remap)."""
        hit = self.cached(key, number, state)
        if hit is not None:
            return hit
        layer = self.from_cache_images(state, created_by)
        if layer is not None:
            new = self.commit(state, created_by, layer)
            self.b.cache_put(key, new.image_id or "")
            self.emit(StepCached(number))
            self.emit(StepDone(number, new.image_id or ""))
            return new
        driver = self.b.driver
        with self.b.writable(state.top_layer, "step", self.b.id_shift if remapped else None) as rw:
            rootfs = driver.mount(rw)
            try:
                work(rw, rootfs)
            finally:
                driver.unmount(rw)
            with self.b.store.hold():
                writer = self.b.store.content.writer()
                try:
                    result = self.b.driver.export_diff(rw, writer, source_date_epoch=self.opts.source_date_epoch)
                    blob = writer.commit()
                except BaseException:
                    writer.abort()
                    raise
                if skip_empty and result.tar_size <= _EMPTY_TAR_SIZE:
                    new = self.commit(state, created_by, empty_layer=True)
                else:
                    new = self.commit(state, created_by, (blob, result.diff_id, result.tar_size))
        self.b.cache_put(key, new.image_id or "")
        self.emit(StepDone(number, new.image_id or ""))
        return new

    # --- WORKDIR ---

    def step_workdir(self, cmd: WorkdirCmd, state: State, number: int) -> State:
        new = State(state.image_id, copy.deepcopy(state.image), state.layers, state.scope, state.flags)
        created_by = dispatch.apply(cmd, new.config, new.image, new.scope, new.flags)
        path = new.config["WorkingDir"]
        key = self.step_key(state, "WORKDIR", path, new.image.get("config"))

        def work(_rw: str, rootfs: str) -> None:
            if not os.path.isdir(scoped(rootfs, path)):
                makedirs(rootfs, path)

        return self.layer_step(new, number, key, created_by, work, skip_empty=True)

    # --- RUN ---

    def step_run(self, cmd: RunCmd, state: State, number: int) -> State:
        network = cmd.network or self.opts.network
        if network not in NETWORK_MODES:
            raise DockerfileError(f"unknown network mode {network!r} (use one of: {', '.join(NETWORK_MODES)})")
        mounts = [parse_mount(state.scope.word(spec, state.config)) for spec in cmd.mounts]
        args, script = self.run_args(cmd, state)
        env = state.scope.run_env(state.config)
        key = self.step_key(state, "RUN", args, script, state.scope.cache_args(), network,
                            [(repr(m), self.mount_source_key(m)) for m in mounts])
        created_by = "RUN " + " ".join(args)

        def work(rw: str, rootfs: str) -> None:
            user = state.config.get("User") or ""
            found = resolve_user(rootfs, user)
            cwd = state.config.get("WorkingDir") or "/"
            bundle = os.path.join(self.b.tmp_dir, rw)
            try:
                with contextlib.ExitStack() as stack:
                    oci_mounts = [self.prepare_mount(m, stack) for m in mounts]
                    if script is not None:
                        oci_mounts.append(self.script_mount(*script, stack))
                    self.b.runner.run(rw, bundle, rootfs,
                                      RunSpec(args, env, cwd, found.uid, found.gid, found.groups, network,
                                              mounts=oci_mounts, id_shift=self.b.id_shift),
                                      lambda data: self.emit(StepOutput(number, data)))
            except RunError as e:
                raise self.fail(f"The command '{' '.join(args)}' returned a non-zero code: "
                                f"{str(e).removeprefix('exit code: ')}" if str(e).startswith("exit code")
                                else f"RUN failed: {e}", cmd.line) from None
            finally:
                shutil.rmtree(bundle, ignore_errors=True)

        return self.layer_step(state, number, key, created_by, work, remapped=True)

    def script_mount(self, name: str, text: str, stack: contextlib.ExitStack) -> dict[str, Any]:
        tmp = self.b.reachable(stack.enter_context(self.b.tmp("script")))
        path = os.path.join(tmp, "script")
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, 0o755)
        return {"destination": posixpath.join(_PIPES, name), "type": "bind", "source": path,
                "options": ["rbind", "ro"]}

    def mount_source_key(self, m: RunMount) -> str:
        """What a mount's content depends on: the context files it shows, or the image it shows."""
        if m.type != "bind":
            return ""
        if m.source_stage:
            return self.source_image(m.source_stage)[0]
        rel = self.ctx.resolve(m.source or ".")
        if not os.path.lexists(self.ctx.path(rel)) or not self.ctx.included(rel):
            raise CopyError(f"--mount: {m.source or '.'} not found in the build context")
        return self.ctx.checksum([rel])

    def prepare_mount(self, m: RunMount, stack: contextlib.ExitStack) -> dict[str, Any]:
        """The OCI mount for a RUN --mount (what it needs stays alive until `stack` closes)."""
        if m.type == "tmpfs":
            return {"destination": m.target, "type": "tmpfs", "source": "tmpfs",
                    "options": ["nosuid", "nodev", *([f"size={m.size}"] if m.size else [])]}
        if m.type == "cache":
            shift = self.b.id_shift
            name = hashlib.sha256((m.id or m.target).encode()).hexdigest()[:32]
            if shift is not None:  # one cache per mapping: its files have that mapping's host ids
                name += f"-{shift.uid}-{shift.gid}"
            path = os.path.join(self.b.root, "cache-mounts", name)
            if not os.path.isdir(path):
                os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
                self.b.reachable(os.path.dirname(path))
                os.mkdir(path, m.mode)
                os.chmod(path, m.mode)
                os.chown(path, m.uid + (shift.uid if shift else 0), m.gid + (shift.gid if shift else 0))
            if m.sharing == "locked":
                lock = stack.enter_context(open(path + ".lock", "w"))  # noqa: SIM115 - closed by the stack
                fcntl.flock(lock, fcntl.LOCK_EX)
            return {"destination": m.target, "type": "bind", "source": path, "options": ["rbind", "rw"]}
        options = ["rbind", "ro" if m.readonly else "rw"]
        if m.source_stage:
            _image_id, layers = self.source_image(m.source_stage)
            _rw, root = stack.enter_context(self.b.mounted(_top_layer(layers), "mount", self.b.id_shift))
            source = scoped(root, m.source or "/")
            if not os.path.exists(source):
                raise CopyError(f"--mount: {m.source} not found in {m.source_stage}")
            return {"destination": m.target, "type": "bind", "source": source, "options": options}
        rel = self.ctx.resolve(m.source or ".")
        tmp = self.b.reachable(stack.enter_context(self.b.tmp("mnt")))
        item = self.context_source(rel or ".", rel)
        Copier(tmp, None, None).copy([item], "/")
        source = tmp if item.entries is not None else os.path.join(tmp, item.name)
        return {"destination": m.target, "type": "bind", "source": source, "options": options}

    def source_image(self, name: str, what: str = "RUN --mount") -> tuple[str, list[tuple[str, str, int]]]:
        """--from=NAME: an earlier stage (by name or index) or an image in the store."""
        stage = self.stage_ref(name, len(self.df.stages))
        if stage is not None:
            if stage.index not in self.results:
                raise DockerfileError(f"{what} --from={name}: a stage can only use stages defined before it")
            source = self.results[stage.index]
            return source.image_id or source.key, source.layers
        try:
            image_id = self.resolve_image(name, self.step)
        except DockerfileError as e:
            raise DockerfileError(f"{what} --from={e.message}") from None
        return image_id, self.b.image(image_id)[1]

    def run_args(self, cmd: RunCmd, state: State) -> tuple[list[str], tuple[str, str] | None]:
        """The command line, and a script to mount at /dev/pipes/NAME for `RUN <<EOF` whose
        document starts with `#!` (run by its own interpreter, as BuildKit does)."""
        if not cmd.shell_form:
            return list(cmd.args), None
        text = cmd.args[0] if cmd.args else ""
        docs = cmd.heredocs
        script = None
        if docs:
            marker = parse_heredoc_marker(text.strip(), self.escape)
            if marker is not None and len(docs) == 1:
                text = docs[0].text  # RUN <<EOF: the document is the script
                if text.startswith("#!"):
                    script = (docs[0].name, text)
                    text = posixpath.join(_PIPES, docs[0].name)
            else:
                text = text + "".join("\n" + d.content + d.name for d in docs)
        return dispatch.command_line([text], True, state.config), script

    # --- COPY / ADD ---

    def step_copy(self, cmd: CopyCmd, state: State, number: int) -> State:
        scope, config = state.scope, state.config
        dest = scope.word(cmd.dest, config)
        if not dest.startswith("/"):
            trailing = dest.endswith("/") or dest in (".", "")
            dest = posixpath.join(config.get("WorkingDir") or "/", dest)
            if trailing and not dest.endswith("/"):
                dest += "/"
        chmod = parse_chmod(scope.word(cmd.chmod, config)) if cmd.chmod else None
        chown = scope.word(cmd.chown, config) if cmd.chown else None
        if cmd.parents:
            raise DockerfileError(f"{cmd.keyword} --parents is not supported by cais build")
        try:
            exclude = Matcher([scope.word(p, config) for p in cmd.exclude]) if cmd.exclude else None
        except ValueError as e:
            raise DockerfileError(f"--exclude: {e}") from None
        heredocs = {d.name: d for d in cmd.heredocs}
        inline: list[tuple[str, bytes]] = []
        patterns: list[str] = []
        for raw in cmd.sources:
            marker = parse_heredoc_marker(raw, self.escape) if heredocs else None
            if marker is not None and marker.name in heredocs:
                doc = heredocs[marker.name]
                text = scope.word(doc.text, config) if doc.expand else doc.text
                inline.append((doc.name, text.encode()))
            else:
                patterns.append(scope.word(raw, config))
        if cmd.source_stage:
            return self.copy_from(cmd, state, number, patterns, dest, chown, chmod)
        urls = [p for p in patterns if _is_url(p)] if cmd.add else []
        if urls and self.opts.network == "none":
            raise CopyError("ADD of a URL needs the network, and this build has --network=none")
        if cmd.add and any(_is_git(p) for p in patterns):
            raise CopyError("ADD of a git repository is not supported by cais build")
        checksum_wanted = scope.word(cmd.checksum, config) if cmd.checksum else None
        if checksum_wanted and (len(urls) != 1 or len(patterns) != 1):
            raise DockerfileError("ADD --checksum needs exactly one URL source")
        local = [p for p in patterns if p not in urls]
        sources: list[tuple[str, str]] = []
        for pattern in local:
            matches = [(m, rel) for m, rel in self.ctx.glob(pattern) if not (exclude and exclude.excluded(m))]
            if not matches:
                raise CopyError(f"file not found in build context or excluded by .dockerignore: stat {pattern}: "
                                "file does not exist")
            sources += matches
        checksum = self.ctx.checksum([rel for _, rel in sources])
        key = self.step_key(state, cmd.keyword, dest, chown, chmod, [m for m, _ in sources], checksum,
                            [(n, hashlib.sha256(d).hexdigest()) for n, d in inline],
                            urls, checksum_wanted, cmd.link, cmd.exclude)
        created_by = f"{cmd.keyword} {checksum} in {dest}"

        def work(_rw: str, rootfs: str) -> None:
            owner = lookup_chown(chown, rootfs) if chown else None
            copier = Copier(rootfs, owner, chmod)
            items = [self.context_source(matched, rel, exclude) for matched, rel in sources]
            with self.b.tmp("add") as tmp:
                items += [download(url, tmp, checksum_wanted) for url in urls]
                count = len(items) + len(inline)
                if count > 1 and not dest.endswith("/"):
                    raise CopyError("When using COPY with more than one source file, the destination must be "
                                    "a directory and end with a /")
                copier.copy(items, dest, unpack_archives=cmd.add)
            for name, data in inline:
                copier.write_file(dest, name, data)

        return self.layer_step(state, number, key, created_by, work)

    def context_source(self, matched: str, rel: str, exclude: Matcher | None = None) -> Source:
        """A COPY source from the context; `exclude` (--exclude) filters a directory's entries by
        their path below it."""
        path = self.ctx.path(rel)
        name = posixpath.basename(matched.rstrip("/")) or posixpath.basename(rel)
        if os.path.isdir(path):
            def entries(top: str = rel) -> Iterator[tuple[str, str, os.stat_result]]:
                for child, st in self.ctx.walk(top):
                    below = posixpath.relpath(child, top) if top else child
                    if exclude is None or not exclude.excluded(below):
                        yield below, self.ctx.path(child), st
            return Source(name, path, entries)
        return Source(name, path)

    def copy_from(self, cmd: CopyCmd, state: State, number: int, patterns: list[str], dest: str,
                  chown: str | None, chmod: int | None) -> State:
        name = state.scope.word(cmd.source_stage or "", state.config)
        source_id, source_layers = self.source_image(name, "COPY")
        key = self.step_key(state, "COPY --from", source_id, patterns, dest, chown, chmod)
        created_by = f"COPY --from={name} {' '.join(patterns)} {dest}"
        top = _top_layer(source_layers)

        def work(_rw: str, rootfs: str) -> None:
            owner = lookup_chown(chown, rootfs) if chown else None
            with self.b.mounted(top, "from") as (_src_rw, src_root):
                items: list[Source] = []
                for pattern in patterns:
                    found = glob_rootfs(src_root, pattern)
                    if not found:
                        raise CopyError(f"stat {pattern}: file does not exist in {name}")
                    items += found
                if len(items) > 1 and not dest.endswith("/"):
                    raise CopyError("When using COPY with more than one source file, the destination must be "
                                    "a directory and end with a /")
                Copier(rootfs, owner, chmod).copy(items, dest)

        return self.layer_step(state, number, key, created_by, work)


def glob_rootfs(root: str, pattern: str) -> list[Source]:
    """COPY --from sources: `pattern` matched inside another image's root filesystem."""
    parts = [p for p in posixpath.normpath("/" + pattern).split("/") if p]
    found = ["/"]
    for part in parts:
        nxt = []
        for base in found:
            if not any(c in part for c in "*?["):
                nxt.append(posixpath.join(base, part))
                continue
            host = scoped(root, base)
            if os.path.isdir(host):
                regex = re.compile(pattern_regex(part), re.DOTALL)
                nxt += [posixpath.join(base, n) for n in sorted(os.listdir(host)) if regex.match(n)]
        found = nxt
    sources = []
    for path in found:
        host = scoped(root, path)
        if not os.path.lexists(host):
            continue
        entries = tree_entries(host) if os.path.isdir(host) else None
        sources.append(Source(posixpath.basename(path) or "/", host, entries))
    return sources


def resolve_user(rootfs: str, user: str) -> userdb.ExecUser:
    """USER for RUN: looked up in the image's /etc/passwd and /etc/group as for `docker run --user`
    (dockerd's builder runs RUN as a container with that user): groups are the primary one and
    every group listing the user."""
    try:
        return userdb.lookup(lambda path: read_text(rootfs, path), user)
    except userdb.UserNotFound as e:
        raise DockerfileError(str(e)) from None


def _is_url(text: str) -> bool:
    return text.startswith(("http://", "https://"))


def _is_git(text: str) -> bool:
    return text.startswith("git@") or text.endswith(".git") or text.startswith("git://")


def download(url: str, tmp: str, checksum: str | None = None) -> Source:
    """ADD <url>: fetched to a file (mode 0600, mtime from Last-Modified), never unpacked;
    with `checksum` (ADD --checksum=sha256:…) the content must have that digest."""
    import urllib.parse
    import urllib.request

    name = posixpath.basename(urllib.parse.urlparse(url).path) or "index.html"
    path = os.path.join(tmp, secrets.token_hex(4))
    os.mkdir(path)
    target = os.path.join(path, name)
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=60) as resp, open(target, "wb") as f:  # noqa: S310 - http(s) only
            while chunk := resp.read(1 << 20):
                f.write(chunk)
                digest.update(chunk)
            modified = resp.headers.get("Last-Modified")
    except OSError as e:
        raise CopyError(f"cannot download {url}: {e}") from None
    if checksum and checksum != "sha256:" + digest.hexdigest():
        raise CopyError(f"{url}: content digest sha256:{digest.hexdigest()} does not match --checksum {checksum}")
    os.chmod(target, 0o600)
    if modified:
        from email.utils import parsedate_to_datetime
        with contextlib.suppress(TypeError, ValueError):
            ts = parsedate_to_datetime(modified).timestamp()
            os.utime(target, (ts, ts))
    return Source(name, target)
