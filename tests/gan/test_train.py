from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ganserve.gan import losses
from ganserve.gan.checkpoint import list_checkpoints, load_checkpoint
from ganserve.gan.compat import model_spec_for
from ganserve.gan.config import TrainConfig
from ganserve.gan.data import ImageDataset
from ganserve.gan.errors import ConfigError, DivergenceError, QualityAlarm
from ganserve.gan.losses import GanLoss
from ganserve.gan.sample import generate, make_noise
from ganserve.gan.state import TrainState, build_state
from ganserve.gan.train import Callbacks, Progress, train

TINY = TrainConfig(steps=20, batch_size=32, device="cpu", checkpoint_every=10, sample_every=10)


def _states_equal(a: TrainState, b: TrainState) -> None:
    assert a.step == b.step
    for name in ("generator", "discriminator", "generator_ema"):
        sa, sb = getattr(a, name).state_dict(), getattr(b, name).state_dict()
        assert sa.keys() == sb.keys()
        for key in sa:
            assert torch.equal(sa[key], sb[key]), f"{name}.{key} differs"
    for name in ("opt_g", "opt_d"):
        sa, sb = getattr(a, name).state_dict()["state"], getattr(b, name).state_dict()["state"]
        assert sa.keys() == sb.keys()
        for idx in sa:
            for moment in ("exp_avg", "exp_avg_sq", "step"):
                assert torch.equal(sa[idx][moment], sb[idx][moment]), f"{name}[{idx}].{moment}"
    assert torch.equal(a.noise_rng.get_state(), b.noise_rng.get_state())


def _nearest_real_distance(fake: torch.Tensor, real: torch.Tensor) -> float:
    """Mean L2 distance from each generated digit to its nearest real digit (uint8 NHWC)."""
    f = fake.float().flatten(1) / 255
    r = real.float().flatten(1) / 255
    return torch.cdist(f, r).min(dim=1).values.mean().item()


def test_training_improves_the_generator(digits: ImageDataset, tmp_path: Path) -> None:
    config = TrainConfig(steps=400, device="cpu", checkpoint_every=400, sample_every=400)
    spec = model_spec_for(config, digits)
    z, _ = make_noise(list(range(256)), spec)
    real = digits.images.permute(0, 2, 3, 1)

    untrained = build_state(config, spec, torch.device("cpu"))
    before = _nearest_real_distance(generate(untrained.generator_ema, z), real)
    result = train(config, digits, tmp_path)
    after = _nearest_real_distance(generate(result.state.generator_ema, z), real)
    # untrained G emits grey noise (about 2.6 here); 400 steps give digit-like strokes
    assert after < 0.75 * before, (before, after)
    # and not one image 256 times: samples stay diverse
    samples = generate(result.state.generator_ema, z).float().flatten(1)
    assert torch.pdist(samples).mean() > 0.3 * torch.pdist(real[:256].float().flatten(1)).mean()


def test_resumed_run_equals_uninterrupted_run(digits: ImageDataset, tmp_path: Path) -> None:
    straight = train(TINY, digits, tmp_path / "straight").state
    half = train(TINY.replace(steps=10), digits, tmp_path / "resumed")
    assert half.state.step == 10 and half.checkpoint is not None
    resumed = train(TINY, digits, tmp_path / "resumed").state
    _states_equal(straight, resumed)
    # and what is on disk reloads to the same state
    _states_equal(
        straight, load_checkpoint(list_checkpoints(tmp_path / "straight/checkpoints")[-1][1])
    )


def test_conditional_mlp_resumes_exactly_with_its_regularisers(
    digits: ImageDataset, tmp_path: Path
) -> None:
    # the default conditional mlp translates D's inputs and adds mode seeking: both draw from
    # the checkpointed noise stream, so a resumed run still equals an uninterrupted one
    config = TINY.replace(conditional=True)
    assert config.translates_d_inputs() and config.mode_seeking_weight() > 0
    straight = train(config, digits, tmp_path / "straight").state
    train(config.replace(steps=10), digits, tmp_path / "resumed")
    _states_equal(straight, train(config, digits, tmp_path / "resumed").state)


