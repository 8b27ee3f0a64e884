"""Logging for every ganserve process: JSON lines (default) or plain text for people.

A JSON line carries timestamp, level, logger, message and whatever `extra` the caller
gave — the worker adds job_id, attempt and step — so one job can be followed across the
API and the workers with a single filter on job_id.
"""

from __future__ import annotations

import logging
import os
import sys

from pythonjsonlogger.json import JsonFormatter

FORMATS = ("json", "text")


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    """Route the root logger (and uvicorn's, Celery's) to stderr in the chosen format."""
    if fmt not in FORMATS:
        raise ValueError(f"log format: invalid value {fmt!r}; valid choices are: json, text")
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(
            JsonFormatter(
                "{levelname}{name}{message}",
                style="{",
                rename_fields={"levelname": "level", "name": "logger"},
                timestamp=True,
                static_fields={"pid": os.getpid()},
            )
        )
    else:
        # For people: `ganserve up` in a terminal picks this (cli/server.py, up_log_format).
        handler.setFormatter(
            logging.Formatter(
                "%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%Y-%m-%d %H:%M:%S"
            )
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # httpx logs every request at INFO: only our own health checks, noise in any format
    logging.getLogger("httpx").setLevel(max(root.level, logging.WARNING))
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "celery"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
