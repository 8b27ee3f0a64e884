"""A Python client generated from /openapi.json (openapi-python-client) against a real server.

Generation must print no warning: every operation, body and response comes through. The
client then does what a user's program would: submit with an Idempotency-Key (and retry it),
poll the job to success, fetch a PNG as bytes from the parsed response, and parse a 404 and
a 422 as problem details.
"""

from __future__ import annotations

import importlib
import json
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Stack

# Media types the generator reads as raw bytes (it knows application/octet-stream only).
CONFIG = "content_type_overrides:\n  application/zip: application/octet-stream\n"
CONFIG += "  image/png: application/octet-stream\n"
CONFIG += "  image/jpeg: application/octet-stream\n"
# No formatting hooks: they need ruff on PATH, which a test run from a venv need not have.
CONFIG += "post_hooks: []\n"
PACKAGE = "ganserve_generated_client"


@pytest.fixture(scope="module")
def generated(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    root = tmp_path_factory.mktemp("client")
    (root / "openapi.json").write_text(json.dumps(httpx.get(f"{stack.url}/openapi.json").json()))
    (root / "config.yml").write_text(CONFIG)
    generator = shutil.which("openapi-python-client") or str(
        Path(sys.executable).parent / "openapi-python-client"
    )
    result = subprocess.run(
        [generator, "generate", "--path", "openapi.json", "--meta", "none",
         "--output-path", PACKAGE, "--config", "config.yml"],
        cwd=root, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "warning" not in output.lower(), output
    sys.path.insert(0, str(root))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(root))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
            del sys.modules[name]


@pytest.mark.parametrize("stack", ["sqlite"], indirect=True)
def test_a_generated_client_submits_polls_samples_and_parses_problems(
    stack: Stack, generated: Any
) -> None:
    api = importlib.import_module(f"{PACKAGE}.api.jobs")
    models_api = importlib.import_module(f"{PACKAGE}.api.models")
    types = importlib.import_module(f"{PACKAGE}.models")
    for module in ("submit_job", "get_job", "list_jobs"):
        importlib.import_module(f"{PACKAGE}.api.jobs.{module}")
    for module in ("sample_png", "get_model"):
        importlib.import_module(f"{PACKAGE}.api.models.{module}")
    client = generated.AuthenticatedClient(base_url=stack.url, token="unused", timeout=60.0)

    spec = types.TrainSpec.from_dict(
        {"name": "generated-client", "dataset": "digits", "steps": 3, "batch_size": 16,
         "checkpoint_every": 3, "sample_every": 3}
    )  # fmt: skip
    key = str(uuid.uuid4())
    first = api.submit_job.sync_detailed(client=client, body=spec, idempotency_key=key)
    assert first.status_code == 202 and isinstance(first.parsed, types.JobOut)
    retry = api.submit_job.sync_detailed(client=client, body=spec, idempotency_key=key)
    assert retry.status_code == 200 and retry.parsed.id == first.parsed.id

    deadline = time.monotonic() + 300
    job = first.parsed
    while job.status.value not in ("succeeded", "failed", "cancelled"):
        assert time.monotonic() < deadline, "the job did not finish in 300 s"
        time.sleep(0.5)
        job = api.get_job.sync(job_id=first.parsed.id, client=client)
    assert job.status.value == "succeeded", job.error

    png = models_api.sample_png.sync_detailed(name="generated-client", client=client, seed=3)
    assert png.status_code == 200
    assert png.parsed.payload.read().startswith(b"\x89PNG\r\n\x1a\n")

    missing = models_api.get_model.sync_detailed(name="no-such-model", client=client)
    assert missing.status_code == 404 and isinstance(missing.parsed, types.Problem)
    assert missing.parsed.status == 404 and "no-such-model" in missing.parsed.detail
    invalid = api.list_jobs.sync_detailed(client=client, limit=0)
    assert invalid.status_code == 422 and isinstance(invalid.parsed, types.Problem)
    assert invalid.parsed.field == "limit"
