"""CycleGAN core: networks, losses, the step, resume, determinism, the pair, translate."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from PIL import Image

from ganserve.gan.checkpoint import list_checkpoints
from ganserve.gan.config import TrainConfig
from ganserve.gan.data import ImageDataset, load_dataset, load_digits_on_colour, resize_images
from ganserve.gan.errors import CheckpointError, ConfigError
from ganserve.gan.losses import LOSSES
from ganserve.gan.train import Callbacks, Progress
from ganserve.gan.translation.models import (
    PatchDiscriminator,
    ResnetGenerator,
    TranslatorSpec,
    plan_for,
)
from ganserve.gan.translation.pairs import DomainPair, load_pair, reconcile
from ganserve.gan.translation.quality import (
    DIGIT_LOST,
    INPUT_IGNORED,
    DirectionReport,
    TranslationMonitor,
    TranslationReport,
)
from ganserve.gan.translation.train import (
    CycleOptions,
    CycleState,
    ImagePool,
    learning_rate,
    load_cycle_checkpoint,
    train_cyclegan,
)
from ganserve.gan.translation.translate import (
    export_translator,
    load_translator,
    to_domain,
    translate,
)

TINY_SPEC = TranslatorSpec(channels=3, image_size=16, width=4, blocks=1, d_width=4, d_layers=1)
TINY = TrainConfig(
    steps=6, batch_size=2, device="cpu", checkpoint_every=3, sample_every=3, eval_every=0
)
TINY_OPTIONS = CycleOptions(width=4, blocks=1, d_width=4, pool_size=3)


@pytest.fixture(scope="module")
def tiny_pair() -> DomainPair:
    """16 px crops of the built-in pair, 20 images per domain (fast)."""
    a, b = load_dataset("digits"), load_digits_on_colour()
    a = ImageDataset("digits", a.images[:20], a.labels[:20], a.class_names)
    b = ImageDataset("digits-on-colour", b.images[20:40], b.labels[20:40], b.class_names)
    return reconcile(a, b, image_size=16)


def _states_equal(x: CycleState, y: CycleState) -> None:
    assert x.step == y.step
    for name in ("g_ab", "g_ba", "d_a", "d_b", "g_ab_ema", "g_ba_ema", "opt_g", "opt_d"):
        sx, sy = getattr(x, name).state_dict(), getattr(y, name).state_dict()
        if name.startswith("opt"):
            sx, sy = sx["state"], sy["state"]
            for idx in sx:
                for moment in ("exp_avg", "exp_avg_sq", "step"):
                    assert torch.equal(sx[idx][moment], sy[idx][moment]), f"{name}[{idx}]"
            continue
        for key in sx:
            assert torch.equal(sx[key], sy[key]), f"{name}.{key} differs"
    for pool in ("pool_a", "pool_b"):
        px, py = getattr(x, pool).state_dict(), getattr(y, pool).state_dict()
        assert torch.equal(px["images"], py["images"])
    assert torch.equal(x.noise_rng.get_state(), y.noise_rng.get_state())


# ----------------------------------------------------------------------------- networks


@pytest.mark.parametrize(("size", "h", "w"), [(32, 32, 32), (32, 48, 24), (8, 8, 12)])
def test_generator_keeps_shape_and_range(size: int, h: int, w: int) -> None:
    plan = plan_for(size)
    spec = TranslatorSpec(channels=3, image_size=size, width=4, blocks=plan.blocks,
                          downsamplings=plan.downsamplings, d_layers=plan.d_layers)  # fmt: skip
    out = ResnetGenerator(spec)(torch.randn(2, 3, h, w))
    assert out.shape == (2, 3, h, w)
    assert out.abs().max() <= 1.0


def test_patch_discriminator_gives_a_logit_per_patch() -> None:
    spec = TranslatorSpec(channels=3, image_size=32, d_width=8, d_layers=2)
    # 32 -> 16 -> 8 -> 7 -> 6: a 6 x 6 map of patch logits
    assert PatchDiscriminator(spec)(torch.randn(3, 3, 32, 32)).shape == (3, 1, 6, 6)
    one = TranslatorSpec(channels=1, image_size=8, downsamplings=1, d_width=8, d_layers=1)
    assert PatchDiscriminator(one)(torch.randn(2, 1, 8, 8)).shape == (2, 1, 2, 2)


def test_plan_scales_with_image_size() -> None:
    assert (plan_for(32).blocks, plan_for(32).downsamplings, plan_for(32).d_layers) == (3, 2, 2)
    assert (plan_for(128).blocks, plan_for(256).blocks, plan_for(256).d_layers) == (6, 9, 3)
    assert plan_for(8).downsamplings == 1


def test_spec_rejects_a_size_below_twice_the_stride() -> None:
    with pytest.raises(ConfigError, match="image_size"):
        TranslatorSpec(channels=3, image_size=8, downsamplings=3)
    with pytest.raises(ConfigError, match="channels"):
        TranslatorSpec(channels=4, image_size=32)


def test_lsgan_loss_values() -> None:
    real, fake = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    assert LOSSES["lsgan"].d_loss(real, fake).item() == pytest.approx(0.5 * (0.5 + 0.5))
    assert LOSSES["lsgan"].g_loss(torch.tensor([1.0, 3.0])).item() == pytest.approx(2.0)


def test_options_validate_and_name_the_field() -> None:
    with pytest.raises(ConfigError, match="loss.*lsgan"):
        CycleOptions(loss="mse")
    with pytest.raises(ConfigError, match="lambda_cycle"):
        CycleOptions(lambda_cycle=-1.0)
    with pytest.raises(ConfigError, match="lr_decay"):
        CycleOptions(lr_decay="cosine")
    with pytest.raises(ConfigError, match="pool_size"):
        CycleOptions(pool_size=10_000)


def test_linear_decay_reaches_zero_at_the_last_step() -> None:
    config, options = TrainConfig(steps=100), CycleOptions(lr_decay="linear", lr_decay_start=0.5)
    assert learning_rate(2e-4, 0, config, options) == 2e-4
    assert learning_rate(2e-4, 49, config, options) == 2e-4
    assert learning_rate(2e-4, 75, config, options) == pytest.approx(1e-4)
    assert learning_rate(2e-4, 100, config, options) == 0.0
    assert learning_rate(2e-4, 99, config, CycleOptions()) == 2e-4


def test_image_pool_passes_through_until_full_then_mixes_history() -> None:
    pool, rng = ImagePool(4), torch.Generator().manual_seed(0)
    first = torch.arange(4.0).view(4, 1, 1, 1)
    assert torch.equal(pool.query(first, rng), first)  # filling: returned as given
    later = torch.full((64, 1, 1, 1), 100.0)
    out = pool.query(later, rng)
    old = (out < 100).sum().item()
    assert 0 < old < 64  # about half come from the history
    assert pool.count == 4
    assert torch.equal(ImagePool(0).query(later, rng), later)


# ----------------------------------------------------------------------------- the pair


def test_builtin_pair_is_deterministic_and_labelled() -> None:
    pair = load_pair("digits", None)
    assert pair.a.image_shape == pair.b.image_shape == (3, 32, 32)
    assert pair.class_names == tuple(str(d) for d in range(10))
    # A is grey made RGB; B is coloured
    assert torch.equal(pair.a.images[:, 0], pair.a.images[:, 2])
    assert not torch.equal(pair.b.images[:, 0], pair.b.images[:, 2])
    again = load_digits_on_colour()
    assert torch.equal(again.images, pair.b.images)
    assert again.content_hash() == pair.b.content_hash()
    digits = load_dataset("digits")
    assert torch.equal(again.labels, digits.labels)
    assert again.images.float().std() > 40
    # (patch + digit + 1) // 2: the background is the photo at half brightness (<= 128), a
    # full-ink stroke pixel is at least 128, and every digit is brighter than its background
    ink = resize_images(digits.images, 32).expand(-1, 3, -1, -1)  # (N, 3, 32, 32)
    out = again.images
    assert out[ink == 0].max() <= 128 and out[ink == 255].min() >= 128
    assert (out[ink == 0] != out[ink == 0][0]).any()  # the photos' texture, not a flat fill
    full, none = (ink >= 192).float(), (ink == 0).float()
    brighter = (out * full).sum((1, 2, 3)) / full.sum((1, 2, 3)) - (out * none).sum(
        (1, 2, 3)
    ) / none.sum((1, 2, 3))  # (N,) mean stroke minus mean background, 0..255 units
    assert brighter.min() > 60


def test_pair_needs_a_second_domain_unless_builtin(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="dataset_b") as info:
        load_pair("mnist", None, tmp_path)
    assert "digits-on-colour" in str(info.value)
    with pytest.raises(ConfigError, match="dataset_b"):
        load_pair("digits", "digits")


def test_reconcile_refuses_sizes_too_far_apart() -> None:
    small = ImageDataset("tiny", torch.zeros(4, 1, 4, 4, dtype=torch.uint8),
                         torch.zeros(4, dtype=torch.long), ("all",))  # fmt: skip
    big = ImageDataset("big", torch.zeros(4, 3, 32, 32, dtype=torch.uint8),
                       torch.zeros(4, dtype=torch.long), ("all",))  # fmt: skip
    with pytest.raises(ConfigError, match="^dataset: 'tiny' has 4 px"):
        reconcile(small, big)
    with pytest.raises(ConfigError, match="^dataset_b: 'tiny'"):
        reconcile(big, small)
    pair = reconcile(big, ImageDataset("mid", torch.zeros(4, 1, 16, 16, dtype=torch.uint8),
                                       torch.zeros(4, dtype=torch.long), ("all",)))  # fmt: skip
    assert pair.b.image_shape == (3, 32, 32)
    assert pair.class_names == ()


# ----------------------------------------------------------------------------- training


def test_training_reports_progress_checkpoints_and_a_translation_grid(
    tiny_pair: DomainPair, tmp_path: Path
) -> None:
    progress: list[Progress] = []
    previews: list[tuple[int, torch.Tensor]] = []
    saved: list[int] = []
    callbacks = Callbacks(
        progress=progress.append,
        preview=lambda step, images: previews.append((step, images)),
        checkpoint=lambda path, step: saved.append(step),
        progress_every=2,
    )
    result = train_cyclegan(TINY, TINY_OPTIONS, tiny_pair, tmp_path, callbacks)
    assert not result.aborted and result.state.step == 6
    assert [p.step for p in progress] == [2, 4, 6]
    assert set(progress[-1].losses) == {"d", "g", "cycle", "identity"}
    assert all(v > 0 for v in progress[-1].losses.values())
    assert saved == [3, 6]
    step, grid = previews[-1]
    assert step == 6 and grid.shape == (48, 16, 16, 3) and grid.dtype == torch.uint8
    # rows 1 and 4 are real inputs, the others translations of them
    assert not torch.equal(grid[0:8], grid[8:16])


def test_resumed_run_equals_uninterrupted_run(tiny_pair: DomainPair, tmp_path: Path) -> None:
    whole = train_cyclegan(TINY, TINY_OPTIONS, tiny_pair, tmp_path / "whole").state
    calls = {"n": 0}

    def stop_after_three() -> bool:
        calls["n"] += 1
        return calls["n"] > 3

    first = train_cyclegan(TINY, TINY_OPTIONS, tiny_pair, tmp_path / "split",
                           Callbacks(abort=stop_after_three))  # fmt: skip
    assert first.aborted and first.state.step == 3
    resumed = train_cyclegan(TINY, TINY_OPTIONS, tiny_pair, tmp_path / "split").state
    _states_equal(whole, resumed)
    loaded = load_cycle_checkpoint(list_checkpoints(tmp_path / "split" / "checkpoints")[-1][1])
    _states_equal(whole, loaded)
    assert loaded.pool_a.count == 3  # the pool is part of the checkpoint


def test_resume_refuses_a_different_config(tiny_pair: DomainPair, tmp_path: Path) -> None:
    train_cyclegan(TINY.replace(steps=3), TINY_OPTIONS, tiny_pair, tmp_path)
    with pytest.raises(CheckpointError, match="different config"):
        train_cyclegan(TINY, CycleOptions(width=4, blocks=1, d_width=4, pool_size=3,
                                          lambda_cycle=5.0), tiny_pair, tmp_path)  # fmt: skip


def test_other_losses_train_finite(tiny_pair: DomainPair, tmp_path: Path) -> None:
    for loss in ("bce", "hinge", "wgan-gp"):
        options = CycleOptions(width=4, blocks=1, d_width=4, pool_size=0, loss=loss,
                               lambda_identity=0.0, lr_decay="linear")  # fmt: skip
        result = train_cyclegan(TINY.replace(steps=2), options, tiny_pair, tmp_path / loss)
        assert result.state.step == 2


# ----------------------------------------------------------------------------- translate


def test_translate_keeps_odd_sizes_and_is_deterministic(tmp_path: Path) -> None:
    torch.manual_seed(0)
    g_ab, g_ba = ResnetGenerator(TINY_SPEC), ResnetGenerator(TINY_SPEC)
    export_translator(g_ab, g_ba, tmp_path, {"dataset": "digits", "step": 0})
    loaded = load_translator(tmp_path)
    assert loaded.spec == TINY_SPEC
    for h, w in ((17, 31), (3, 5), (1, 1), (16, 16), (40, 9)):
        images = torch.randint(0, 256, (2, 3, h, w), dtype=torch.uint8)
        out = translate(loaded.a2b, images)
        assert out.shape == (2, 3, h, w) and out.dtype == torch.uint8
        assert torch.equal(out, translate(g_ab, images))  # the export is the same network
    with pytest.raises(ConfigError, match="direction"):
        loaded.generator("sideways")
    with pytest.raises(ConfigError, match="image"):
        translate(loaded.a2b, torch.zeros(1, 1, 8, 8, dtype=torch.uint8))


def test_translator_export_refuses_tampered_weights(tmp_path: Path) -> None:
    g = ResnetGenerator(TINY_SPEC)
    export_translator(g, g, tmp_path, {})
    path = tmp_path / "translator.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        load_translator(tmp_path)


def test_to_domain_converts_channels_and_size() -> None:
    grey = Image.new("L", (40, 20), 200)
    rgb = to_domain(grey, 3, 16)
    assert rgb.shape == (1, 3, 16, 16) and int(rgb.min()) == int(rgb.max()) == 200
    kept = to_domain(Image.new("RGB", (13, 7), (255, 0, 0)), 1, None)
    assert kept.shape == (1, 1, 7, 13) and int(kept[0, 0, 0, 0]) == 76  # luma of red
    transparent = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    assert int(to_domain(transparent, 3, None).min()) == 255  # composited on white
    buffer = io.BytesIO()
    Image.new("I;16", (8, 8), 65535).save(buffer, format="PNG")
    assert int(to_domain(Image.open(buffer), 1, 8).max()) == 255


# ----------------------------------------------------------------------------- quality


def _report(kept: float, spread: float) -> TranslationReport:
    direction = DirectionReport(kept=kept, fd=1.0, fd_input=4.0, cycle=0.1, spread=spread)
    good = DirectionReport(kept=0.95, fd=1.0, fd_input=4.0, cycle=0.1, spread=0.9)
    return TranslationReport(direction, good, 10, ("a", "b"), (0.9, 0.9), 0.1)


def test_monitor_alarms_on_ignored_input_and_lost_digits() -> None:
    monitor = TranslationMonitor(alarm_spread=0.1, alarm_kept=0.5)
    assert monitor.observe(5, _report(0.9, 0.8)) == []
    kinds = [w.kind for w in monitor.observe(6, _report(0.2, 0.01))]
    assert kinds == [INPUT_IGNORED, DIGIT_LOST]
    assert "a2b" in monitor.observe(7, _report(0.2, 0.8))[0].message
    metrics = _report(0.9, 0.8).as_metrics()
    assert metrics["kept_a2b"] == 0.9 and metrics["fd_input_b2a"] == 4.0 and metrics["fd"] == 1.0


def test_evaluator_scores_identity_translation_as_keeping_every_digit(
    tiny_pair: DomainPair,
) -> None:
    from ganserve.gan.classifier import fit_classifier
    from ganserve.gan.translation.quality import TranslationEvaluator

    a = ImageDataset("a", tiny_pair.a.images.repeat(3, 1, 1, 1), tiny_pair.a.labels.repeat(3),
                     tiny_pair.a.class_names)  # fmt: skip
    pair = DomainPair(a, ImageDataset("b", a.images, a.labels, a.class_names))  # B == A
    classifier = fit_classifier(pair.a, steps=60, batch_size=16)
    evaluator = TranslationEvaluator(pair, classifier, classifier, samples=8)

    class Identity(ResnetGenerator):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    same = Identity(TINY_SPEC)
    report = evaluator.evaluate(same, same)
    assert report.a2b.cycle == 0.0 and report.b2a.fd == pytest.approx(report.b2a.fd_input)
    # the classifier's own held-out accuracy on unchanged inputs, (confident ones only)
    assert 0.0 <= report.a2b.kept <= 1.0 and report.num_samples == 8

    class Constant(ResnetGenerator):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.zeros_like(x)

    flat = evaluator.evaluate(Constant(TINY_SPEC), Constant(TINY_SPEC))
    assert flat.a2b.spread == 0.0 and flat.a2b.kept <= 0.5
    assert TranslationMonitor().observe(1, flat)[0].kind == INPUT_IGNORED
