"""The training loop: one function, callbacks for progress, abort, checkpoints and previews.

The shape follows stylegan2-ada's `training_loop(..., abort_fn, progress_fn)`: the Celery
task passes callbacks that write to the database and check for cancellation; the CLI passes
ones that draw a progress bar. Nothing here knows about either.

Read top to bottom: the run's pieces (batches, EMA, previews), then one training step as
two named functions, `discriminator_step` and `generator_step` (the classic alternating
algorithm: n_critic D updates on real batches and G(z), then one G update through the new
D), then `train()`, which calls them and the schedules (reports, evaluation, checkpoints,
previews). Noise comes from `gan.sample.draw_noise`, the one noise function.

Determinism on the CPU: weights, data order and noise come from streams derived from
config.seed; the data order is a pure function of (seed, batch index) and the noise stream's
state is checkpointed, so a resumed run equals an uninterrupted one bit for bit.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ganserve.gan.augment import draw_shifts, translate
from ganserve.gan.checkpoint import (
    check_resumable,
    list_checkpoints,
    load_latest_checkpoint,
    save_checkpoint,
)
from ganserve.gan.compat import DatasetInfo, check_compatible
from ganserve.gan.config import ModelSpec, TrainConfig
from ganserve.gan.data import ImageDataset
from ganserve.gan.errors import DivergenceError
from ganserve.gan.losses import LOSSES, GanLoss, gradient_penalty, mode_seeking_loss
from ganserve.gan.sample import draw_noise, generate, make_noise
from ganserve.gan.state import (
    DATA_STREAM,
    PREVIEW_STREAM,
    TrainState,
    build_state,
    resolve_device,
    stream_seed,
)

log = logging.getLogger(__name__)

PREVIEW_IMAGES = 64


@dataclass(frozen=True)
class Progress:
    step: int  # generator updates done
    total_steps: int
    losses: dict[str, float]  # {"d": ..., "g": ...} (+ "gp" for wgan-gp)
    d_real: float  # mean D(x): probability for bce, raw critic score otherwise
    d_fake: float  # mean D(G(z)), same scale
    steps_per_sec: float  # over the steps since the previous report
    eta_s: float  # seconds left at that rate


@dataclass(frozen=True)
class TrainResult:
    state: TrainState
    aborted: bool  # True when abort_fn stopped the run (a checkpoint was written first)
    checkpoint: Path | None  # the last checkpoint written


@dataclass
class Callbacks:
    progress: Callable[[Progress], None] | None = None
    abort: Callable[[], bool] | None = None  # checked every step; True stops at this boundary
    checkpoint: Callable[[Path, int], None] | None = None  # (path, step) after each save
    preview: Callable[[int, torch.Tensor], None] | None = None  # (step, (N, H, W, C) uint8)
    # Quality evaluation every config.eval_every steps and at the end, before that step's
    # checkpoint; it may raise (e.g. QualityAlarm) to stop training. Its time is not counted
    # in steps/s.
    evaluate: Callable[[TrainState], None] | None = None
    progress_every: int = 10  # steps between progress reports (each one syncs the device)


def _resume_or_build(
    config: TrainConfig, spec: ModelSpec, device: torch.device, checkpoints: Path
) -> TrainState:
    state = load_latest_checkpoint(checkpoints, device)
    if state is None:
        return build_state(config, spec, device)
    # A run checkpointed before sampling contracts (dcgan layouts) were numbered keeps its
    # own, 1: the resumed run exports what the uninterrupted one would have.
    check_resumable(checkpoints, state.config, config, same_model=state.spec.resumes_as(spec))
    state.config = config
    log.info("resuming from step %d", state.step)
    return state


def _accelerated(
    state: TrainState, channels_last: bool
) -> tuple[torch.nn.Module, torch.nn.Module, torch.Generator]:
    """G and D as the loop calls them: channels-last convolutions on CUDA, optionally compiled.

    The state keeps the plain modules (shared parameters), so checkpoints and the EMA copy
    see ordinary state dicts.
    """
    g: torch.nn.Module = state.generator
    d: torch.nn.Module = state.discriminator
    if channels_last:
        g = g.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        d = d.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    if state.config.compile:
        g, d = torch.compile(g), torch.compile(d)  # type: ignore[assignment]
    return g, d, state.noise_rng


class _Batches:
    """Real batches in a shuffled order that is a pure function of (seed, batch index)."""

    def __init__(
        self,
        dataset: ImageDataset,
        config: TrainConfig,
        device: torch.device,
        channels_last: bool = False,
    ) -> None:
        self.images = dataset.images.to(device)  # (N, C, H, W) uint8, kept on the device
        self.channels_last = channels_last
        self.labels = dataset.labels.to(device)  # (N,)
        self.seed, self.batch_size = config.seed, config.batch_size
        self.per_epoch = len(dataset) // config.batch_size  # drop the last partial batch
        self._epoch, self._order = -1, torch.empty(0, dtype=torch.long)

    def get(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, offset = divmod(index, self.per_epoch)
        if epoch != self._epoch:
            rng = torch.Generator().manual_seed(stream_seed(self.seed, DATA_STREAM, epoch))
            self._order = torch.randperm(len(self.images), generator=rng).to(self.images.device)
            self._epoch = epoch
        rows = self._order[offset * self.batch_size : (offset + 1) * self.batch_size]
        x = self.images.index_select(0, rows).float().div_(127.5).sub_(1.0)  # -> [-1, 1]
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, self.labels.index_select(0, rows)


def _ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    ema_params: list[torch.Tensor] = list(ema.parameters())
    params = [p.detach() for p in model.parameters()]
    torch._foreach_lerp_(ema_params, params, 1.0 - decay)
    for b_ema, b in zip(ema.buffers(), model.buffers(), strict=True):
        b_ema.copy_(b)


def _preview_noise(state: TrainState) -> tuple[torch.Tensor, torch.Tensor | None]:
    seeds = [stream_seed(state.config.seed, PREVIEW_STREAM, i) for i in range(PREVIEW_IMAGES)]
    labels: list[int | None] | None = None
    if state.spec.conditional:  # class k in row k, as far as the grid goes
        labels = [i // 8 % state.spec.num_classes for i in range(PREVIEW_IMAGES)]
    return make_noise(seeds, state.spec, None, labels)


def _autocast(state: TrainState) -> contextlib.AbstractContextManager[object]:
    if state.config.precision == "bf16":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@dataclass(frozen=True)
class _Nets:
    """What the D and G steps work with: the networks as called, the loss, the noise stream."""

    g: torch.nn.Module
    d: torch.nn.Module
    loss: GanLoss
    noise_rng: torch.Generator  # CPU stream: z, augmentation shifts, WGAN-GP epsilons
    config: TrainConfig
    device: torch.device
    # conditional models' regularisers (issue 13; 0 / False for unconditional ones)
    augment: bool = False  # D sees its inputs translated (gan/augment.py)
    class_loss: float = 0.0  # AC-GAN auxiliary classification loss weight
    mode_seeking: float = 0.0  # MSGAN term weight


def _nets(
    g: torch.nn.Module,
    d: torch.nn.Module,
    rng: torch.Generator,
    state: TrainState,
    device: torch.device,
) -> _Nets:
    config = state.config
    return _Nets(
        g, d, LOSSES[config.loss], rng, config, device,
        augment=config.translates_d_inputs(),
        class_loss=config.class_loss_weight(),
        mode_seeking=config.mode_seeking_weight(),
    )  # fmt: skip


@dataclass
class _DStep:
    """One discriminator update: its loss and scores, and the fake batch G's update reuses."""

    loss: torch.Tensor
    d_real: torch.Tensor  # (B, 1) raw D(x)
    d_fake: torch.Tensor  # (B, 1) raw D(G(z))
    fake: torch.Tensor  # (B, C, H, W) G(z), with its graph when G's update follows
    z: torch.Tensor  # (B, Z) the noise of `fake`
    labels: torch.Tensor | None  # (B,) the real batch's classes (conditional models)
    gp: torch.Tensor | None  # the gradient penalty (wgan-gp)


