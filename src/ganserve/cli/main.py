"""Entry point of the `ganserve` console script."""

from __future__ import annotations

import typer

from ganserve.cli.engine import sample_command, train_command

app = typer.Typer(
    name="ganserve",
    help="Train GANs on request and serve their generators over HTTP.",
    no_args_is_help=True,
    add_completion=False,
)
app.command("train")(train_command)
app.command("sample")(sample_command)

if __name__ == "__main__":  # pragma: no cover
    app()
