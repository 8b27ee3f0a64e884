"""What one API process holds for its lifetime, built in the app's lifespan."""

from __future__ import annotations

from dataclasses import dataclass, field

import redis.asyncio

from ganserve.service.jobs.queue import TrainingQueue
from ganserve.service.sampling.batching import Batchers
from ganserve.service.sampling.generator_cache import GeneratorCache
from ganserve.settings import Settings
from ganserve.store import Store


@dataclass
class AppContext:
    settings: Settings
    store: Store
    queue: TrainingQueue
    redis: redis.asyncio.Redis
    generators: GeneratorCache  # loaded generators, LRU (service/sampling/generator_cache.py)
    # Coalesced samples.png requests, one batcher per model name; event loop only.
    batchers: Batchers = field(default_factory=Batchers)