def _noise(nets: _Nets, batch_size: int) -> torch.Tensor:
    """(B, noise_dim) z from the run's noise stream (drawn on the CPU), on the device."""
    shape = (batch_size, nets.config.noise_dim)
    z = draw_noise(shape, nets.config.noise_distribution, nets.noise_rng)
    return z.to(nets.device, non_blocking=True)


def _d_input(nets: _Nets, images: torch.Tensor) -> torch.Tensor:
    """What D sees of a batch: the images, translated when the run augments."""
    if not nets.augment:
        return images
    return translate(images, draw_shifts(images.shape[0], nets.noise_rng))


def _class_loss(
    nets: _Nets, class_logits: torch.Tensor, labels: torch.Tensor | None
) -> torch.Tensor:
    """AC-GAN's term: cross-entropy of D's (B, K) class logits against the (B,) classes."""
    assert labels is not None  # class_loss is 0 for unconditional models
    return nets.class_loss * torch.nn.functional.cross_entropy(class_logits.float(), labels)


def discriminator_step(
    nets: _Nets,
    state: TrainState,
    real: torch.Tensor,
    labels: torch.Tensor | None,
    keep_graph: bool,
) -> _DStep:
    """Update D once on a real batch and G(z); keep_graph keeps G's graph for its update."""
    batch_size = real.shape[0]
    z = _noise(nets, batch_size)
    with _autocast(state), torch.set_grad_enabled(keep_graph):
        fake = nets.g(z, labels)
    with _autocast(state):
        if nets.class_loss:
            d_real, class_logits = nets.d(_d_input(nets, real), labels, with_classes=True)
        else:
            d_real = nets.d(_d_input(nets, real), labels)
        d_fake = nets.d(_d_input(nets, fake.detach()), labels)
        loss_d = nets.loss.d_loss(d_real, d_fake)
        if nets.class_loss:
            loss_d = loss_d + _class_loss(nets, class_logits, labels)
    gp = None
    if nets.loss.gradient_penalty:
        eps = torch.rand(batch_size, 1, 1, 1, generator=nets.noise_rng).to(nets.device)
        gp = gradient_penalty(nets.d, real, fake.detach().float(), labels, eps)
        loss_d = loss_d + nets.config.gp_lambda * gp
    state.opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    state.opt_d.step()
    return _DStep(loss_d, d_real, d_fake, fake, z, labels, gp)


