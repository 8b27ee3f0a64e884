"""The `ganserve` command line."""
