"""Placeholder: replaced by the generator cache (owner: sampling)."""

from __future__ import annotations

from ganserve.store import Store


class GeneratorCache:
    def __init__(self, store: Store, capacity: int) -> None:
        self.store = store
        self.capacity = capacity
