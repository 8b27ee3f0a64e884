"""Bulk export files: a zip of PNGs with labels.csv, or an .npz of arrays.

Pixels come from `gan.sample.sample_images` (the one pipeline), so every PNG in a zip is the
bytes samples.png gives for its seed. Same request -> same bytes: zips carry fixed timestamps.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Sequence

import numpy as np

from ganserve.gan.models import Generator
from ganserve.gan.sample import encode_png, sample_images
from ganserve.service.errors import InvalidInputError
from ganserve.service.registry.versions import class_names

ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed zip timestamps: equal requests, equal bytes
MEDIA_TYPES = {"zip": "application/zip", "npz": "application/octet-stream"}


def bulk_filename(name: str, version: int, seeds: Sequence[int], fmt: str) -> str:
    return f"{name}-v{version}-seed{seeds[0]}-n{len(seeds)}.{fmt}"


def png_name(index: int, seed: int) -> str:
    return f"{index:06d}_seed{seed}.png"


def bulk_file(
    generator: Generator,
    seeds: Sequence[int],
    labels: Sequence[int] | None,
    truncation: float | None,
    fmt: str,
) -> bytes:
    """A zip of PNGs + labels.csv, or an .npz.

    npz arrays: images (N, H, W, C) uint8, labels (N,) int64 (-1 for unconditional models),
    seeds (N,) int64.
    """
    if fmt == "zip":
        return _bulk_zip(generator, seeds, labels, truncation)
    if fmt == "npz":
        return _bulk_npz(generator, seeds, labels, truncation)
    raise InvalidInputError(f"format: must be 'zip' or 'npz', got {fmt!r}", field="format")


def _zip_info(name: str, compress_type: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
    info.compress_type = compress_type
    info.create_system = 3  # unix, whatever the host
    info.external_attr = 0o644 << 16
    return info


def _bulk_zip(
    generator: Generator,
    seeds: Sequence[int],
    labels: Sequence[int] | None,
    truncation: float | None,
) -> bytes:
    names = class_names(generator.spec)
    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    writer.writerow(["file", "seed", "label", "class_name"])
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        index = 0
        for images, chunk_labels in sample_images(generator, seeds, labels, truncation):
            for row, image in enumerate(images):
                file = png_name(index, seeds[index])
                # PNGs are compressed already: stored, not deflated again
                archive.writestr(_zip_info(file, zipfile.ZIP_STORED), encode_png(image))
                label = None if chunk_labels is None else chunk_labels[row]
                writer.writerow(
                    [file, seeds[index], "" if label is None else label]
                    + ["" if label is None else names[label]]
                )
                index += 1
        archive.writestr(_zip_info("labels.csv", zipfile.ZIP_DEFLATED), table.getvalue())
    return buffer.getvalue()


def _bulk_npz(
    generator: Generator,
    seeds: Sequence[int],
    labels: Sequence[int] | None,
    truncation: float | None,
) -> bytes:
    c, h, w = generator.spec.image_shape
    images = np.empty((len(seeds), h, w, c), dtype=np.uint8)
    all_labels = np.full(len(seeds), -1, dtype=np.int64)
    start = 0
    for chunk, chunk_labels in sample_images(generator, seeds, labels, truncation):
        images[start : start + len(chunk)] = chunk.numpy()
        if chunk_labels is not None:
            all_labels[start : start + len(chunk)] = chunk_labels
        start += len(chunk)
    arrays: dict[str, np.ndarray] = {
        "images": images,
        "labels": all_labels,
        "seeds": np.asarray(seeds, dtype=np.int64),
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for key, array in arrays.items():
            info = _zip_info(f"{key}.npy", zipfile.ZIP_DEFLATED)
            with archive.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, array, allow_pickle=False)
    return buffer.getvalue()
