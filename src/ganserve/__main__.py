"""`python -m ganserve` is the `ganserve` command."""

from ganserve.cli.main import app

if __name__ == "__main__":  # not when multiprocessing imports it as __mp_main__
    app()
