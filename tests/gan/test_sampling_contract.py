"""Sampling contracts (gan/sample.py): contract 1 keeps its bytes, contract 2 truncates in one pass.

Contract 1's values below were recorded from the redraw loop before contracts were numbered:
a model exported then must keep rendering the same images after any upgrade.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from ganserve.gan import sample as pipeline
from ganserve.gan.checkpoint import list_checkpoints, read_checkpoint, write_checkpoint
from ganserve.gan.compat import model_spec_for
from ganserve.gan.config import SAMPLING_CONTRACT, ModelSpec, TrainConfig
from ganserve.gan.data import ImageDataset
from ganserve.gan.errors import ConfigError
from ganserve.gan.sample import make_noise, noise_for_seed, truncated_noise
from ganserve.gan.train import train

V2 = ModelSpec("mlp", 1, 8, 100, "normal", num_classes=10)
V1 = ModelSpec("mlp", 1, 8, 100, "normal", num_classes=10, sampling_contract=1)


def _digest(z: torch.Tensor) -> str:
    return hashlib.sha256(z.numpy().tobytes()).hexdigest()[:16]


def _without_contract(spec: ModelSpec) -> dict[str, Any]:
    """The description a model exported before contracts were numbered carries."""
    data = spec.to_dict()
    del data["sampling_contract"]
    return data


# (seed, dim, distribution, truncation) -> (sha256 prefix of z's bytes, the next randint(10))
RECORDED_V1 = {
    (0, 100, "normal", None): ("438630ac9c044e48", 9),
    (7, 100, "normal", 0.5): ("684f50ae4921e708", 0),
    (123, 4096, "normal", 0.05): ("c0e1376de2aed66c", 6),
    (5, 16, "uniform", 0.3): ("193b211e5abf3348", 1),
    (9, 100, "uniform", None): ("20b527a18feecc53", 6),
    (2**63 - 1, 64, "normal", 1.0): ("52b896dad841bfd4", 5),
}


@pytest.mark.parametrize("case", list(RECORDED_V1), ids=str)
def test_contract_1_draws_the_recorded_bytes(case: tuple[int, int, str, float | None]) -> None:
    seed, dim, distribution, truncation = case
    z, rng = noise_for_seed(seed, dim, distribution, truncation, contract=1)
    assert (_digest(z), int(torch.randint(10, (1,), generator=rng))) == RECORDED_V1[case]


def test_an_old_description_reads_as_contract_1_with_its_recorded_noise_and_labels() -> None:
    old = ModelSpec.from_dict(_without_contract(V2))
    assert old.sampling_contract == 1 and old == V1
    z, labels = make_noise(list(range(20)), old, 0.7)
    assert _digest(z) == "7bc65c66b46847cb"
    assert labels is not None
    assert labels.tolist() == [3, 9, 4, 9, 6, 6, 6, 7, 6, 8, 1, 4, 0, 5, 8, 1, 2, 0, 8, 0]


def test_new_specs_are_contract_2_and_keep_it_through_their_description() -> None:
    assert SAMPLING_CONTRACT == 2 and V2.sampling_contract == 2
    assert V2.to_dict()["sampling_contract"] == 2
    assert ModelSpec.from_dict(V2.to_dict()) == V2
    assert ModelSpec.from_dict(V1.to_dict()) == V1
    with pytest.raises(ConfigError, match="sampling_contract: must be between 1 and 2, got 3"):
        ModelSpec.from_dict({**V2.to_dict(), "sampling_contract": 3})
    assert V1.resumes_as(V2) and V1 != V2
    assert not V1.resumes_as(ModelSpec("mlp", 1, 8, 64, "normal", num_classes=10))


def test_training_writes_contract_2(digits: ImageDataset) -> None:
    assert model_spec_for(TrainConfig(), digits).sampling_contract == 2


@pytest.mark.parametrize("distribution", ["normal", "uniform"])
def test_without_truncation_both_contracts_draw_the_same_noise_and_labels(
    distribution: str,
) -> None:
    v2 = ModelSpec("mlp", 1, 8, 100, distribution, num_classes=10)
    v1 = ModelSpec("mlp", 1, 8, 100, distribution, num_classes=10, sampling_contract=1)
    seeds = list(range(40, 90))
    z1, y1 = make_noise(seeds, v1)
    z2, y2 = make_noise(seeds, v2)
    assert torch.equal(z1, z2) and y1 is not None and y2 is not None and torch.equal(y1, y2)


@pytest.mark.parametrize("truncation", [1e-30, 0.001, 0.05, 0.5, 1.0, 2.5, 10.0, 1e9])
@pytest.mark.parametrize("distribution", ["normal", "uniform"])
def test_contract_2_stays_within_the_truncation(distribution: str, truncation: float) -> None:
    z, _ = noise_for_seed(3, 20_000, distribution, truncation, contract=2)
    assert z.dtype == torch.float32 and z.shape == (20_000,)
    assert bool(torch.isfinite(z).all())
    assert bool((z.abs() <= truncation).all())  # in float32, as the redraw loop compares
    assert float(z.abs().max()) <= truncation * (1 + 1e-6)


def _truncated_normal_std(t: float) -> float:
    """Standard deviation of N(0, 1) truncated to [-t, t]."""
    mass = math.erf(t / math.sqrt(2))  # P(|z| <= t)
    density = math.exp(-t * t / 2) / math.sqrt(2 * math.pi)
    return math.sqrt(1 - 2 * t * density / mass)


@pytest.mark.parametrize("truncation", [0.001, 0.5, 1.0, 2.0])
def test_contract_2_normal_noise_follows_the_truncated_normal(truncation: float) -> None:
    z = torch.cat([noise_for_seed(s, 10_000, "normal", truncation)[0] for s in range(20)])
    z = z.double()
    std = _truncated_normal_std(truncation)
    assert abs(float(z.mean())) < 0.01 * std
    assert float(z.std()) == pytest.approx(std, rel=0.01)
    # and its shape: the share within half the bound, against the truncated normal's
    half = math.erf(truncation / 2 / math.sqrt(2)) / math.erf(truncation / math.sqrt(2))
    assert float((z.abs() <= truncation / 2).double().mean()) == pytest.approx(half, abs=0.005)


def test_contract_2_uniform_noise_is_the_untruncated_draw_scaled() -> None:
    full, _ = noise_for_seed(4, 20_000, "uniform")
    cut, _ = noise_for_seed(4, 20_000, "uniform", 0.25, contract=2)
    assert torch.equal(cut, full * 0.25)
    assert float(cut.min()) < -0.249 and float(cut.max()) > 0.249
    same, _ = noise_for_seed(4, 20_000, "uniform", 3.0, contract=2)
    assert torch.equal(same, full)  # a bound >= 1 changes nothing, as under contract 1


def _counting(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[int]]:
    """Record the entries of every torch.rand / torch.randn call (the generator's draws)."""
    calls: dict[str, list[int]] = {"rand": [], "randn": []}
    for name in calls:
        original: Callable[..., torch.Tensor] = getattr(torch, name)

        def counted(*args: Any, _name: str = name, _original: Any = original, **kw: Any) -> Any:
            out = _original(*args, **kw)
            calls[_name].append(out.numel())
            return out

        monkeypatch.setattr(torch, name, counted)
    return calls


@pytest.mark.parametrize("truncation", [0.001, 0.05, 3.0])
def test_contract_2_draws_each_entry_once_whatever_the_truncation(
    monkeypatch: pytest.MonkeyPatch, truncation: float
) -> None:
    calls = _counting(monkeypatch)
    noise_for_seed(11, 4096, "normal", truncation, contract=2)
    assert calls == {"rand": [4096], "randn": []}  # one pass: one uniform per entry


def test_contract_1_redraws_where_contract_2_does_not(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _counting(monkeypatch)
    noise_for_seed(11, 4096, "normal", 0.05, contract=1)
    # about dim / P(|z| <= 0.05) = 25 x dim draws, in over a hundred rounds
    assert len(calls["randn"]) > 100 and sum(calls["randn"]) > 20 * 4096


def test_contract_2_consumes_a_fixed_stretch_of_the_seed_stream() -> None:
    """The generator ends where one float64 uniform per entry leaves it, for every bound."""
    expected = torch.Generator().manual_seed(5)
    torch.rand(300, generator=expected, dtype=torch.float64)
    for truncation in (0.001, 0.5, 4.0):
        rng = torch.Generator().manual_seed(5)
        truncated_noise(300, "normal", truncation, rng)
        assert torch.equal(rng.get_state(), expected.get_state())


def test_tiny_truncations_work_on_contract_2_and_are_refused_by_contract_1() -> None:
    z, _ = make_noise([1, 2, 3], V2, 0.001)
    assert z.shape == (3, 100) and float(z.abs().max()) <= 0.001
    with pytest.raises(ConfigError, match="truncation: 0.001 is too small to sample from"):
        make_noise([1], V1, 0.001)


def test_contract_2_truncation_keeps_a_seeds_default_label() -> None:
    seeds = list(range(100))
    _, untruncated = make_noise(seeds, V2)
    for truncation in (0.05, 0.7, 3.0):
        z, labels = make_noise(seeds, V2, truncation)
        assert labels is not None and untruncated is not None
        assert torch.equal(labels, untruncated)
        assert float(z.abs().max()) <= truncation
    _, v1_labels = make_noise(seeds, V1, 0.7)  # contract 1: drawn after the redraws
    assert v1_labels is not None and not torch.equal(v1_labels, untruncated)


def test_contract_2_is_deterministic_per_seed_and_independent_of_the_batch() -> None:
    alone, _ = make_noise([17], V2, 0.3)
    batch, _ = make_noise([3, 17, 99], V2, 0.3)
    again, _ = make_noise([3, 17, 99], V2, 0.3)
    assert torch.equal(alone[0], batch[1]) and torch.equal(batch, again)
    assert not torch.equal(batch[0], batch[2])


def test_interpolation_and_pictures_follow_the_models_contract() -> None:
    torch.manual_seed(0)
    g1 = pipeline.Generator(ModelSpec("mlp", 1, 8, 16, "normal", sampling_contract=1)).eval()
    g2 = pipeline.Generator(ModelSpec("mlp", 1, 8, 16, "normal")).eval()
    g2.load_state_dict(g1.state_dict())
    a1 = pipeline.interpolation_noise(1, 2, 3, g1.spec, 0.5)
    a2 = pipeline.interpolation_noise(1, 2, 3, g2.spec, 0.5)
    assert torch.equal(a1[0], noise_for_seed(1, 16, "normal", 0.5, contract=1)[0])
    assert torch.equal(a2[0], noise_for_seed(1, 16, "normal", 0.5, contract=2)[0])
    assert pipeline.sample_png(g1, [5]) == pipeline.sample_png(g2, [5])  # no truncation
    assert pipeline.sample_png(g1, [5], truncation=0.5) != pipeline.sample_png(
        g2, [5], truncation=0.5
    )


def test_a_run_checkpointed_before_contracts_resumes_and_keeps_contract_1(
    digits: ImageDataset, tmp_path: Path
) -> None:
    config = TrainConfig(steps=6, batch_size=32, device="cpu", checkpoint_every=3, sample_every=6)
    train(config.replace(steps=3), digits, tmp_path)
    (step, path), *_ = list_checkpoints(tmp_path / "checkpoints")
    payload = read_checkpoint(path)
    del payload["spec"]["sampling_contract"]  # as written before contracts were numbered
    write_checkpoint(payload, tmp_path / "checkpoints", step, keep=3)

    result = train(config, digits, tmp_path)
    assert result.state.step == 6 and result.state.spec.sampling_contract == 1
