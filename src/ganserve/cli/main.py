"""Entry point of the `ganserve` console script."""

from __future__ import annotations

import typer

from ganserve.cli.client import jobs_app, models_app
from ganserve.cli.engine import sample_command, train_command
from ganserve.cli.server import api_command, migrate_command, up_command, worker_command
from ganserve.cli.translate import translate_command  # also adds `models translate`

app = typer.Typer(
    name="ganserve",
    help="Train GANs on request and serve their generators over HTTP.",
    no_args_is_help=True,
    add_completion=False,
)
app.command("up")(up_command)
app.command("api")(api_command)
app.command("worker")(worker_command)
app.command("migrate")(migrate_command)
app.command("train")(train_command)
app.command("sample")(sample_command)
app.command("translate")(translate_command)
app.add_typer(jobs_app, name="jobs")
app.add_typer(models_app, name="models")

if __name__ == "__main__":  # pragma: no cover
    app()
