from __future__ import annotations

import pytest
import torch

from ganserve.gan.data import ImageDataset, load_digits


@pytest.fixture(scope="session")
def digits() -> ImageDataset:
    return load_digits()


@pytest.fixture(autouse=True)
def _single_thread() -> None:
    # Bit-exact comparisons and speed on a 2-core machine.
    torch.set_num_threads(1)
