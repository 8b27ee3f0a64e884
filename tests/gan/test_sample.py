from __future__ import annotations

import copy
import io
from pathlib import Path

import pytest
import torch
from PIL import Image

from ganserve.gan import sample as pipeline
from ganserve.gan.bundle import module_tensors
from ganserve.gan.checkpoint import export_generator, load_generator
from ganserve.gan.config import ModelSpec, TrainConfig
from ganserve.gan.errors import ConfigError
from ganserve.gan.models import Generator
from ganserve.gan.sample import (
    encode_png,
    interpolation_noise,
    make_grid,
    make_noise,
    noise_for_seed,
    sample_png,
    upscale,
)
from ganserve.gan.state import build_state

SPEC = ModelSpec("mlp", 1, 8, 16, "normal")
COND = ModelSpec("mlp", 3, 8, 16, "normal", num_classes=10)


def _generator(spec: ModelSpec) -> Generator:
    torch.manual_seed(0)
    return Generator(spec).eval()


def _png(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def test_same_seed_same_bytes_other_seed_other_bytes() -> None:
    g = _generator(SPEC)
    a, b, c = (sample_png(g, [seed]) for seed in (7, 7, 8))
    assert a == b and a != c
    assert a.startswith(b"\x89PNG\r\n\x1a\n")
    assert _png(a).size == (8, 8) and _png(a).mode == "L"


def test_noise_is_per_seed_not_per_batch() -> None:
    alone, _ = make_noise([5], SPEC)
    batch, _ = make_noise([1, 5, 9], SPEC)
    assert torch.equal(alone[0], batch[1])


def test_uniform_noise_range_and_normal_statistics() -> None:
    z, _ = noise_for_seed(0, 20000, "uniform")
    assert z.min() >= -1 and z.max() <= 1 and z.min() < -0.99 and z.max() > 0.99
    z, _ = noise_for_seed(0, 20000, "normal")
    assert abs(z.mean().item()) < 0.03 and abs(z.std().item() - 1) < 0.03


def test_contract_1_truncation_resamples_outliers_and_keeps_the_rest() -> None:
    full, _ = noise_for_seed(3, 500, "normal")
    cut, _ = noise_for_seed(3, 500, "normal", truncation=0.5, contract=1)
    assert cut.abs().max() <= 0.5
    inside = full.abs() <= 0.5
    assert torch.equal(full[inside], cut[inside])
    with pytest.raises(ConfigError, match="truncation: must be a positive number"):
        make_noise([1], SPEC, truncation=0.0)


def test_grid_layout_and_upscaling() -> None:
    g = _generator(COND)
    png = sample_png(g, list(range(10)), nrow=4, scale=3)
    # 3 rows x 4 columns of 8 px images with 1 px padding, times 3
    assert _png(png).size == ((4 * 9 + 1) * 3, (3 * 9 + 1) * 3)
    assert _png(png).mode == "RGB"
    images = torch.arange(2 * 2 * 2, dtype=torch.uint8).view(2, 2, 2, 1)
    grid = make_grid(images, nrow=2)
    assert grid.shape == (4, 7, 1) and grid[1, 1, 0] == 0 and grid[1, 4, 0] == 4
    assert upscale(grid, 2).shape == (8, 14, 1)


def test_labels_select_classes() -> None:
    g = _generator(COND)
    _, labels = make_noise([1, 2, 3], COND, labels=[4, None, 9])
    assert labels is not None and labels[0] == 4 and labels[2] == 9 and 0 <= labels[1] < 10
    assert sample_png(g, [1], labels=[3]) != sample_png(g, [1], labels=[4])
    assert sample_png(g, [1], labels=[3]) == sample_png(g, [1], labels=[3])
    with pytest.raises(ConfigError, match="label: must be between 0 and 9"):
        make_noise([1], COND, labels=[10])
    with pytest.raises(ConfigError, match="label: this model is not conditional"):
        make_noise([1], SPEC, labels=[1])


def test_interpolation_ends_at_both_seeds() -> None:
    path = interpolation_noise(1, 2, 5, SPEC)
    a, _ = noise_for_seed(1, 16, "normal")
    b, _ = noise_for_seed(2, 16, "normal")
    assert path.shape == (5, 16)
    assert torch.allclose(path[0], a, atol=1e-5) and torch.allclose(path[-1], b, atol=1e-5)
    # spherical: the midpoint keeps a norm between the ends, unlike the linear midpoint
    assert path[2].norm() > ((a + b) / 2).norm()
    uniform = ModelSpec("mlp", 1, 8, 16, "uniform")
    lin = interpolation_noise(1, 2, 3, uniform)
    assert torch.allclose(lin[1], (lin[0] + lin[2]) / 2, atol=1e-6)
    with pytest.raises(ConfigError, match="steps"):
        interpolation_noise(1, 2, 1, SPEC)


def test_encode_png_rejects_wrong_shapes() -> None:
    with pytest.raises(ValueError, match="expected"):
        encode_png(torch.zeros(4, 4, 2, dtype=torch.uint8))


# ----------------------------------------------------------------------------- forward passes
# Fixed-shape passes: what makes an image's bits independent of what it is rendered with.

DIGITS = ModelSpec("mlp", 1, 8, 100, "normal")  # the shapes of the API tests' digits model
DIGITS_COND = ModelSpec("mlp", 1, 8, 100, "normal", num_classes=10)

ALL = (4, 8, 16, 32, 64)


@pytest.mark.parametrize(
    ("count", "sizes", "expected"),
    [
        (1, (16,), [(0, 16)]),
        (40, (16,), [(0, 16), (16, 16), (32, 16)]),
        (1, ALL, [(0, 4)]),
        (5, ALL, [(0, 8)]),
        (16, ALL, [(0, 16)]),
        (17, ALL, [(0, 32)]),
        (33, ALL, [(0, 64)]),
        (64, ALL, [(0, 64)]),
        (90, ALL, [(0, 64), (64, 32)]),
        (130, ALL, [(0, 64), (64, 64), (128, 4)]),
        (20, (8, 16), [(0, 16), (16, 8)]),
        (0, ALL, []),
    ],
)
def test_pass_plan(count: int, sizes: tuple[int, ...], expected: list[tuple[int, int]]) -> None:
    assert pipeline.plan(count, sizes) == expected


def test_pass_sizes_are_used_only_where_they_were_found_exact() -> None:
    generator = _generator(DIGITS_COND)
    sizes = pipeline.exact_sizes(generator)  # measured on this machine, then kept
    assert pipeline.REFERENCE_ROWS in sizes and 64 in sizes  # the MLP's are exact here
    shapes: list[int] = []
    hook = generator.register_forward_hook(lambda _m, args, _out: shapes.append(len(args[0])))
    z, y = make_noise(list(range(70)), generator.spec, None, [3] * 70)
    threads = torch.get_num_threads()
    try:
        mixed = pipeline.generate(generator, z, y)
        assert shapes == [64, 8]
        shapes.clear()
        pipeline._exact[generator][threads] = (
            pipeline.REFERENCE_ROWS,
        )  # as if the others differed
        reference = pipeline.generate(generator, z, y)
        assert shapes == [16] * 5
    finally:
        hook.remove()
        pipeline._exact.pop(generator, None)
    assert torch.equal(mixed, reference)


def test_a_size_that_computes_other_bits_is_not_used() -> None:
    """A generator whose output depends on its batch size (as kernels can) keeps the reference."""
    generator = _generator(DIGITS)
    original = generator.forward

    def batch_dependent(z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        out = original(z, labels)
        return out + 1e-6 if len(z) == 8 else out  # 8-row passes round differently

    generator.forward = batch_dependent  # type: ignore[method-assign]
    assert pipeline.exact_sizes(generator) == (4, 16, 32, 64)


def test_every_surface_gives_the_same_pixels_for_a_seed() -> None:
    """A seed's image alone, in a grid, in chunks (bulk), in a coalesced forward and at an
    interpolation's end: the same uint8 pixels (the API's bytes are compared with these in
    tests/service)."""
    g = _generator(COND)
    seeds = list(range(30, 100))
    labels = [i % 10 for i in range(len(seeds))]
    z, y = make_noise(seeds, COND, 0.8, labels)
    together = pipeline.generate(g, z, y)
    chunks = torch.cat([c for c, _ in pipeline.sample_images(g, seeds, labels, 0.8, chunk=7)])
    assert torch.equal(together, chunks)
    for i in (0, 5, 69):
        alone = pipeline.sample_png(g, [seeds[i]], labels=[labels[i]], truncation=0.8)
        assert alone == encode_png(together[i])
    grid = pipeline.sample_png(g, seeds[:6], labels=labels[:6], truncation=0.8, nrow=3)
    assert grid == encode_png(make_grid(together[:6], 3))
    strip = pipeline.interpolation_png(g, 1, 2, 4, label=3)
    _, h, w = COND.image_shape
    assert _png(strip).size == (4 * (w + 1) + 1, h + 2)


def test_generate_restores_training_mode_and_keeps_gradients_off() -> None:
    g = _generator(SPEC).train()
    z, _ = make_noise([1, 2, 3], SPEC)
    images = pipeline.generate(g, z)
    assert g.training and images.dtype == torch.uint8 and not images.requires_grad
    assert torch.equal(images, pipeline.generate(g.eval(), z))


def test_transposed_dense_weights_keep_every_pass_bits_and_values() -> None:
    for spec in (DIGITS_COND, ModelSpec("dcgan", 1, 16, 16, "normal", dcgan_width=8)):
        stored = _generator(spec)
        moved = copy.deepcopy(stored)
        dense = [m for m in moved.modules() if isinstance(m, torch.nn.Linear)]
        assert pipeline.transpose_dense_weights(moved) == len(dense) > 0
        for layer, before in zip(
            dense, [m for m in stored.modules() if isinstance(m, torch.nn.Linear)], strict=True
        ):
            assert not layer.weight.is_contiguous()  # (in, out) in memory
            assert layer.weight.t().is_contiguous()
            assert torch.equal(layer.weight, before.weight)  # the same values
        labels = [i % 10 for i in range(100)] if spec.conditional else None
        z, y = make_noise(list(range(100)), spec, None, labels)
        for count in (1, 3, 4, 9, 16, 40, 64, 100):  # every pass size and padding
            assert torch.equal(
                pipeline.generate(moved, z[:count], None if y is None else y[:count]),
                pipeline.generate(stored, z[:count], None if y is None else y[:count]),
            )
        # the checkpoint writer's tensors are contiguous again: an export of it loads
        assert all(t.is_contiguous() for t in module_tensors(moved).values())


def test_a_layer_whose_transposed_layout_computes_other_bits_keeps_its_layout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    linear = torch.nn.functional.linear

    def layout_dependent(
        x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None
    ) -> torch.Tensor:
        out = linear(x, weight, bias)
        return out if weight.is_contiguous() else out + 1e-6  # as another kernel could round

    generator = _generator(DIGITS)
    monkeypatch.setattr(torch.nn.functional, "linear", layout_dependent)
    assert pipeline.transpose_dense_weights(generator) == 0
    assert all(
        m.weight.is_contiguous() for m in generator.modules() if isinstance(m, torch.nn.Linear)
    )


def test_an_exported_generator_loads_transposed_and_samples_the_same_bytes(
    tmp_path: Path,
) -> None:
    state = build_state(TrainConfig(device="cpu"), DIGITS, torch.device("cpu"))
    export_generator(state, tmp_path, "digits")
    trained = state.generator_ema
    loaded = load_generator(tmp_path).generator
    dense = [m for m in loaded.modules() if isinstance(m, torch.nn.Linear)]
    assert dense and not any(m.weight.is_contiguous() for m in dense)
    seeds = list(range(70))
    assert sample_png(loaded, seeds, nrow=10) == sample_png(trained, seeds, nrow=10)
    assert sample_png(loaded, [5]) == sample_png(trained, [5])


def test_a_hooked_generator_is_called_with_its_hooks() -> None:
    generator = _generator(DIGITS)
    z, _ = make_noise(list(range(5)), DIGITS)
    unhooked = pipeline.generate(generator, z)
    seen: list[tuple[int, ...]] = []
    hook = generator.register_forward_hook(lambda _m, args, _out: seen.append(args[0].shape))
    try:
        hooked = pipeline.generate(generator, z)
    finally:
        hook.remove()
    assert seen == [(8, 100)]  # one padded 8-row pass, through nn.Module's call
    assert torch.equal(hooked, unhooked)


@pytest.mark.parametrize("channels", [1, 3])
def test_to_uint8_rounds_half_to_even_and_clamps_as_torch_does(channels: int) -> None:
    rng = torch.Generator().manual_seed(11)
    images = torch.rand(6, channels, 9, 7, generator=rng) * 2.4 - 1.2  # a little past [-1, 1]
    flat = images.view(-1)
    flat[:256] = (torch.arange(256, dtype=torch.float32) + 0.5) / 127.5 - 1.0  # near halves
    flat[256:264] = torch.tensor([-1.0, 1.0, 0.0, -0.0, 1e-8, -1e-8, 0.99999994, -0.99999994])
    expected = ((images + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)
    pixels = pipeline.to_uint8(images)
    assert pixels.shape == (6, 9, 7, channels) and pixels.dtype == torch.uint8
    assert torch.equal(pixels, expected.permute(0, 2, 3, 1))
    assert pixels.is_contiguous()
    nchw = pixels.permute(0, 3, 1, 2).reshape(-1)
    assert nchw[258] == 128 and nchw[256] == 0 and nchw[257] == 255  # 0 -> 127.5 -> even 128
