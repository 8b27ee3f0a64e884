"""Loaded generators of one API process: resolved through the registry on every call, kept LRU.

`get(name, ref)` reads the registry each time (one small query: `resolve`), so a moved alias
or a newly registered `latest` is served at once, then returns the generator of the version it
names from a least-recently-used map of `capacity` entries. A miss loads the exported generator
(safetensors + JSON, never pickle) in a worker thread, never on the event loop; a per-key lock
makes concurrent first requests for one version load it once.

The sampling routes use the two halves separately: `resolve` and `lookup` are synchronous and
thread-safe, so a request that hits the cache resolves, validates and renders in one trip to
the thread pool; only a miss comes back to the event loop to `load`. Concurrent PNG requests
share that trip: `batchers` holds one `batching.Batcher` per model name (service.sampling).
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

import anyio
import anyio.to_thread
from sqlalchemy import bindparam, select

from ganserve.gan.checkpoint import EXPORT_DESCRIPTION, load_generator
from ganserve.gan.config import ModelSpec
from ganserve.gan.errors import CheckpointError
from ganserve.gan.models import Generator
from ganserve.service.registry import versions as registry
from ganserve.service.sampling.batching import Batchers
from ganserve.store import Store
from ganserve.store import registry as store_registry
from ganserve.store.tables import ModelAlias, ModelVersion

log = logging.getLogger(__name__)

Key = tuple[str, int]  # (model name, version)
RowKey = tuple[int, str, int, str]  # a registry row: (id, model name, version, artifact path)

_RESOLVED_ROWS = 1024  # registry rows whose parsed description is kept
_VERSION_REF = re.compile(r"^v?([0-9]{1,9})$")  # a version number, as store.registry reads it
_ROW = select(ModelVersion.id, ModelVersion.version, ModelVersion.artifact_path)
_BY_NUMBER = _ROW.where(
    ModelVersion.name == bindparam("name"),
    ModelVersion.version == bindparam("version"),
    ModelVersion.deleted_at.is_(None),
)
_LATEST = (
    _ROW.where(ModelVersion.name == bindparam("name"), ModelVersion.deleted_at.is_(None))
    .order_by(ModelVersion.version.desc())
    .limit(1)
)
_BY_ALIAS = _ROW.join(
    ModelAlias,
    (ModelAlias.name == ModelVersion.name) & (ModelAlias.version == ModelVersion.version),
).where(
    ModelAlias.name == bindparam("name"),
    ModelAlias.alias == bindparam("alias"),
    ModelVersion.deleted_at.is_(None),
)


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
        self._guard = threading.Lock()  # _entries and the counters (threads and the loop)
        self._load_locks: dict[Key, anyio.Lock] = {}  # event loop only
        self._resolved: OrderedDict[RowKey, ResolvedVersion] = OrderedDict()  # by registry row
        self.batchers = Batchers()  # coalesced sampling requests, by model name; event loop only

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    async def get(self, name: str, ref: str) -> CachedGenerator:
        """The generator of the live version `ref` ("3", "latest", an alias) of model `name`."""
        resolved = await anyio.to_thread.run_sync(self.resolve, name, ref)
        return self.lookup(resolved) or await self.load(resolved)

    def resolve(self, name: str, ref: str) -> ResolvedVersion:
        """Read the registry (blocking: call it from a thread); NotFoundError names what exists.

        One lean query finds the live row `ref` names (id, number, folder); a row seen before
        is answered from memory, since a registered row's description never changes. Anything
        else (a new row, no row) takes the full path, which parses the description, or
        raises the NotFoundError that lists the versions and aliases there are.
        """
        found = self._find_live(name, ref)
        if found is not None:
            with self._guard:
                known = self._resolved.get(found)
                if known is not None:
                    self._resolved.move_to_end(found)
                    return known
        resolved, row_key = self._resolve_row(name, ref)
        with self._guard:
            self._resolved[row_key] = resolved
            while len(self._resolved) > _RESOLVED_ROWS:
                self._resolved.popitem(last=False)
        return resolved

    def _find_live(self, name: str, ref: str) -> RowKey | None:
        """(id, name, number, folder) of the live version `ref` names; None if there is none.

        The same reading of `ref` as store.registry.resolve: a number ("3", "v3"), `latest`
        (the newest live version) or a stored alias.
        """
        number = _VERSION_REF.fullmatch(ref.strip().lower())
        if number is not None:
            statement, params = _BY_NUMBER, {"name": name, "version": int(number.group(1))}
        elif ref == store_registry.LATEST:
            statement, params = _LATEST, {"name": name}
        else:
            statement, params = _BY_ALIAS, {"name": name, "alias": ref}
        with self.store.engine.connect() as connection:
            row = connection.execute(statement, params).first()
        return None if row is None else (int(row[0]), name, int(row[1]), str(row[2]))

    def _resolve_row(self, name: str, ref: str) -> tuple[ResolvedVersion, RowKey]:
        with self.store.session() as session:
            row = registry.resolve_version(session, name, ref)
            row_key = (row.id, row.name, row.version, row.artifact_path)
            name, version, path = row.name, row.version, row.artifact_path
            description = dict(row.description or {})
        if "spec" not in description or "sha256" not in description:
            # Registered without the export's description: its generator.json is authoritative.
            description = self._read_description(path)
        try:
            spec = ModelSpec.from_dict(description["spec"])
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"model {name!r} v{version} has an unusable spec: {exc}") from exc
        resolved = ResolvedVersion(name, version, path, spec, description, _identity(description))
        return resolved, row_key

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

    async def load(self, resolved: ResolvedVersion) -> CachedGenerator:
        """Load `resolved` (once, however many requests ask at the same time) and cache it."""
        key = resolved.key
        lock = self._load_locks.setdefault(key, anyio.Lock())
        try:
            async with lock:
                entry = self.lookup(resolved)  # loaded by the request we waited for
                if entry is not None:
                    return entry
                entry = await anyio.to_thread.run_sync(self._load_files, resolved)
                self._insert(entry)
                return entry
        finally:
            if not lock.locked() and lock.statistics().tasks_waiting == 0:
                self._load_locks.pop(key, None)

    def invalidate(self, name: str, version: int) -> bool:
        """Forget a version (it was deleted); True if it was loaded."""
        with self._guard:
            return self._entries.pop((name, version), None) is not None

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
