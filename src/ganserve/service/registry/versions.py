"""The model registry over HTTP: list, show, delete versions, set and delete aliases.

Functions take a session (and what else they touch) and return response models; the routes
only call them. Errors name what exists: an unknown model lists the registered models, an
unknown version or alias lists the model's versions and aliases.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from ganserve.gan.checkpoint import EXPORT_DESCRIPTION, EXPORT_WEIGHTS
from ganserve.gan.config import ModelSpec
from ganserve.gan.translation.translate import (
    TRANSLATOR_DESCRIPTION,
    TRANSLATOR_FORMAT,
    TRANSLATOR_WEIGHTS,
)
from ganserve.service.errors import NotFoundError
from ganserve.service.registry.schemas import (
    AliasOut,
    ModelList,
    ModelOut,
    ModelSummaryOut,
    NoiseOut,
    VersionOut,
)
from ganserve.store import ArtifactStore, ModelVersion, RecordNotFoundError, Session, StoreError
from ganserve.store import registry as store_registry
from ganserve.store.names import validate_settable_alias

log = logging.getLogger(__name__)

# Model names listed in a 404 at most.
_NAMES_SHOWN = 20


def list_models(session: Session) -> ModelList:
    return ModelList(
        items=[
            ModelSummaryOut(
                name=m.name,
                latest_version=m.latest_version,
                versions=m.versions,
                aliases=m.aliases,
                created_at=m.created_at,
                updated_at=m.updated_at,
            )
            for m in store_registry.list_models(session)
        ]
    )


def get_model(session: Session, name: str) -> ModelOut:
    with explain_not_found(session):
        detail = store_registry.get_model(session, name)
    return ModelOut(
        name=detail.name,
        latest_version=detail.latest_version,
        aliases=detail.aliases,
        created_at=detail.created_at,
        updated_at=detail.updated_at,
        versions=[version_out(v, detail.aliases) for v in detail.versions],
    )


def get_version(session: Session, name: str, version: int) -> VersionOut:
    with explain_not_found(session):
        detail = store_registry.get_model(session, name)
        row = store_registry.get_version(session, name, version)
    return version_out(row, detail.aliases)


def resolve_version(session: Session, name: str, ref: str) -> ModelVersion:
    """The live version `ref` ("3", "v3", "latest", an alias) names; 404 naming what exists."""
    with explain_not_found(session, field="version"):
        return store_registry.resolve(session, name, ref)


def delete_version(session: Session, artifacts: ArtifactStore, name: str, version: int) -> None:
    """Soft-delete a version (its number is never reused) and remove its exported files.

    `latest` then names the newest remaining version. The route drops it from the API's
    generator cache.
    """
    with explain_not_found(session):
        row = store_registry.delete_version(session, name, version)
    shared = _folder_still_used(session, name, row.artifact_path)
    session.commit()
    if not shared:
        _remove_export(artifacts, row.artifact_path)


def set_alias(session: Session, name: str, alias: str, version: int) -> AliasOut:
    validate_settable_alias(alias)  # `best` is the workers' to move
    with explain_not_found(session):
        store_registry.set_alias(session, name, alias, version)
        aliases = store_registry.get_model(session, name).aliases
    return AliasOut(name=name, alias=alias, version=version, aliases=aliases)


def delete_alias(session: Session, name: str, alias: str) -> None:
    validate_settable_alias(alias)
    with explain_not_found(session, field="alias"):
        store_registry.delete_alias(session, name, alias)


def version_out(row: ModelVersion, aliases: dict[str, int]) -> VersionOut:
    description = row.description or {}
    common: dict[str, Any] = {
        "name": row.name,
        "version": row.version,
        "job_id": row.job_id,
        "step": row.step,
        "created_at": row.created_at,
        "aliases": sorted(a for a, v in aliases.items() if v == row.version),
        "dataset": description.get("dataset"),
        "sha256": description.get("sha256"),
        "metrics": dict(row.metrics or {}),
    }
    if description.get("format") == TRANSLATOR_FORMAT:
        return VersionOut(**common, **_translator_fields(description))
    spec = _spec_of(description)
    return VersionOut(
        **common,
        kind="noise",
        domains=None,
        architecture=spec.architecture if spec else None,
        image_shape=list(spec.image_shape) if spec else None,
        conditional=spec.conditional if spec else None,
        classes=class_names(spec) if spec else [],
        noise=NoiseOut(
            dim=spec.noise_dim,
            distribution=spec.noise_distribution,
            sampling_contract=spec.sampling_contract,
        )
        if spec
        else None,
    )


def _translator_fields(description: dict[str, Any]) -> dict[str, Any]:
    """A CycleGAN version: image-to-image, no noise; its two domains."""
    spec = description.get("spec") or {}
    channels, size = spec.get("channels"), spec.get("image_size")
    return {
        "kind": "translation",
        "domains": [str(spec.get("domain_a", "a")), str(spec.get("domain_b", "b"))],
        "architecture": "cyclegan",
        "image_shape": [channels, size, size] if channels and size else None,
        "conditional": False,
        "classes": [],
        "noise": None,
    }


def class_names(spec: ModelSpec) -> list[str]:
    """Names of a conditional model's classes (their numbers when it has none); [] otherwise."""
    if not spec.conditional:
        return []
    return list(spec.class_names) or [str(i) for i in range(spec.num_classes)]


@contextlib.contextmanager
def explain_not_found(session: Session, field: str | None = None) -> Iterator[None]:
    """Turn the store's NotFoundError into a 404 that names the models, versions or aliases."""
    try:
        yield
    except RecordNotFoundError as exc:
        if exc.kind == "model":
            names = [m.name for m in store_registry.list_models(session)]
            shown = ", ".join(names[:_NAMES_SHOWN]) + (" ..." if len(names) > _NAMES_SHOWN else "")
            known = f"registered models: {shown}" if names else "no model is registered yet"
            raise NotFoundError(
                f"model {exc.key!r} not found; {known}", field="name", models=names[:100]
            ) from exc
        raise NotFoundError(str(exc), field=field or _FIELDS.get(exc.kind)) from exc


_FIELDS = {"model version": "version", "model alias": "alias"}


def _spec_of(description: dict[str, Any]) -> ModelSpec | None:
    try:
        return ModelSpec.from_dict(description["spec"])
    except (KeyError, TypeError, ValueError):
        return None


def _folder_still_used(session: Session, name: str, artifact_path: str) -> bool:
    """Whether another live version of the model was registered from the same folder."""
    try:
        versions = store_registry.get_model(session, name).versions
    except RecordNotFoundError:  # that was its last version
        return False
    return any(v.artifact_path == artifact_path for v in versions)


def _remove_export(artifacts: ArtifactStore, artifact_path: str) -> None:
    """Delete an exported generator's two files (description first) and, if empty, its folder.

    Only those files: the folder may sit in a job dir next to checkpoints worth keeping.
    """
    try:
        folder = artifacts.absolute(artifact_path)
        for filename in (EXPORT_DESCRIPTION, EXPORT_WEIGHTS, TRANSLATOR_DESCRIPTION,
                         TRANSLATOR_WEIGHTS):  # fmt: skip
            (folder / filename).unlink(missing_ok=True)
        if folder.is_dir() and folder != artifacts.root and not any(folder.iterdir()):
            folder.rmdir()
    except (OSError, StoreError) as exc:
        log.warning("could not remove the files of a deleted version (%s): %s", artifact_path, exc)