def test_each_regulariser_changes_conditional_training_only(
    digits: ImageDataset, tmp_path: Path
) -> None:
    def g_weights(config: TrainConfig, name: str) -> torch.Tensor:
        state = train(config.replace(steps=5), digits, tmp_path / name).state
        return state.generator.state_dict()["net.0.weight"]

    cond = TINY.replace(conditional=True)
    base = g_weights(cond, "base")
    for i, change in enumerate(
        [{"augment": "none"}, {"mode_seeking": 0.0}, {"class_loss": 0.0}, {"class_loss": 1.0}]
    ):
        assert not torch.equal(g_weights(cond.replace(**change), f"c{i}"), base), change
    # unconditional runs ignore the conditional regularisers
    plain = g_weights(TINY, "plain")
    assert torch.equal(g_weights(TINY.replace(class_loss=1.0, mode_seeking=1.0), "p1"), plain)


def test_the_class_loss_trains_the_auxiliary_classifier(
    digits: ImageDataset, tmp_path: Path
) -> None:
    config = TINY.replace(conditional=True, steps=5)
    spec = model_spec_for(config, digits)
    initial = build_state(config, spec, torch.device("cpu")).discriminator.classes
    assert initial is not None
    trained = train(config, digits, tmp_path / "on").state.discriminator.classes
    off = train(config.replace(class_loss=0.0), digits, tmp_path / "off").state.discriminator
    assert trained is not None and off.classes is not None
    assert not torch.equal(trained.weight, initial.weight)
    assert torch.equal(off.classes.weight, initial.weight)  # no loss, no gradient


@pytest.mark.parametrize(
    "config",
    [
        TINY.replace(loss="wgan-gp", n_critic=2, conditional=True, noise_distribution="uniform"),
        TINY.replace(architecture="dcgan", loss="hinge", conditional=True, dcgan_width=8),
        TINY.replace(architecture="dcgan", loss="wgan-gp", dcgan_width=8, noise_dim=7),
    ],
    ids=["mlp-wgan-gp-cond-uniform", "dcgan-hinge-cond", "dcgan-wgan-gp"],
)
def test_every_loss_and_architecture_trains_deterministically(
    config: TrainConfig, digits: ImageDataset, tmp_path: Path
) -> None:
    reports: list[Progress] = []
    a = train(config, digits, tmp_path / "a", Callbacks(progress=reports.append, progress_every=5))
    b = train(config, digits, tmp_path / "b").state
    _states_equal(a.state, b)
    assert [p.step for p in reports] == [5, 10, 15, 20]
    assert all(p.total_steps == 20 and p.steps_per_sec > 0 for p in reports)
    assert set(reports[-1].losses) == ({"d", "g", "gp"} if config.loss == "wgan-gp" else {"d", "g"})
    other = train(config.replace(seed=1), digits, tmp_path / "c").state
    key = "net.0.weight"  # the first Linear of either architecture
    assert not torch.equal(other.generator_ema.state_dict()[key], b.generator_ema.state_dict()[key])


def test_bce_reports_probabilities(digits: ImageDataset, tmp_path: Path) -> None:
    reports: list[Progress] = []
    train(TINY, digits, tmp_path, Callbacks(progress=reports.append))
    assert all(0 <= p.d_real <= 1 and 0 <= p.d_fake <= 1 for p in reports)


def test_abort_checkpoints_and_stops(digits: ImageDataset, tmp_path: Path) -> None:
    steps_seen: list[int] = []
    state_step = {"n": 0}

    def abort() -> bool:
        state_step["n"] += 1
        return state_step["n"] > 7  # checked before each step: 7 steps run

    result = train(
        TINY, digits, tmp_path, Callbacks(abort=abort, checkpoint=lambda p, s: steps_seen.append(s))
    )
    assert result.aborted and result.state.step == 7
    assert steps_seen == [7]
    assert [s for s, _ in list_checkpoints(tmp_path / "checkpoints")] == [7]


