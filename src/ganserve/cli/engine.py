"""`ganserve train` and `ganserve sample`: the engine on its own, no service involved."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import torch
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from ganserve.gan import checkpoint as ckpt
from ganserve.gan.config import TrainConfig
from ganserve.gan.data import load_dataset
from ganserve.gan.errors import GanError
from ganserve.gan.sample import encode_png, make_grid, sample_png
from ganserve.gan.train import Callbacks, train
from ganserve.gan.train import Progress as TrainProgress

console = Console(stderr=True)

DataDirOption = Annotated[
    Path, typer.Option("--data-dir", envvar="GANSERVE_DATA_DIR", help="Folder with datasets.")
]


def train_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder (resumes if it exists).")],
    dataset: Annotated[
        str, typer.Option(help="digits, mnist, fashion-mnist, cifar10, or an upload.")
    ] = "digits",
    steps: Annotated[int, typer.Option(help="Generator updates.")] = 2000,
    architecture: Annotated[str, typer.Option(help="mlp or dcgan.")] = "mlp",
    loss: Annotated[str, typer.Option(help="bce, wgan-gp or hinge.")] = "bce",
    conditional: Annotated[bool, typer.Option(help="Class-conditional GAN.")] = False,
    batch_size: Annotated[int, typer.Option(help="Images per batch.")] = 128,
    noise_dim: Annotated[int, typer.Option(help="Length of z.")] = 100,
    noise: Annotated[str, typer.Option(help="normal or uniform.")] = "normal",
    lr_g: Annotated[float, typer.Option(help="Adam learning rate of G.")] = 2e-4,
    lr_d: Annotated[float, typer.Option(help="Adam learning rate of D.")] = 2e-4,
    beta1: Annotated[float, typer.Option(help="Adam beta1.")] = 0.5,
    beta2: Annotated[float, typer.Option(help="Adam beta2.")] = 0.999,
    n_critic: Annotated[int, typer.Option(help="D steps per G step.")] = 1,
    ema: Annotated[float, typer.Option(help="EMA decay of the served G.")] = 0.999,
    checkpoint_every: Annotated[int, typer.Option(help="Steps between checkpoints.")] = 500,
    sample_every: Annotated[int, typer.Option(help="Steps between preview grids.")] = 500,
    seed: Annotated[int, typer.Option(help="Seed of weights, data order and noise.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    precision: Annotated[str, typer.Option(help="fp32 or bf16 (CUDA).")] = "fp32",
    compile: Annotated[bool, typer.Option(help="torch.compile G and D (slow start).")] = False,
    data_dir: DataDirOption = Path("ganserve-data"),
) -> None:
    """Train a GAN and export its EMA generator into OUT (generator.safetensors + .json)."""
    try:
        config = TrainConfig(
            dataset=dataset, architecture=architecture, loss=loss, conditional=conditional,
            noise_dim=noise_dim, noise_distribution=noise, steps=steps, batch_size=batch_size,
            lr_g=lr_g, lr_d=lr_d, beta1=beta1, beta2=beta2, n_critic=n_critic, ema=ema,
            checkpoint_every=checkpoint_every, sample_every=sample_every, seed=seed,
            device=device, precision=precision, compile=compile,
        )  # fmt: skip
        data = load_dataset(dataset, data_dir)
    except GanError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc

    out.mkdir(parents=True, exist_ok=True)
    with Progress(
        TextColumn("[bold]train[/bold]"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} steps"),
        TextColumn("{task.fields[info]}"),
        TimeRemainingColumn(),
        console=console,
    ) as bar:
        task = bar.add_task("train", total=steps, info="")

        def on_progress(p: TrainProgress) -> None:
            info = f"D {p.losses['d']:.3f}  G {p.losses['g']:.3f}  {p.steps_per_sec:.1f} it/s"
            bar.update(task, completed=p.step, info=info)

        def on_preview(step: int, images: torch.Tensor) -> None:
            (out / "preview.png").write_bytes(encode_png(make_grid(images, 8)))

        callbacks = Callbacks(progress=on_progress, preview=on_preview)
        try:
            result = train(config, data, out, callbacks)
        except GanError as exc:
            console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(1) from exc
    ckpt.export_generator(result.state, out, dataset)
    console.print(f"step {result.state.step}: checkpoint {result.checkpoint}, generator in {out}")


def sample_command(
    run: Annotated[Path, typer.Argument(help="A run folder holding generator.json.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="PNG file to write.")],
    seed: Annotated[int, typer.Option(help="Seed of the first image; image i uses seed + i.")] = 0,
    n: Annotated[int, typer.Option("-n", help="Images (1 = one image, more = a grid).")] = 1,
    nrow: Annotated[int | None, typer.Option(help="Images per grid row.")] = None,
    label: Annotated[int | None, typer.Option(help="Class (conditional models).")] = None,
    truncation: Annotated[float | None, typer.Option(help="Resample |z| above this.")] = None,
    scale: Annotated[int, typer.Option(help="Integer nearest-neighbour upscaling.")] = 1,
) -> None:
    """Write a PNG sampled from an exported generator."""
    if n < 1:
        console.print("[red]error:[/red] -n must be at least 1")
        raise typer.Exit(2)
    try:
        loaded = ckpt.load_generator(run)
        labels = [label] * n if label is not None else None
        png = sample_png(
            loaded.generator, [seed + i for i in range(n)], labels=labels,
            truncation=truncation, nrow=nrow, scale=scale,
        )  # fmt: skip
    except GanError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    output.write_bytes(png)
    console.print(f"wrote {output} ({len(png)} bytes)")