def generator_step(nets: _Nets, state: TrainState, d_step: _DStep) -> torch.Tensor:
    """Update G once through the updated D, on the last D step's fake batch; G's loss."""
    fake, labels = d_step.fake, d_step.labels
    # D frozen meanwhile: G's backward needs D's input gradients, not its weights'
    nets.d.requires_grad_(False)
    try:
        with _autocast(state):
            if nets.class_loss:
                scores, class_logits = nets.d(_d_input(nets, fake), labels, with_classes=True)
                loss_g = nets.loss.g_loss(scores) + _class_loss(nets, class_logits, labels)
            else:
                loss_g = nets.loss.g_loss(nets.d(_d_input(nets, fake), labels))
            if nets.mode_seeking:
                z_b = _noise(nets, fake.shape[0])
                fake_b = nets.g(z_b, labels)
                term = mode_seeking_loss(fake.float(), fake_b.float(), d_step.z, z_b)
                loss_g = loss_g + nets.mode_seeking * term
        state.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
    finally:
        nets.d.requires_grad_(True)
    state.opt_g.step()
    return loss_g


class _Monitor:
    """Step statistics kept on the device (no per-step sync) and the steps/s window."""

    def __init__(self, state: TrainState) -> None:
        # the first non-finite step (-1 = none), recorded on the device
        self.first_bad_step = torch.tensor(-1, device=state.device)
        self.stats: dict[str, torch.Tensor] = {}
        self.restart_clock(state.step)

    def restart_clock(self, step: int) -> None:
        self.window_start, self.window_step = time.perf_counter(), step

    def record(self, step: int, d_step: _DStep, loss_g: torch.Tensor, bce: bool) -> None:
        with torch.no_grad():
            loss_d = d_step.loss.detach()
            finite = torch.isfinite(loss_d) & torch.isfinite(loss_g.detach())
            seen = finite | (self.first_bad_step >= 0)
            self.first_bad_step = torch.where(seen, self.first_bad_step, step)
            self.stats["d"], self.stats["g"] = loss_d, loss_g.detach()
            if d_step.gp is not None:
                self.stats["gp"] = d_step.gp.detach()
            d_real, d_fake = d_step.d_real.detach(), d_step.d_fake.detach()
            if bce:  # probabilities
                self.stats["d_real"] = torch.sigmoid(d_real.float()).mean()
                self.stats["d_fake"] = torch.sigmoid(d_fake.float()).mean()
            else:  # raw critic scores
                self.stats["d_real"], self.stats["d_fake"] = d_real.mean(), d_fake.mean()

    def check_finite(self) -> None:
        """DivergenceError if any step so far had a non-finite loss (syncs the device)."""
        bad = int(self.first_bad_step)
        if bad >= 0:
            raise DivergenceError(bad, {k: float(v) for k, v in self.stats.items()})

    def progress(self, step: int, total_steps: int) -> Progress:
        self.check_finite()
        now = time.perf_counter()
        rate = (step - self.window_step) / max(now - self.window_start, 1e-9)
        self.window_start, self.window_step = now, step
        values = {k: float(v) for k, v in self.stats.items()}
        return Progress(
            step=step,
            total_steps=total_steps,
            losses={k: values[k] for k in ("d", "g", "gp") if k in values},
            d_real=values.get("d_real", math.nan),
            d_fake=values.get("d_fake", math.nan),
            steps_per_sec=rate,
            eta_s=(total_steps - step) / rate if rate > 0 else math.inf,
        )


