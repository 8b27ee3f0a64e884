"""Loading (issue 5, item 7): the API reads generators from safetensors only, and refuses to
start when torch.load could be made to unpickle code."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import ganserve.service
from ganserve.service.app import StartupError, create_app
from ganserve.settings import Settings


@pytest.mark.parametrize("value", ["1", "true"])
def test_the_api_refuses_to_start_when_weights_only_can_be_overridden(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", value)
    app = create_app(Settings(data_dir=tmp_path / "data", redis_url=redis_url))
    with pytest.raises(StartupError, match="TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"), TestClient(app):
        pass


def test_no_service_module_calls_torch_load_or_pickle() -> None:
    """Served generators come from safetensors (gan.checkpoint.load_generator), never pickle."""
    offenders = []
    for path in Path(ganserve.service.__file__).parent.rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr == "load":
                owner = node.value
                if isinstance(owner, ast.Name) and owner.id in ("torch", "pickle"):
                    offenders.append(f"{path.name}:{node.lineno}")
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [alias.name for alias in node.names]
                module = getattr(node, "module", None) or ""
                if "pickle" in names or module == "pickle":
                    offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == []
