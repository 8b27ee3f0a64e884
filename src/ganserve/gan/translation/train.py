"""CycleGAN training (Zhu et al. 2017) on the engine's callbacks and checkpoint files.

One step, written plainly as two named functions:

- `generator_step`: G: A -> B and F: B -> A updated together, both discriminators frozen:
  adversarial terms loss.g_loss(D_B(G(a))) + loss.g_loss(D_A(F(b))), cycle consistency
  lambda_cycle * (|F(G(a)) - a|_1 + |G(F(b)) - b|_1) and identity
  lambda_identity * lambda_cycle * (|G(b) - b|_1 + |F(a) - a|_1).
- `discriminator_step`: D_A and D_B on real images and on fakes drawn from image history
  pools (Shrivastava et al. 2017: half of each batch, once the pool is full, are older fakes).

The loop around them is the engine's (gan/train.py): the same `Callbacks` (progress, abort
at step boundaries, checkpoint, preview, evaluate), the same checkpoint folder and file names
(`step-000001000.pt`, atomic, last N kept), the same derived random streams and the same
ramped EMA; the served generators are the EMA copies. A checkpoint holds both G, both D, both
EMA G, both optimizers, both pools, the random stream and the configs, so a resumed run
equals an uninterrupted one bit for bit on the CPU.

Options that only a translation model has live in `CycleOptions`; everything else (steps,
batch size, learning rates, betas, EMA, schedules, seed, device) is the TrainConfig's.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn.functional as F  # noqa: N812

from ganserve.gan.checkpoint import (
    _refuse_unsafe_torch_load,
    check_resumable,
    list_checkpoints,
    write_checkpoint,
)
from ganserve.gan.config import (
    LR_DECAYS,
    TrainConfig,
    check_choice,
    check_float_range,
    check_int_range,
)
from ganserve.gan.errors import CheckpointError, ConfigError, DivergenceError
from ganserve.gan.losses import LOSSES, GanLoss, gradient_penalty
from ganserve.gan.state import (
    DATA_STREAM,
    NOISE_STREAM,
    PREVIEW_STREAM,
    WEIGHTS_STREAM,
    _adam,
    resolve_device,
    stream_seed,
)
from ganserve.gan.train import Callbacks, Progress
from ganserve.gan.translation.models import (
    PatchDiscriminator,
    ResnetGenerator,
    TranslatorSpec,
    build_translators,
    plan_for,
)
from ganserve.gan.translation.pairs import DomainPair, domain_order

log = logging.getLogger(__name__)

CYCLE_CHECKPOINT_FORMAT = "ganserve-cyclegan-checkpoint"
CYCLE_CHECKPOINT_VERSION = 1
PREVIEW_COLUMNS = 8  # the preview grid: 6 rows of 8 (see preview_images)
B_DATA_STREAM = DATA_STREAM + 100  # domain B's batch order, independent of A's
MAX_POOL_SIZE = 1000
_REQUIRED_KEYS = (
    "format", "format_version", "step", "config", "options", "spec", "g_ab", "g_ba", "d_a",
    "d_b", "g_ab_ema", "g_ba_ema", "opt_g", "opt_d", "pool_a", "pool_b", "rng",
)  # fmt: skip


@dataclass(frozen=True)
class CycleOptions:
    """What only a translation model has; the paper's values by default."""

    loss: str = "lsgan"  # adversarial loss, one of gan.losses.LOSSES (the paper: least squares)
    lambda_cycle: float = 10.0  # weight of the cycle-consistency L1 loss (the paper's lambda)
    lambda_identity: float = 0.5  # identity L1 weight, as a fraction of lambda_cycle; 0 = off
    pool_size: int = 50  # fakes kept per domain for the discriminators; 0 = no history
    lr_decay: str = "none"  # none | linear: lr falls linearly to 0 from lr_decay_start on
    lr_decay_start: float = 0.5  # fraction of `steps` after which the linear decay starts
    width: int = 0  # channels of G's first convolution; 0 = by image size (models.plan_for)
    blocks: int = 0  # residual blocks; 0 = by image size (3 up to 32 px, 6 to 128, 9 above)
    d_width: int = 0  # channels of D's first convolution; 0 = by image size

    def __post_init__(self) -> None:
        check_choice("loss", self.loss, tuple(LOSSES))
        check_float_range("lambda_cycle", self.lambda_cycle, 0.0, 1000.0)
        check_float_range("lambda_identity", self.lambda_identity, 0.0, 10.0)
        check_float_range("lr_decay_start", self.lr_decay_start, 0.0, 1.0)
        check_choice("lr_decay", self.lr_decay, LR_DECAYS)
        check_int_range("pool_size", self.pool_size, 0, MAX_POOL_SIZE)
        check_int_range("width", self.width, 0, 256)
        check_int_range("blocks", self.blocks, 0, 12)
        check_int_range("d_width", self.d_width, 0, 256)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_config(cls, config: TrainConfig) -> CycleOptions:
        """The options a TrainConfig declares (its cyclegan-only fields)."""
        return cls(
            loss=config.cycle_loss,
            lambda_cycle=config.lambda_cycle,
            lambda_identity=config.lambda_identity,
            pool_size=config.pool_size,
            lr_decay=config.lr_decay,
            lr_decay_start=config.lr_decay_start,
            width=config.cyclegan_width,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CycleOptions:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(unknown[0], f"unknown field; valid fields are: {sorted(names)}")
        return cls(**data)


def spec_for(pair: DomainPair, options: CycleOptions) -> TranslatorSpec:
    plan = plan_for(pair.image_size)
    return TranslatorSpec(
        channels=pair.channels,
        image_size=pair.image_size,
        width=options.width or plan.width,
        blocks=options.blocks or plan.blocks,
        downsamplings=plan.downsamplings,
        d_width=options.d_width or plan.d_width,
        d_layers=plan.d_layers,
        domain_a=pair.a.name,
        domain_b=pair.b.name,
        class_names=pair.class_names,
    )


# ----------------------------------------------------------------------------- image pool


class ImagePool:
    """The history of generated images one discriminator sees (the paper's buffer of 50).

    Until full, every fake is stored and passed on. Then each fake is, with probability 1/2,
    swapped for a random stored one (which is returned) or passed on. Decisions come from the
    training's seeded CPU stream; the stored images are part of the checkpoint.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.images: torch.Tensor | None = None  # (size, C, H, W), allocated on first use
        self.count = 0

    def query(self, fakes: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
        """(B, C, H, W) detached fakes -> (B, C, H, W) for the discriminator."""
        if self.size == 0:
            return fakes
        if self.images is None:
            self.images = fakes.new_zeros(self.size, *fakes.shape[1:])
        out = fakes.clone()
        coins = torch.rand(len(fakes), generator=rng).tolist()
        slots = torch.randint(self.size, (len(fakes),), generator=rng).tolist()
        for i in range(len(fakes)):
            if self.count < self.size:
                self.images[self.count] = fakes[i]
                self.count += 1
            elif coins[i] > 0.5:
                out[i] = self.images[slots[i]]
                self.images[slots[i]] = fakes[i]
        return out

    def state_dict(self) -> dict[str, Any]:
        stored = self.images[: self.count].cpu() if self.images is not None else torch.empty(0)
        return {"size": self.size, "images": stored}

    def load_state_dict(self, data: dict[str, Any], device: torch.device) -> None:
        stored: torch.Tensor = data["images"]
        if int(data["size"]) != self.size or len(stored) > self.size:
            raise CheckpointError(
                f"image pool of {data['size']} does not fit pool_size {self.size}"
            )
        self.count = len(stored)
        if self.count:
            self.images = stored.new_zeros(self.size, *stored.shape[1:]).to(device)
            self.images[: self.count] = stored.to(device)


# ----------------------------------------------------------------------------- state


@dataclass
class CycleState:
    config: TrainConfig
    options: CycleOptions
    spec: TranslatorSpec
    g_ab: ResnetGenerator  # G: A -> B
    g_ba: ResnetGenerator  # F: B -> A
    d_a: PatchDiscriminator  # real A vs F(b)
    d_b: PatchDiscriminator  # real B vs G(a)
    g_ab_ema: ResnetGenerator  # served; eval mode, no gradients
    g_ba_ema: ResnetGenerator
    opt_g: torch.optim.Adam  # both generators
    opt_d: torch.optim.Adam  # both discriminators
    pool_a: ImagePool  # fakes of domain A, for D_A
    pool_b: ImagePool
    noise_rng: torch.Generator  # CPU stream for pool decisions and WGAN-GP epsilons
    device: torch.device
    step: int = 0


def build_cycle_state(
    config: TrainConfig, options: CycleOptions, spec: TranslatorSpec, device: torch.device
) -> CycleState:
    """Fresh networks with weights seeded by config.seed (built on the CPU, then moved)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(stream_seed(config.seed, WEIGHTS_STREAM))
        g_ab, g_ba, d_a, d_b = build_translators(spec)
    emas = [copy.deepcopy(g).eval().requires_grad_(False).to(device) for g in (g_ab, g_ba)]
    g_ab, g_ba, d_a, d_b = g_ab.to(device), g_ba.to(device), d_a.to(device), d_b.to(device)
    return CycleState(
        config=config,
        options=options,
        spec=spec,
        g_ab=g_ab,
        g_ba=g_ba,
        d_a=d_a,
        d_b=d_b,
        g_ab_ema=emas[0],
        g_ba_ema=emas[1],
        opt_g=_adam([*g_ab.parameters(), *g_ba.parameters()], config.lr_g, config, device),
        opt_d=_adam([*d_a.parameters(), *d_b.parameters()], config.lr_d, config, device),
        pool_a=ImagePool(options.pool_size),
        pool_b=ImagePool(options.pool_size),
        noise_rng=torch.Generator().manual_seed(stream_seed(config.seed, NOISE_STREAM)),
        device=device,
    )


# ----------------------------------------------------------------------------- checkpoints


def save_cycle_checkpoint(state: CycleState, folder: Path) -> Path:
    """The full state, atomically, in the engine's file naming; keeps the newest N."""
    nets = ("g_ab", "g_ba", "d_a", "d_b", "g_ab_ema", "g_ba_ema")
    payload: dict[str, Any] = {
        "format": CYCLE_CHECKPOINT_FORMAT,
        "format_version": CYCLE_CHECKPOINT_VERSION,
        "step": state.step,
        "config": state.config.to_dict(),
        "options": state.options.to_dict(),
        "spec": state.spec.to_dict(),
        **{name: getattr(state, name).state_dict() for name in nets},
        "opt_g": state.opt_g.state_dict(),
        "opt_d": state.opt_d.state_dict(),
        "pool_a": state.pool_a.state_dict(),
        "pool_b": state.pool_b.state_dict(),
        "rng": {"noise": state.noise_rng.get_state()},
    }
    return write_checkpoint(payload, folder, state.step, state.config.keep_checkpoints)


def load_cycle_checkpoint(path: Path, device: torch.device | str = "cpu") -> CycleState:
    """Rebuild the full state from one checkpoint file (tensors and plain values only)."""
    _refuse_unsafe_torch_load()
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torn zip, foreign pickle, anything torch refuses
        raise CheckpointError(f"{path.name} is not a loadable checkpoint: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != CYCLE_CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path.name} is not a CycleGAN checkpoint")
    if payload.get("format_version") != CYCLE_CHECKPOINT_VERSION:
        raise CheckpointError(
            f"unsupported CycleGAN checkpoint format version {payload.get('format_version')!r}"
        )
    missing = [key for key in _REQUIRED_KEYS if key not in payload]
    if missing:
        raise CheckpointError(f"{path.name} is missing {', '.join(missing)}")
    device = torch.device(device)
    try:
        state = build_cycle_state(
            TrainConfig.from_dict(payload["config"]),
            CycleOptions.from_dict(payload["options"]),
            TranslatorSpec.from_dict(payload["spec"]),
            device,
        )
        for name in ("g_ab", "g_ba", "d_a", "d_b", "g_ab_ema", "g_ba_ema", "opt_g", "opt_d"):
            getattr(state, name).load_state_dict(payload[name])
        state.pool_a.load_state_dict(payload["pool_a"], device)
        state.pool_b.load_state_dict(payload["pool_b"], device)
        state.noise_rng.set_state(payload["rng"]["noise"])
        state.step = int(payload["step"])
    except (ConfigError, KeyError, RuntimeError, TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint does not match its own description: {exc}") from exc
    return state


def load_latest_cycle_checkpoint(
    folder: Path, device: torch.device | str = "cpu"
) -> CycleState | None:
    """The newest checkpoint that loads; unreadable ones are skipped with a warning."""
    for step, path in reversed(list_checkpoints(folder)):
        try:
            return load_cycle_checkpoint(path, device)
        except CheckpointError as exc:
            log.warning("skipping checkpoint at step %d: %s", step, exc)
    return None


def _resume_or_build(
    config: TrainConfig,
    options: CycleOptions,
    spec: TranslatorSpec,
    device: torch.device,
    checkpoints: Path,
) -> CycleState:
    state = load_latest_cycle_checkpoint(checkpoints, device)
    if state is None:
        return build_cycle_state(config, options, spec, device)
    same_model = state.spec == spec and state.options == options
    check_resumable(checkpoints, state.config, config, same_model=same_model)
    state.config = config
    log.info("resuming from step %d", state.step)
    return state


# ----------------------------------------------------------------------------- the step


class _Batches:
    """Real batches of one domain in an order that is a pure function of (seed, index)."""

    def __init__(self, images: torch.Tensor, seed: int, batch_size: int, device: torch.device):
        self.images = images.to(device)  # (N, C, H, W) uint8, kept on the device
        self.seed, self.batch_size = seed, batch_size
        self.per_epoch = len(images) // batch_size  # drop the last partial batch
        self._epoch, self._order = -1, torch.empty(0, dtype=torch.long)

    def get(self, index: int) -> torch.Tensor:
        epoch, offset = divmod(index, self.per_epoch)
        if epoch != self._epoch:
            rng = torch.Generator().manual_seed(stream_seed(self.seed, 0, epoch))
            self._order = torch.randperm(len(self.images), generator=rng).to(self.images.device)
            self._epoch = epoch
        rows = self._order[offset * self.batch_size : (offset + 1) * self.batch_size]
        return self.images.index_select(0, rows).float().div_(127.5).sub_(1.0)  # -> [-1, 1]


@dataclass
class Fakes:
    """The translations of one generator step, reused (detached) by the D step."""

    a: torch.Tensor  # F(b): (B, C, H, W)
    b: torch.Tensor  # G(a)


def generator_step(
    state: CycleState, real_a: torch.Tensor, real_b: torch.Tensor, loss: GanLoss
) -> tuple[Fakes, dict[str, torch.Tensor]]:
    """One update of G and F, both discriminators frozen; returns the fakes and the losses."""
    opts = state.options
    n = len(real_a)
    # Three generator passes instead of six: instance norm is per image, so one forward of
    # k stacked batches equals k forwards of one, and costs less on small batches.
    #   G(a), G(b)        <- G on [a, b]
    #   F(b), F(a), F(G(a)) <- F on [b, a, G(a)]
    #   G(F(b))           <- G on F(b)
    identity_on = opts.lambda_identity > 0
    first = state.g_ab(torch.cat([real_a, real_b]) if identity_on else real_a)
    fake_b = first[:n]
    second = state.g_ba(torch.cat([real_b, real_a, fake_b] if identity_on else [real_b, fake_b]))
    fake_a, rec_a = second[:n], second[-n:]
    rec_b = state.g_ab(fake_a)
    cycle = F.l1_loss(rec_a, real_a) + F.l1_loss(rec_b, real_b)
    identity = torch.zeros((), device=real_a.device)
    if identity_on:
        identity = F.l1_loss(first[n:], real_b) + F.l1_loss(second[n : 2 * n], real_a)
    # G needs D's input gradients, not its weights'
    state.d_a.requires_grad_(False)
    state.d_b.requires_grad_(False)
    try:
        adversarial = loss.g_loss(state.d_b(fake_b)) + loss.g_loss(state.d_a(fake_a))
        total = (
            adversarial
            + opts.lambda_cycle * cycle
            + opts.lambda_identity * opts.lambda_cycle * identity
        )
        state.opt_g.zero_grad(set_to_none=True)
        total.backward()
    finally:
        state.d_a.requires_grad_(True)
        state.d_b.requires_grad_(True)
    state.opt_g.step()
    stats = {"g": adversarial.detach(), "cycle": cycle.detach(), "identity": identity.detach()}
    return Fakes(a=fake_a.detach(), b=fake_b.detach()), stats


def discriminator_step(
    state: CycleState, real_a: torch.Tensor, real_b: torch.Tensor, fakes: Fakes, loss: GanLoss
) -> dict[str, torch.Tensor]:
    """One update of D_A and D_B on real images and on fakes from the history pools."""
    rng = state.noise_rng
    pooled_a = state.pool_a.query(fakes.a, rng)  # (B, C, H, W)
    pooled_b = state.pool_b.query(fakes.b, rng)
    total = torch.zeros((), device=real_a.device)
    stats: dict[str, torch.Tensor] = {}
    for name, d, real, fake in (
        ("a", state.d_a, real_a, pooled_a),
        ("b", state.d_b, real_b, pooled_b),
    ):
        d_real, d_fake = d(torch.cat([real, fake])).split(len(real))  # (B, 1, h, w) each
        total = total + loss.d_loss(d_real, d_fake)
        if loss.gradient_penalty:
            eps = torch.rand(len(real), 1, 1, 1, generator=rng).to(real.device)
            gp = gradient_penalty(d, real, fake, None, eps)
            total = total + state.config.gp_lambda * gp
            stats[f"gp_{name}"] = gp.detach()
        stats[f"d_real_{name}"], stats[f"d_fake_{name}"] = d_real.detach(), d_fake.detach()
    state.opt_d.zero_grad(set_to_none=True)
    total.backward()
    state.opt_d.step()
    stats["d"] = total.detach()
    return stats


def learning_rate(base: float, step: int, config: TrainConfig, options: CycleOptions) -> float:
    """The lr of `step` (0-based): constant, then linear to 0 at config.steps when enabled."""
    if options.lr_decay == "none":
        return base
    start = math.floor(options.lr_decay_start * config.steps)
    if step < start:
        return base
    return base * max(0.0, 1.0 - (step - start) / max(1, config.steps - start))


def _ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    # the engine's EMA (gan/train.py); instance norm has no buffers to copy
    ema_params: list[torch.Tensor] = list(ema.parameters())
    torch._foreach_lerp_(ema_params, [p.detach() for p in model.parameters()], 1.0 - decay)


# ----------------------------------------------------------------------------- the loop


@dataclass(frozen=True)
class CycleResult:
    state: CycleState
    aborted: bool  # True when abort_fn stopped the run (a checkpoint was written first)
    checkpoint: Path | None  # the last checkpoint written


def _check_compatible(config: TrainConfig, pair: DomainPair, device: torch.device) -> None:
    for field, domain in (("dataset", pair.a), ("dataset_b", pair.b)):
        if config.batch_size > len(domain):
            raise ConfigError(
                "batch_size", f"{config.batch_size} exceeds the {len(domain)} images of "
                f"{field} {domain.name!r}",
            )  # fmt: skip
    if config.precision != "fp32":
        raise ConfigError("precision", "translation models train in fp32")
    if config.n_critic != 1:
        raise ConfigError("n_critic", "translation models take one D step per G step")


def preview_inputs(
    pair: DomainPair, seed: int, count: int = PREVIEW_COLUMNS
) -> tuple[torch.Tensor, torch.Tensor]:
    """(count, C, H, W) uint8 real images of A and of B, chosen by the seed."""
    a = pair.a.images[domain_order(len(pair.a), stream_seed(seed, PREVIEW_STREAM, 0))[:count]]
    b = pair.b.images[domain_order(len(pair.b), stream_seed(seed, PREVIEW_STREAM, 1))[:count]]
    return a, b


def train_cyclegan(
    config: TrainConfig,
    options: CycleOptions,
    pair: DomainPair,
    run_dir: Path,
    callbacks: Callbacks | None = None,
    device: torch.device | str | None = None,
) -> CycleResult:
    """Train (or resume, if run_dir/checkpoints holds a compatible run) up to config.steps.

    `callbacks.evaluate`, when given, receives the CycleState (not a TrainState).
    """
    from ganserve.gan.translation.translate import translation_grid  # noqa: PLC0415 (cycle)

    callbacks = callbacks or Callbacks()
    device = resolve_device(config.device) if device is None else torch.device(device)
    _check_compatible(config, pair, device)
    spec = spec_for(pair, options)
    checkpoints = run_dir / "checkpoints"
    state = _resume_or_build(config, options, spec, device, checkpoints)
    loss = LOSSES[options.loss]
    batches_a = _Batches(
        pair.a.images, stream_seed(config.seed, DATA_STREAM), config.batch_size, device
    )
    batches_b = _Batches(
        pair.b.images, stream_seed(config.seed, B_DATA_STREAM), config.batch_size, device
    )
    for net in (state.g_ab, state.g_ba, state.d_a, state.d_b):
        net.train()
    preview_a, preview_b = preview_inputs(pair, config.seed)
    evaluate = cast(Callable[[CycleState], None] | None, callbacks.evaluate)
    first_bad_step = torch.tensor(-1, device=device)  # device-side: no per-step sync
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
        path = save_cycle_checkpoint(state, checkpoints)
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
                    losses={k: values[k] for k in ("d", "g", "cycle", "identity") if k in values},
                    d_real=values["d_real"],
                    d_fake=values["d_fake"],
                    steps_per_sec=rate,
                    eta_s=(config.steps - state.step) / rate if rate > 0 else math.inf,
                )
            )

    while state.step < config.steps:
        if callbacks.abort and callbacks.abort():
            last_checkpoint = write_checkpoint()
            return CycleResult(state, aborted=True, checkpoint=last_checkpoint)
        for group in state.opt_g.param_groups:
            group["lr"] = learning_rate(config.lr_g, state.step, config, options)
        for group in state.opt_d.param_groups:
            group["lr"] = learning_rate(config.lr_d, state.step, config, options)
        real_a, real_b = batches_a.get(state.step), batches_b.get(state.step)

        # ---- generators: G and F together, discriminators frozen
        fakes, g_stats = generator_step(state, real_a, real_b, loss)
        # ---- discriminators: real images vs fakes from the history pools
        d_stats = discriminator_step(state, real_a, real_b, fakes, loss)

        state.step += 1
        decay = min(config.ema, (1.0 + state.step) / (10.0 + state.step))  # the engine's ramp
        _ema_update(state.g_ab_ema, state.g_ab, decay)
        _ema_update(state.g_ba_ema, state.g_ba, decay)

        with torch.no_grad():
            finite = torch.isfinite(d_stats["d"]) & torch.isfinite(g_stats["g"] + g_stats["cycle"])
            first_bad_step = torch.where(finite | (first_bad_step >= 0), first_bad_step, state.step)
            stats.update(g_stats)
            stats["d"] = d_stats["d"]
            real_scores = torch.cat([d_stats["d_real_a"].flatten(), d_stats["d_real_b"].flatten()])
            fake_scores = torch.cat([d_stats["d_fake_a"].flatten(), d_stats["d_fake_b"].flatten()])
            if options.loss == "bce":
                real_scores, fake_scores = torch.sigmoid(real_scores), torch.sigmoid(fake_scores)
            stats["d_real"], stats["d_fake"] = real_scores.mean(), fake_scores.mean()

        done = state.step == config.steps
        if state.step % callbacks.progress_every == 0 or done:
            report()
        if evaluate and (done or (config.eval_every and state.step % config.eval_every == 0)):
            check_finite()
            evaluate(state)
            window_start, window_step = time.perf_counter(), state.step  # not training time
        if state.step % config.checkpoint_every == 0 or done:
            last_checkpoint = write_checkpoint()
        if callbacks.preview and (state.step % config.sample_every == 0 or done):
            grid_rows = translation_grid(
                state.g_ab_ema, state.g_ba_ema, preview_a, preview_b, device
            )
            callbacks.preview(state.step, grid_rows)
    return CycleResult(state, aborted=False, checkpoint=last_checkpoint)