def _write_checkpoint(
    state: TrainState, checkpoints: Path, monitor: _Monitor, callbacks: Callbacks
) -> Path:
    monitor.check_finite()  # never a checkpoint of NaN weights
    path = save_checkpoint(state, checkpoints)
    if callbacks.checkpoint:
        callbacks.checkpoint(path, state.step)
    return path


def train(
    config: TrainConfig,
    dataset: ImageDataset,
    run_dir: Path,
    callbacks: Callbacks | None = None,
    device: torch.device | str | None = None,
) -> TrainResult:
    """Train (or resume, if run_dir/checkpoints holds a compatible run) up to config.steps.

    Each step: n_critic discriminator updates on real batches and fakes, then one generator
    update through the updated D (the classic alternating algorithm), then the EMA copy of G,
    then reports, evaluation, checkpoint and preview on their schedules.
    """
    callbacks = callbacks or Callbacks()
    device = resolve_device(config.device) if device is None else torch.device(device)
    spec = check_compatible(config, DatasetInfo.of(dataset), device.type)
    checkpoints = run_dir / "checkpoints"
    state = _resume_or_build(config, spec, device, checkpoints)
    channels_last = device.type == "cuda" and spec.architecture == "dcgan"
    batches = _Batches(dataset, config, device, channels_last)
    g, d, rng = _accelerated(state, channels_last)
    g.train()
    d.train()
    nets = _nets(g, d, rng, state, device)
    preview_z, preview_y = _preview_noise(state)
    monitor = _Monitor(state)
    existing = list_checkpoints(checkpoints)
    last_checkpoint: Path | None = existing[-1][1] if existing else None

    while state.step < config.steps:
        if callbacks.abort and callbacks.abort():
            last_checkpoint = _write_checkpoint(state, checkpoints, monitor, callbacks)
            return TrainResult(state, aborted=True, checkpoint=last_checkpoint)

        # ---- discriminator: n_critic updates on real batches and detached fakes
        for i in range(config.n_critic):
            real, real_labels = batches.get(state.step * config.n_critic + i)
            labels = real_labels if spec.conditional else None
            last = i == config.n_critic - 1
            d_step = discriminator_step(nets, state, real, labels, keep_graph=last)

        # ---- generator: one update through the updated D, reusing the last fake batch
        loss_g = generator_step(nets, state, d_step)
        state.step += 1
        # ---- EMA of G; ramped decay: short runs are not dominated by the initial weights
        decay = min(config.ema, (1.0 + state.step) / (10.0 + state.step))
        _ema_update(state.generator_ema, g, decay)
        monitor.record(state.step, d_step, loss_g, bce=config.loss == "bce")

        # ---- reports, evaluation, checkpoint, preview
        done = state.step == config.steps
        if state.step % callbacks.progress_every == 0 or done:
            report = monitor.progress(state.step, config.steps)
            if callbacks.progress:
                callbacks.progress(report)
        if callbacks.evaluate and (
            done or (config.eval_every and state.step % config.eval_every == 0)
        ):
            monitor.check_finite()
            callbacks.evaluate(state)
            monitor.restart_clock(state.step)  # evaluation is not training time
        if state.step % config.checkpoint_every == 0 or done:
            last_checkpoint = _write_checkpoint(state, checkpoints, monitor, callbacks)
        if callbacks.preview and (state.step % config.sample_every == 0 or done):
            images = generate(state.generator_ema, preview_z, preview_y, device)
            callbacks.preview(state.step, images)
    return TrainResult(state, aborted=False, checkpoint=last_checkpoint)
