"""Routes: datasets (DESIGN §4 Datasets): the built-ins and the uploads in the data dir."""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import APIRouter

from ganserve.gan.data import BUILTIN_DATASETS, UPLOAD_NAME_PATTERN, describe_dataset
from ganserve.gan.errors import DatasetError
from ganserve.service.deps import SettingsDep
from ganserve.service.schemas import DatasetList, DatasetOut

log = logging.getLogger(__name__)

router = APIRouter(tags=["datasets"])


@router.get("/v1/datasets", summary="Built-in and uploaded datasets")
def list_datasets(settings: SettingsDep) -> DatasetList:
    """Every built-in (with whether its files are present) and every uploaded dataset."""
    return dataset_list(settings.data_dir)


def dataset_list(data_dir: Path) -> DatasetList:
    """The built-ins in their usual order, then the uploads by name (file headers only)."""
    uploads = sorted(
        path.stem
        for path in (data_dir / "datasets").glob("*.npz")
        if UPLOAD_NAME_PATTERN.fullmatch(path.stem) and path.stem not in BUILTIN_DATASETS
    )
    return DatasetList(items=[_describe(name, data_dir) for name in (*BUILTIN_DATASETS, *uploads)])


def _describe(name: str, data_dir: Path) -> DatasetOut:
    try:
        info = describe_dataset(name, data_dir)
    except DatasetError as error:  # an unreadable upload: listed, marked unavailable
        log.warning("dataset %s is unreadable: %s", name, error)
        return DatasetOut(
            name=name, builtin=False, available=False, image_size=0, channels=0, classes=[],
            num_classes=0, size=0, hint=str(error),
        )  # fmt: skip
    return DatasetOut(
        name=name,
        builtin=info["builtin"],
        available=info["available"],
        image_size=info["image_size"],
        channels=info["channels"],
        classes=info["classes"],
        num_classes=len(info["classes"]),
        size=info["size"],
        hint=info["missing_files_hint"],
    )
