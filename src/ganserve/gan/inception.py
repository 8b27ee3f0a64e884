"""Optional Inception FID, from a feature extractor the operator puts on the machine.

Nothing is ever downloaded. The file must be **TorchScript** (a `torch.jit.save` archive), not
a pickle and not a plain state dict: it is loaded with `torch.jit.load(..., map_location="cpu")`,
which rebuilds the module from its own serialized code and tensors without unpickling Python
objects. Files known to fit:

- the TorchScript Inception-v3 that StyleGAN2-ADA / StyleGAN3 use for FID,
  `inception-2015-12-05.pt` (a port of the TF graph pytorch-fid and TF-FID use; its forward
  takes `return_features`, which is passed as True to get the 2048-d pool3 features);
- pytorch-fid's `InceptionV3([3])` (pool3 block) exported with `torch.jit.script` or
  `torch.jit.trace` and `.save(...)`; its (N, 2048, 1, 1) output is flattened.

Any module that maps (N, 3, 299, 299) float images with values in [0, 255] to (N, D)
features works; the loader probes it with a (2, 3, 299, 299) batch and refuses it unless the
result is (2, D) (trailing 1×1 dimensions are dropped). Images are resized to 299×299
(bilinear) and grey images are replicated to 3 channels before the extractor sees them.
TorchScript is code: only point the setting at files you trust. (torch 2.13 marks
torch.jit.load as deprecated; it still works, and its warning is silenced here.)

Its values are only comparable with Inception FIDs computed by the same file on the same
number of samples, which is why the extractor identity is the sha256 of the file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F  # noqa: N812

from ganserve.gan.config import ModelSpec
from ganserve.gan.errors import ConfigError
from ganserve.gan.metrics import frechet_distance, sample_images
from ganserve.gan.models import Generator

INCEPTION_SIZE = 299  # the input size of Inception-v3
PROBE_BATCH = 2
FEATURE_CHUNK = 64  # images per extractor call
IDENTITY_DIGITS = 16
DEFAULT_SETTING = "inception_weights"  # the option named in errors


@dataclass(frozen=True, eq=False)
class InceptionExtractor:
    """A loaded TorchScript extractor: (N, 3, 299, 299) in [0, 255] -> (N, dim) features."""

    module: torch.jit.ScriptModule  # eval mode, on the CPU until `extract` moves it
    identity: str  # first IDENTITY_DIGITS hex digits of the file's sha256
    dim: int  # D of the (N, D) features
    path: Path
    return_features: bool  # forward takes `return_features` (StyleGAN's file): passed True

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            if self.return_features:
                out = self.module(images, return_features=True)
            else:
                out = self.module(images)
        return _flatten(out)  # (N, D)

    def extract(
        self, images: torch.Tensor, device: torch.device | str = "cpu", chunk: int = FEATURE_CHUNK
    ) -> torch.Tensor:
        """(N, C, H, W) uint8 images -> (N, dim) float64 features on the CPU."""
        self.module.to(device)
        features = [
            self(prepare(images[start : start + chunk].to(device))).double().cpu()
            for start in range(0, len(images), chunk)
        ]
        return torch.cat(features) if features else torch.empty(0, self.dim, dtype=torch.float64)


def prepare(images: torch.Tensor) -> torch.Tensor:
    """(N, 1|3, H, W) uint8 -> (N, 3, 299, 299) float32 in [0, 255]: resized, grey replicated."""
    x = images.float()
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    x = F.interpolate(
        x, size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear", align_corners=False
    )
    return x.clamp_(0.0, 255.0)


def _flatten(out: object) -> torch.Tensor:
    # (N, D) as is; (N, D, 1, 1) as pytorch-fid's pool3 block gives it -> (N, D)
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"returned {type(out).__name__}, not a tensor")
    while out.ndim > 2 and out.shape[-1] == 1:
        out = out.squeeze(-1)
    return out


def load_inception_extractor(
    path: str | Path, setting: str = DEFAULT_SETTING
) -> InceptionExtractor:
    """Load and probe a local TorchScript extractor; ConfigError(setting, why) when unusable."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            setting, f"no Inception feature extractor at {path}: put a TorchScript file there"
        )
    data = path.read_bytes()  # hash exactly the bytes that get loaded
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*torch.jit.load.*deprecated")
            module = torch.jit.load(io.BytesIO(data), map_location="cpu")
    except Exception as exc:  # not a zip, a plain torch.save file, a pickle, ...
        raise ConfigError(
            setting, f"{path} is not a TorchScript module (saved with torch.jit.save): {exc}"
        ) from exc
    module.eval()
    try:
        arguments = [argument.name for argument in module.forward.schema.arguments]
    except (AttributeError, RuntimeError):
        arguments = []
    extractor = InceptionExtractor(
        module=module,
        identity=hashlib.sha256(data).hexdigest()[:IDENTITY_DIGITS],
        dim=0,
        path=path,
        return_features="return_features" in arguments,
    )
    shape = (PROBE_BATCH, 3, INCEPTION_SIZE, INCEPTION_SIZE)
    probe = torch.rand(shape, generator=torch.Generator().manual_seed(0)) * 255.0
    try:
        out = extractor(probe)
    except Exception as exc:
        raise ConfigError(
            setting, f"{path} failed on a ({PROBE_BATCH}, 3, 299, 299) probe batch: {exc}"
        ) from exc
    if out.ndim != 2 or out.shape[0] != PROBE_BATCH or out.shape[1] < 1:
        raise ConfigError(
            setting,
            f"{path} maps a ({PROBE_BATCH}, 3, 299, 299) batch to {tuple(out.shape)}; "
            f"a feature extractor must return ({PROBE_BATCH}, D)",
        )
    if not out.is_floating_point() or not bool(torch.isfinite(out).all()):
        raise ConfigError(setting, f"{path} returned non-finite or non-float features")
    return dataclasses.replace(extractor, dim=int(out.shape[1]))


def inception_frechet_distance(
    generator: Generator,
    spec: ModelSpec,
    real_images: torch.Tensor,
    extractor: InceptionExtractor,
    samples: int = 1000,
    seed: int = 0,
    device: torch.device | str = "cpu",
    real_features: torch.Tensor | None = None,
) -> float:
    """Inception FID between `samples` generated images and (N, C, H, W) uint8 real images.

    Samples are drawn as metrics.Evaluator draws them (same seeds, same classes). Pass
    `real_features` (extractor.extract(real_images)) to reuse them across calls.
    """
    images, _ = sample_images(generator, spec, samples, seed, device)  # (N, C, H, W) uint8
    fake = extractor.extract(images, device)  # (N, D)
    real = extractor.extract(real_images, device) if real_features is None else real_features
    return frechet_distance(fake, real)
