"""Loaded generators of one API process: resolved through the registry on every call, kept LRU.

`resolve(name, ref)` reads the registry each time (one lean query, `store.registry.find_live`),
so a moved alias or a newly registered `latest` is served at once; `loaded(resolved)` returns
the generator of that version from a least-recently-used map of `capacity` entries, loading
the exported generator (safetensors + JSON, never pickle) on a miss. Both are synchronous and
thread-safe: the sampling routes call them from the thread pool, never on the event loop, and
a per-version lock makes concurrent first requests for one version load it once.

The registry routes call `invalidate` when a version is deleted; the cache imports nothing of
them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import anyio.to_thread

from ganserve.gan.checkpoint import EXPORT_DESCRIPTION, load_generator
from ganserve.gan.config import ModelSpec
from ganserve.gan.errors import CheckpointError
from ganserve.gan.models import Generator
from ganserve.gan.translation.translate import TRANSLATOR_FORMAT
from ganserve.service.errors import TranslationModelError
from ganserve.service.registry import versions as registry
from ganserve.store import Store
from ganserve.store import registry as store_registry
from ganserve.store.db import outage_of

log = logging.getLogger(__name__)

Key = tuple[str, int]  # (model name, version)

_RESOLVED_ROWS = 1024  # registry rows whose parsed description is kept
_PINNED = re.compile(r"^v?([0-9]{1,9})$")  # a version number: the same version whenever read


@dataclass(frozen=True)
class ResolvedVersion:
    """What the registry says about the version a (name, ref) names, read without loading it."""

    name: str
    version: int
    artifact_path: str  # relative to the artifacts dir
    spec: ModelSpec  # rebuilds the network: shapes, noise, classes
    description: dict[str, Any]  # the export's generator.json
    identity: str  # sha256 of the exported weights: part of every ETag

    @property
    def key(self) -> Key:
        return (self.name, self.version)


@dataclass(frozen=True)
class CachedGenerator:
    """A loaded generator (eval mode, CPU, no gradients) and what it was loaded from."""

    name: str
    version: int
    generator: Generator
    description: dict[str, Any]
    identity: str

    @property
    def spec(self) -> ModelSpec:
        return self.generator.spec


class GeneratorCache:
    """An LRU of loaded generators keyed by (name, version); counts hits, loads, evictions."""

    def __init__(self, store: Store, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.store = store
        self.capacity = capacity
        self.hits = 0  # requests served by an already loaded generator
        self.loads = 0  # generators loaded from their files
        self.evictions = 0  # generators dropped because the cache was full
        self._entries: OrderedDict[Key, CachedGenerator] = OrderedDict()
        self._guard = threading.Lock()  # _entries, _load_locks and the counters
        self._load_locks: dict[Key, threading.Lock] = {}  # one per version being loaded
        self._resolved: OrderedDict[int, ResolvedVersion] = OrderedDict()  # by registry row id
        self._live = store_registry.LiveReader(store.engine)  # the per-request registry read

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    async def get(self, name: str, ref: str) -> CachedGenerator:
        """The generator of the live version `ref` ("3", "latest", an alias) of model `name`."""
        return await anyio.to_thread.run_sync(self.get_sync, name, ref)

    def get_sync(self, name: str, ref: str) -> CachedGenerator:
        """`get`, blocking: call it from a thread."""
        return self.loaded(self.resolve(name, ref))

    def resolve(self, name: str, ref: str) -> ResolvedVersion:
        """Read the registry (blocking: call it from a thread); NotFoundError names what exists.

        One lean query finds the live row `ref` names (`store.registry.find_live`); a row seen
        before is answered from memory, since a registered row's description never changes.
        Anything else (a new row, no row) takes the full path, which parses the description,
        or raises the NotFoundError that lists the versions and aliases there are.
        """
        try:
            found = self._live.find(name, ref)  # on a kept connection (LiveReader)
        except Exception as error:
            # A database outage: a version number already loaded keeps serving (its files and
            # bytes cannot change); an alias or `latest` needs the registry, so it waits (503).
            pinned = self._pinned(name, ref) if outage_of(error) is not None else None
            if pinned is None:
                raise
            log.warning("database unreachable: serving %s v%d from memory", name, pinned.version)
            return pinned
        if found is not None:
            with self._guard:
                known = self._resolved.get(found.id)
                if known is not None and known.artifact_path == found.artifact_path:
                    self._resolved.move_to_end(found.id)
                    return known
        resolved, row_id = self._resolve_row(name, ref)
        with self._guard:
            self._resolved[row_id] = resolved
            while len(self._resolved) > _RESOLVED_ROWS:
                self._resolved.popitem(last=False)
        return resolved

    def _pinned(self, name: str, ref: str) -> ResolvedVersion | None:
        """The resolved, loaded version `ref` names if `ref` is a version number."""
        match = _PINNED.fullmatch(ref)
        if match is None:
            return None
        version = int(match.group(1))
        with self._guard:
            for resolved in reversed(self._resolved.values()):
                if (resolved.name, resolved.version) == (name, version):
                    return resolved if resolved.key in self._entries else None
        return None

    def _resolve_row(self, name: str, ref: str) -> tuple[ResolvedVersion, int]:
        with self.store.session() as session:
            row = registry.resolve_version(session, name, ref)
            row_id = row.id
            name, version, path = row.name, row.version, row.artifact_path
            description = dict(row.description or {})
        if "spec" not in description or "sha256" not in description:
            # Registered without the export's description: its generator.json is authoritative.
            description = self._read_description(path)
        if description.get("format") == TRANSLATOR_FORMAT:
            raise TranslationModelError(
                f"model {name!r} v{version} is an image-to-image (CycleGAN) model: it takes no "
                "noise, seed, label, truncation or interpolation; POST a picture to "
                f"/v1/models/{name}/translate",
                field="name",
            )
        try:
            spec = ModelSpec.from_dict(description["spec"])
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"model {name!r} v{version} has an unusable spec: {exc}") from exc
        resolved = ResolvedVersion(name, version, path, spec, description, _identity(description))
        return resolved, row_id

    def lookup(self, resolved: ResolvedVersion, requests: int = 1) -> CachedGenerator | None:
        """The loaded generator of `resolved`, marked most recently used; None if not loaded.

        `requests`: how many requests it serves (a batch counts each of its requests a hit).
        """
        with self._guard:
            entry = self._entries.get(resolved.key)
            if entry is None or entry.identity != resolved.identity:
                return None
            self._entries.move_to_end(resolved.key)
            self.hits += requests
            return entry

    def loaded(self, resolved: ResolvedVersion, requests: int = 1) -> CachedGenerator:
        """The generator of `resolved`, loaded on a miss (blocking: call it from a thread).

        Concurrent calls for one version load it once: the others wait for that load and
        count as hits. `requests`: how many requests it serves (a batch counts each).
        """
        entry = self.lookup(resolved, requests)
        if entry is not None:
            return entry
        key = resolved.key
        with self._guard:
            lock = self._load_locks.setdefault(key, threading.Lock())
        with lock:
            entry = self.lookup(resolved, requests)  # loaded by the call we waited for
            if entry is None:
                entry = self._load_files(resolved)
                self._insert(entry)
        with self._guard:
            if self._load_locks.get(key) is lock and not lock.locked():
                del self._load_locks[key]
        return entry

    def invalidate(self, name: str, version: int) -> bool:
        """Forget a version (it was deleted); True if it was loaded."""
        with self._guard:
            return self._entries.pop((name, version), None) is not None

    def close(self) -> None:
        """Give back the registry reader's connection (the app's shutdown)."""
        self._live.close()

    def clear(self) -> None:
        with self._guard:
            self._entries.clear()

    def _insert(self, entry: CachedGenerator) -> None:
        key = (entry.name, entry.version)
        with self._guard:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self.capacity:
                evicted, _ = self._entries.popitem(last=False)
                self.evictions += 1
                log.info("generator cache full: evicted %s v%d", *evicted)

    def _load_files(self, resolved: ResolvedVersion) -> CachedGenerator:
        folder = self.store.artifacts.absolute(resolved.artifact_path)
        try:
            loaded = load_generator(folder, "cpu")  # safetensors + JSON; verifies the sha256
        except CheckpointError:
            # Deleted (files and all) since it was resolved: a 404, not a broken model.
            self.resolve(resolved.name, str(resolved.version))
            raise
        if _identity(loaded.description) != resolved.identity:
            raise CheckpointError(
                f"the files of model {resolved.name!r} v{resolved.version} in {folder} are not "
                "the ones registered (their sha256 differs)"
            )
        with self._guard:
            self.loads += 1
        log.info("loaded generator %s v%d from %s", resolved.name, resolved.version, folder)
        return CachedGenerator(
            name=resolved.name,
            version=resolved.version,
            generator=loaded.generator,
            description=loaded.description,
            identity=resolved.identity,
        )

    def _read_description(self, artifact_path: str) -> dict[str, Any]:
        path = self.store.artifacts.absolute(artifact_path) / EXPORT_DESCRIPTION
        try:
            description = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"cannot read the generator description {path}: {exc}") from exc
        if not isinstance(description, dict):
            raise CheckpointError(f"{path} does not hold a generator description")
        return description


def _identity(description: dict[str, Any]) -> str:
    """The weights' sha256 when recorded, else a hash of the whole description."""
    sha = description.get("sha256")
    if isinstance(sha, str) and sha:
        return sha
    canonical = json.dumps(description, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()
