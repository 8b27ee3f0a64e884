"""`python -m ganserve` is the `ganserve` command."""

from ganserve.cli.main import app

app()