def test_checkpoints_follow_the_schedule_and_keep_the_last_n(
    digits: ImageDataset, tmp_path: Path
) -> None:
    config = TINY.replace(steps=25, checkpoint_every=5, keep_checkpoints=2)
    written: list[int] = []
    previews: list[tuple[int, tuple[int, ...]]] = []
    train(
        config, digits, tmp_path,
        Callbacks(checkpoint=lambda p, s: written.append(s),
                  preview=lambda s, images: previews.append((s, tuple(images.shape)))),
    )  # fmt: skip
    assert written == [5, 10, 15, 20, 25]
    assert [s for s, _ in list_checkpoints(tmp_path / "checkpoints")] == [20, 25]
    assert previews == [(10, (64, 8, 8, 1)), (20, (64, 8, 8, 1)), (25, (64, 8, 8, 1))]


def test_non_finite_loss_fails_with_the_step(
    digits: ImageDataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"n": 0}
    bce = losses.LOSSES["bce"]

    def g_loss(fake: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        loss = bce.g_loss(fake)
        return loss * float("nan") if calls["n"] == 4 else loss

    monkeypatch.setitem(losses.LOSSES, "bce", GanLoss(bce.d_loss, g_loss))
    with pytest.raises(DivergenceError, match="diverged at step 4") as info:
        train(TINY, digits, tmp_path, Callbacks(progress_every=10))
    assert info.value.step == 4
    # the step-10 checkpoint would hold NaN weights: it is never written
    assert list_checkpoints(tmp_path / "checkpoints") == []


def test_incompatible_options_are_refused(digits: ImageDataset, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="batch_size: 4096 exceeds"):
        train(TINY.replace(batch_size=4096), digits, tmp_path)
    with pytest.raises(ConfigError, match="precision: bf16 autocast needs a CUDA device"):
        train(TINY.replace(precision="bf16"), digits, tmp_path)
    with pytest.raises(ConfigError, match="dcgan supports square images of 8, 14, 16"):
        small = ImageDataset("odd", digits.images[:, :, :6, :6], digits.labels, digits.class_names)
        train(TINY.replace(architecture="dcgan"), small, tmp_path)


def test_resuming_with_another_architecture_is_refused(
    digits: ImageDataset, tmp_path: Path
) -> None:
    train(TINY.replace(steps=5), digits, tmp_path)
    with pytest.raises(Exception, match="different config"):
        train(TINY.replace(loss="hinge"), digits, tmp_path)


def test_evaluation_runs_on_schedule_and_at_the_end(digits: ImageDataset, tmp_path: Path) -> None:
    evaluated: list[tuple[int, int]] = []  # (step, checkpoints on disk when called)

    def evaluate(state: TrainState) -> None:
        evaluated.append((state.step, len(list_checkpoints(tmp_path / "checkpoints"))))

    train(TINY.replace(steps=25, eval_every=10), digits, tmp_path, Callbacks(evaluate=evaluate))
    # before the step's own checkpoint: at step 10 none exists yet, at 20 the one of step 10
    assert evaluated == [(10, 0), (20, 1), (25, 2)]
    evaluated.clear()
    train(TINY.replace(steps=30, eval_every=0), digits, tmp_path, Callbacks(evaluate=evaluate))
    assert evaluated == [(30, 3)]  # resumed from 25: eval_every 0 still evaluates at the end


def test_an_alarm_raised_by_the_evaluation_stops_training(
    digits: ImageDataset, tmp_path: Path
) -> None:
    def evaluate(state: TrainState) -> None:
        if state.step == 10:
            raise QualityAlarm("mode_collapse", 10, "coverage 1 of 10 classes at step 10")

    with pytest.raises(QualityAlarm, match="coverage 1 of 10"):
        train(TINY.replace(eval_every=5), digits, tmp_path, Callbacks(evaluate=evaluate))
    # the alarmed step wrote no checkpoint: the last one is from before
    assert [s for s, _ in list_checkpoints(tmp_path / "checkpoints")] == []
