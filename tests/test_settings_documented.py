"""Every setting is documented in .env.example and nothing there is stale."""

from __future__ import annotations

import re
from pathlib import Path

from ganserve.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
ALIASES = {"database_url": "DATABASE_URL", "redis_url": "REDIS_URL"}
COMPOSE_ONLY = {"POSTGRES_PASSWORD", "REDIS_PASSWORD"}  # read by docker compose, not ganserve


def _documented() -> set[str]:
    text = (ROOT / ".env.example").read_text()
    return set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", text, flags=re.MULTILINE))


def test_env_example_lists_every_setting_and_only_settings() -> None:
    expected = {ALIASES.get(name, f"GANSERVE_{name.upper()}") for name in Settings.model_fields}
    assert _documented() - COMPOSE_ONLY == expected
