"""The generator cache: resolve every call, LRU bounded, loads once, off the event loop."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from fastapi.testclient import TestClient

from ganserve.gan.errors import CheckpointError
from ganserve.service.app import create_app
from ganserve.service.errors import NotFoundError
from ganserve.service.registry import versions as service_registry
from ganserve.service.sampling.generator_cache import (
    CachedGenerator,
    GeneratorCache,
    ResolvedVersion,
)
from ganserve.settings import Settings
from ganserve.store import Store
from ganserve.store import registry as store_registry
from tests.service.trained_model import app_cache, app_store, register_model


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store.open(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path / "artifacts")
    yield opened
    opened.close()


def test_get_loads_once_then_hits(store: Store) -> None:
    registered = register_model(store, "digits")
    cache = GeneratorCache(store, capacity=2)

    async def main() -> tuple[CachedGenerator, CachedGenerator]:
        return await cache.get("digits", "latest"), await cache.get("digits", "1")

    first, second = anyio.run(main)
    assert first is second
    assert (cache.loads, cache.hits, cache.evictions) == (1, 1, 0)
    assert (first.name, first.version) == ("digits", 1)
    assert first.identity == registered.description["sha256"]
    assert first.description["sha256"] == registered.description["sha256"]
    assert first.spec.image_shape == (1, 8, 8)
    assert not first.generator.training
    assert all(not p.requires_grad and p.device.type == "cpu" for p in first.generator.parameters())


def test_concurrent_first_requests_load_once(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    register_model(store, "digits")
    cache = GeneratorCache(store, capacity=2)
    loaded_in: list[str] = []
    load_files = cache._load_files

    def recording_load(resolved: ResolvedVersion) -> CachedGenerator:
        loaded_in.append(threading.current_thread().name)
        return load_files(resolved)

    monkeypatch.setattr(cache, "_load_files", recording_load)
    results: list[CachedGenerator] = []

    async def fetch() -> None:
        results.append(await cache.get("digits", "latest"))

    async def main() -> str:
        async with anyio.create_task_group() as group:
            for _ in range(8):
                group.start_soon(fetch)
        return threading.current_thread().name

    loop_thread = anyio.run(main)
    assert cache.loads == 1 and loaded_in and loop_thread not in loaded_in
    assert len(loaded_in) == 1  # the other seven waited for it
    assert len(results) == 8 and all(r is results[0] for r in results)
    assert cache.hits == 7


def test_resolves_through_the_registry_every_call(store: Store) -> None:
    register_model(store, "digits")
    cache = GeneratorCache(store, capacity=4)
    assert anyio.run(cache.get, "digits", "latest").version == 1
    register_model(store, "digits", seed=1)
    assert anyio.run(cache.get, "digits", "latest").version == 2
    with store.session() as session:
        store_registry.set_alias(session, "digits", "best", 1)
    assert anyio.run(cache.get, "digits", "best").version == 1
    with store.session() as session:
        store_registry.set_alias(session, "digits", "best", 2)
    assert anyio.run(cache.get, "digits", "best").version == 2
    assert cache.loads == 2 and cache.hits == 2


def test_capacity_bounds_the_cache(store: Store) -> None:
    register_model(store, "one")
    register_model(store, "two")
    cache = GeneratorCache(store, capacity=1)
    for name in ("one", "two", "one", "one", "two"):
        anyio.run(cache.get, name, "latest")
    assert (cache.loads, cache.hits, cache.evictions) == (4, 1, 3)
    assert len(cache) == 1 and ("two", 1) in cache


def test_least_recently_used_is_evicted(store: Store) -> None:
    for name in ("a", "b", "c"):
        register_model(store, name)
    cache = GeneratorCache(store, capacity=2)
    for name in ("a", "b", "a", "c"):  # b is the least recently used when c arrives
        anyio.run(cache.get, name, "latest")
    assert ("a", 1) in cache and ("c", 1) in cache and ("b", 1) not in cache


def test_invalidate_forgets_a_version(store: Store) -> None:
    register_model(store, "digits")
    cache = GeneratorCache(store, capacity=2)
    anyio.run(cache.get, "digits", "latest")
    assert cache.invalidate("digits", 1) is True
    assert cache.invalidate("digits", 1) is False
    anyio.run(cache.get, "digits", "latest")
    assert cache.loads == 2


def test_unknown_model_or_version_names_what_exists(store: Store) -> None:
    register_model(store, "digits")
    cache = GeneratorCache(store, capacity=1)
    with pytest.raises(NotFoundError, match="registered models: digits") as missing_model:
        anyio.run(cache.get, "faces", "latest")
    assert missing_model.value.field == "name"
    with pytest.raises(NotFoundError, match="versions: 1; aliases: latest") as missing_version:
        anyio.run(cache.get, "digits", "best")
    assert missing_version.value.field == "version"
    assert cache.loads == 0


def test_files_that_differ_from_the_registry_are_refused(store: Store) -> None:
    registered = register_model(store, "digits")
    cache = GeneratorCache(store, capacity=1)
    folder = store.artifacts.absolute(registered.artifact_path)
    weights = folder / "generator.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(CheckpointError, match="sha256"):
        anyio.run(cache.get, "digits", "latest")
    assert len(cache) == 0


def test_capacity_must_be_positive(store: Store) -> None:
    with pytest.raises(ValueError, match="capacity"):
        GeneratorCache(store, capacity=0)


def test_app_cache_of_one_alternates_two_models(settings: Settings) -> None:
    small = settings.model_copy(update={"generator_cache_size": 1})
    with TestClient(create_app(small)) as client:
        register_model(app_store(client), "one")
        register_model(app_store(client), "two", seed=1)
        cache = app_cache(client)
        assert cache.capacity == 1
        bodies = {}
        for name in ("one", "two", "one", "two"):
            response = client.get(f"/v1/models/{name}/samples.png", params={"seed": 3})
            assert response.status_code == 200
            bodies.setdefault(name, set()).add(response.content)
        assert (cache.loads, cache.hits, cache.evictions) == (4, 0, 3)
        assert all(len(b) == 1 for b in bodies.values())  # reloading changes no byte
        assert bodies["one"] != bodies["two"]
        client.get("/v1/models/two/samples.png")
        assert cache.hits == 1


def test_a_version_deleted_before_it_loads_is_not_found(store: Store) -> None:
    register_model(store, "digits")
    register_model(store, "digits")
    cache = GeneratorCache(store, capacity=2)
    resolved = cache.resolve("digits", "1")
    with store.session() as session:
        service_registry.delete_version(session, store.artifacts, "digits", 1)
    with pytest.raises(NotFoundError, match="versions: 2"):
        cache.loaded(resolved)
    assert cache.loads == 0


def test_resolve_parses_a_registry_row_once(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """The lean query finds the row every call; its description is parsed the first time."""
    register_model(store, "digits")
    register_model(store, "digits", seed=1)
    cache = GeneratorCache(store, capacity=2)
    slow: list[tuple[str, str]] = []
    resolve_row = cache._resolve_row

    def counting(name: str, ref: str) -> tuple[ResolvedVersion, int]:
        slow.append((name, ref))
        return resolve_row(name, ref)

    monkeypatch.setattr(cache, "_resolve_row", counting)
    with store.session() as session:
        store_registry.set_alias(session, "digits", "best", 1)
    refs = {"1": 1, "v1": 1, " V1 ": 1, "2": 2, "latest": 2, "best": 1}
    for ref, version in refs.items():
        assert cache.resolve("digits", ref).version == version, ref
    assert slow == [("digits", "1"), ("digits", "2")]  # one parse per row
    again = {ref: cache.resolve("digits", ref) for ref in refs}
    assert len(slow) == 2 and again["latest"] is again["2"]
    with store.session() as session:  # moves and deletions are seen at once
        store_registry.set_alias(session, "digits", "best", 2)
        service_registry.delete_version(session, store.artifacts, "digits", 2)
    assert cache.resolve("digits", "latest").version == 1
    with pytest.raises(NotFoundError, match="aliases: latest"):
        cache.resolve("digits", "best")  # deleted with version 2
    with pytest.raises(NotFoundError, match="versions: 1"):
        cache.resolve("digits", "2")
    with pytest.raises(NotFoundError, match="registered models: digits"):
        cache.resolve("faces", "latest")
