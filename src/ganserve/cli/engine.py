"""`ganserve train` and `ganserve sample`: the engine on its own, no service involved."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any

import torch
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from ganserve.cli.images import READABLE_PX, picture_size, readable_scale
from ganserve.gan import checkpoint as ckpt
from ganserve.gan.config import CONFIG_FIELDS, ConfigField, TrainConfig
from ganserve.gan.data import load_dataset
from ganserve.gan.errors import GanError
from ganserve.gan.sample import consecutive_seeds, encode_png, make_grid, sample_png
from ganserve.gan.train import Callbacks, train
from ganserve.gan.train import Progress as TrainProgress
from ganserve.gan.translation.pairs import load_pair
from ganserve.gan.translation.train import CycleOptions, train_cyclegan
from ganserve.gan.translation.translate import export_translator

console = Console(stderr=True)

DataDirOption = Annotated[
    Path, typer.Option("--data-dir", envvar="GANSERVE_DATA_DIR", help="Folder with datasets.")
]


def _option_help(declared: ConfigField) -> str:
    """The declared help, with the valid range where the help does not say it."""
    if declared.low is None or declared.high is None or declared.type is bool:
        return declared.help
    low = f"{declared.low:g}" if declared.type is float else str(int(declared.low))
    high = f"{declared.high:g}" if declared.type is float else str(int(declared.high))
    bracket = "(" if declared.low_open else "["
    return f"{declared.help} Range: {bracket}{low}, {high}]."


def config_options(fields: Sequence[ConfigField]) -> list[inspect.Parameter]:
    """One `--option` per declared config field (gan/config.py), in declaration order."""
    parameters = []
    for declared in fields:
        kind: Any = declared.type | None if declared.optional else declared.type
        metavar = f"[{'|'.join(declared.choices)}]" if declared.choices else None
        flag = declared.name.replace("_", "-")
        option = typer.Option(
            f"--{flag}/--no-{flag}" if declared.type is bool else f"--{flag}",
            help=_option_help(declared),
            metavar=metavar,
            rich_help_panel="Training config",
        )
        parameters.append(
            inspect.Parameter(
                declared.name,
                inspect.Parameter.KEYWORD_ONLY,
                default=declared.default,
                annotation=Annotated[kind, option],
            )
        )
    return parameters


def train_command(out: Path, data_dir: Path = Path("ganserve-data"), **options: Any) -> None:
    """Train a GAN and export its EMA generator into OUT (generator.safetensors + .json)."""
    try:
        config = TrainConfig(**options)
        if config.architecture == "cyclegan":  # two domains; a translator, not a generator
            pair = load_pair(config.dataset, config.dataset_b, data_dir)
        else:
            data = load_dataset(config.dataset, data_dir)
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
        task = bar.add_task("train", total=config.steps, info="")

        def on_progress(p: TrainProgress) -> None:
            info = f"D {p.losses['d']:.3f}  G {p.losses['g']:.3f}  {p.steps_per_sec:.1f} it/s"
            bar.update(task, completed=p.step, info=info)

        def on_preview(step: int, images: torch.Tensor) -> None:
            (out / "preview.png").write_bytes(encode_png(make_grid(images, 8)))

        callbacks = Callbacks(progress=on_progress, preview=on_preview)
        try:
            if config.architecture == "cyclegan":
                cycle_options = CycleOptions.from_config(config)
                cycle = train_cyclegan(config, cycle_options, pair, out, callbacks)
                state = cycle.state
                export_translator(state.g_ab_ema, state.g_ba_ema, out, {
                    "dataset": config.dataset, "dataset_b": pair.b.name, "step": state.step,
                    "train_config": config.to_dict(),
                })  # fmt: skip
                console.print(f"step {state.step}: translator in {out} (ganserve translate)")
                return
            result = train(config, data, out, callbacks)
        except GanError as exc:
            console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(1) from exc
    ckpt.export_generator(result.state, out, config.dataset)
    console.print(f"step {result.state.step}: checkpoint {result.checkpoint}, generator in {out}")


def with_config_options(
    command: Callable[..., None],
    fields: Sequence[ConfigField],
    before: Sequence[inspect.Parameter] = (),
    after: Sequence[inspect.Parameter] = (),
) -> Callable[..., None]:
    """`command` with the signature typer reads: `before`, an option per field, `after`."""
    parameters = [*before, *config_options(fields), *after]
    command.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in parameters}
    return command


with_config_options(
    train_command,
    CONFIG_FIELDS,
    before=[
        inspect.Parameter(
            "out",
            inspect.Parameter.KEYWORD_ONLY,
            annotation=Annotated[
                Path, typer.Option("--out", "-o", help="Run folder (resumes if it exists).")
            ],
        )
    ],
    after=[
        inspect.Parameter(
            "data_dir",
            inspect.Parameter.KEYWORD_ONLY,
            default=Path("ganserve-data"),
            annotation=DataDirOption,
        )
    ],
)


def sample_command(
    run: Annotated[Path, typer.Argument(help="A run folder holding generator.json.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="PNG file to write.")],
    seed: Annotated[int, typer.Option(help="Seed of the first image; image i uses seed + i.")] = 0,
    n: Annotated[int, typer.Option("-n", help="Images (1 = one image, more = a grid).")] = 1,
    nrow: Annotated[int | None, typer.Option(help="Images per grid row.")] = None,
    label: Annotated[int | None, typer.Option(help="Class (conditional models).")] = None,
    truncation: Annotated[float | None, typer.Option(help="Keep z's entries in [-t, t].")] = None,
    scale: Annotated[
        int | None,
        typer.Option(
            help=f"Integer nearest-neighbour upscaling (default: {READABLE_PX} px long side)."
        ),
    ] = None,
) -> None:
    """Write a PNG sampled from an exported generator."""
    if n < 1:
        console.print("[red]error:[/red] -n must be at least 1")
        raise typer.Exit(2)
    try:
        loaded = ckpt.load_generator(run)
        if scale is None:
            _, height, width = loaded.generator.spec.image_shape
            scale = readable_scale(picture_size(height, width, n, nrow))
        labels = [label] * n if label is not None else None
        png = sample_png(
            loaded.generator, consecutive_seeds(seed, n), labels=labels,
            truncation=truncation, nrow=nrow, scale=scale,
        )  # fmt: skip
    except GanError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    output.write_bytes(png)
    console.print(f"wrote {output} ({len(png)} bytes)")
