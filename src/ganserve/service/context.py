"""What one API process holds for its lifetime, built in the app's lifespan."""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio

from ganserve.service.jobs.queue import TrainingQueue
from ganserve.service.sampling.generator_cache import GeneratorCache
from ganserve.settings import Settings
from ganserve.store import Store


@dataclass
class AppContext:
    settings: Settings
    store: Store
    queue: TrainingQueue
    redis: redis.asyncio.Redis
    generators: GeneratorCache
