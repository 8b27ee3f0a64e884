"""The HTTP API (FastAPI): thin routes over functions that can be tested alone."""
