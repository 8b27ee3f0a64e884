"""The training loop: one function, callbacks for progress, abort, checkpoints and previews.

The shape follows stylegan2-ada's `training_loop(..., abort_fn, progress_fn)`: the Celery
task passes callbacks that write to the database and check for cancellation; the CLI passes
ones that draw a progress bar. Nothing here knows about either.

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

from ganserve.gan.checkpoint import list_checkpoints, load_latest_checkpoint, save_checkpoint
from ganserve.gan.config import ModelSpec, TrainConfig
from ganserve.gan.data import ImageDataset
from ganserve.gan.errors import CheckpointError, ConfigError, DivergenceError
from ganserve.gan.losses import LOSSES, gradient_penalty
from ganserve.gan.sample import generate, make_noise
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
# Fields that may differ between a checkpoint and the config resuming from it.
RESUMABLE_CHANGES = frozenset(
    {
        "steps", "checkpoint_every", "keep_checkpoints", "sample_every", "device", "compile",
        "eval_every", "eval_samples", "on_alarm", "alarm_coverage", "alarm_fd_patience",
    }
)  # fmt: skip


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


def model_spec_for(config: TrainConfig, dataset: ImageDataset) -> ModelSpec:
    return ModelSpec(
        architecture=config.architecture,
        channels=dataset.channels,
        image_size=dataset.image_size,
        noise_dim=config.noise_dim,
        noise_distribution=config.noise_distribution,
        num_classes=dataset.num_classes if config.conditional else 0,
        dcgan_width=config.dcgan_width,
        class_names=tuple(dataset.class_names) if config.conditional else (),
    )


def _check_compatible(config: TrainConfig, dataset: ImageDataset, device: torch.device) -> None:
    if config.batch_size > len(dataset):
        raise ConfigError(
            "batch_size", f"{config.batch_size} exceeds the dataset's {len(dataset)} images"
        )
    if config.conditional and dataset.num_classes < 2:
        raise ConfigError("conditional", f"dataset {dataset.name!r} has no class labels")
    if config.precision == "bf16" and device.type != "cuda":
        raise ConfigError("precision", "bf16 autocast needs a CUDA device; use fp32 on the CPU")


def _resume_or_build(
    config: TrainConfig, spec: ModelSpec, device: torch.device, checkpoints: Path
) -> TrainState:
    state = load_latest_checkpoint(checkpoints, device)
    if state is None:
        return build_state(config, spec, device)
    before, now = state.config.to_dict(), config.to_dict()
    changed = sorted(k for k in now if before[k] != now[k] and k not in RESUMABLE_CHANGES)
    if changed or state.spec != spec:
        raise CheckpointError(
            f"{checkpoints} holds a run with a different config ({', '.join(changed) or 'spec'}); "
            "use a new output folder"
        )
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


def train(
    config: TrainConfig,
    dataset: ImageDataset,
    run_dir: Path,
    callbacks: Callbacks | None = None,
    device: torch.device | str | None = None,
) -> TrainResult:
    """Train (or resume, if run_dir/checkpoints holds a compatible run) up to config.steps."""
    callbacks = callbacks or Callbacks()
    device = resolve_device(config.device) if device is None else torch.device(device)
    _check_compatible(config, dataset, device)
    spec = model_spec_for(config, dataset)
    checkpoints = run_dir / "checkpoints"
    state = _resume_or_build(config, spec, device, checkpoints)
    loss = LOSSES[config.loss]
    channels_last = device.type == "cuda" and spec.architecture == "dcgan"
    batches = _Batches(dataset, config, device, channels_last)
    g, d, rng = _accelerated(state, channels_last)
    g.train()
    d.train()
    preview_z, preview_y = _preview_noise(state)
    batch_size, n_critic = config.batch_size, config.n_critic
    # Device-side record of the first non-finite step (-1 = none), so no per-step sync.
    first_bad_step = torch.tensor(-1, device=device)
    stats: dict[str, torch.Tensor] = {}
    existing = list_checkpoints(checkpoints)
    last_checkpoint: Path | None = existing[-1][1] if existing else None
    window_start, window_step = time.perf_counter(), state.step

    def check_finite() -> None:
        bad = int(first_bad_step)
        if bad >= 0:
            raise DivergenceError(bad, {k: float(v) for k, v in stats.items()})

    def write_checkpoint() -> Path:
        check_finite()
        path = save_checkpoint(state, checkpoints)
        if callbacks.checkpoint:
            callbacks.checkpoint(path, state.step)
        return path

    def report() -> None:
        nonlocal window_start, window_step
        check_finite()
        now = time.perf_counter()
        rate = (state.step - window_step) / max(now - window_start, 1e-9)
        window_start, window_step = now, state.step
        values = {k: float(v) for k, v in stats.items()}
        if callbacks.progress:
            callbacks.progress(
                Progress(
                    step=state.step,
                    total_steps=config.steps,
                    losses={k: values[k] for k in ("d", "g", "gp") if k in values},
                    d_real=values.get("d_real", math.nan),
                    d_fake=values.get("d_fake", math.nan),
                    steps_per_sec=rate,
                    eta_s=(config.steps - state.step) / rate if rate > 0 else math.inf,
                )
            )

    def noise() -> torch.Tensor:
        if config.noise_distribution == "uniform":
            z = torch.rand(batch_size, config.noise_dim, generator=rng).mul_(2.0).sub_(1.0)
        else:
            z = torch.randn(batch_size, config.noise_dim, generator=rng)
        return z.to(device, non_blocking=True)

    while state.step < config.steps:
        if callbacks.abort and callbacks.abort():
            last_checkpoint = write_checkpoint()
            return TrainResult(state, aborted=True, checkpoint=last_checkpoint)

        # ---- discriminator: n_critic updates on real batches and detached fakes
        labels: torch.Tensor | None = None
        for i in range(n_critic):
            real, real_labels = batches.get(state.step * n_critic + i)
            labels = real_labels if spec.conditional else None
            last = i == n_critic - 1
            with _autocast(state), torch.set_grad_enabled(last):
                fake = g(noise(), labels)  # the last one keeps its graph for G's update
            with _autocast(state):
                d_real = d(real, labels)
                d_fake = d(fake.detach(), labels)
                loss_d = loss.d_loss(d_real, d_fake)
            if loss.gradient_penalty:
                eps = torch.rand(batch_size, 1, 1, 1, generator=rng).to(device)
                gp = gradient_penalty(d, real, fake.detach().float(), labels, eps)
                loss_d = loss_d + config.gp_lambda * gp
                stats["gp"] = gp.detach()
            state.opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            state.opt_d.step()

        # ---- generator: one update through the updated D, reusing the last fake batch;
        # D frozen meanwhile: G's backward needs D's input gradients, not its weights'
        d.requires_grad_(False)
        try:
            with _autocast(state):
                loss_g = loss.g_loss(d(fake, labels))
            state.opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
        finally:
            d.requires_grad_(True)
        state.opt_g.step()
        state.step += 1
        # ramped decay: short runs are not dominated by the random initial weights
        decay = min(config.ema, (1.0 + state.step) / (10.0 + state.step))
        _ema_update(state.generator_ema, g, decay)

        with torch.no_grad():
            finite = torch.isfinite(loss_d.detach()) & torch.isfinite(loss_g.detach())
            first_bad_step = torch.where(finite | (first_bad_step >= 0), first_bad_step, state.step)
            stats["d"], stats["g"] = loss_d.detach(), loss_g.detach()
            if config.loss == "bce":
                stats["d_real"] = torch.sigmoid(d_real.detach().float()).mean()
                stats["d_fake"] = torch.sigmoid(d_fake.detach().float()).mean()
            else:
                stats["d_real"], stats["d_fake"] = d_real.detach().mean(), d_fake.detach().mean()

        done = state.step == config.steps
        if state.step % callbacks.progress_every == 0 or done:
            report()
        if callbacks.evaluate and (
            done or (config.eval_every and state.step % config.eval_every == 0)
        ):
            check_finite()
            callbacks.evaluate(state)
            window_start, window_step = time.perf_counter(), state.step  # not training time
        if state.step % config.checkpoint_every == 0 or done:
            last_checkpoint = write_checkpoint()
        if callbacks.preview and (state.step % config.sample_every == 0 or done):
            callbacks.preview(
                state.step, generate(state.generator_ema, preview_z, preview_y, device)
            )
    return TrainResult(state, aborted=False, checkpoint=last_checkpoint)
