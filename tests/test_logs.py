from __future__ import annotations

import json
import logging

import pytest

from ganserve.logs import configure_logging


@pytest.fixture(autouse=True)
def _restore_root_logger() -> object:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield None
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_lines_carry_the_job_fields(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "json")
    logging.getLogger("ganserve.worker").info(
        "checkpoint written", extra={"job_id": "abc", "attempt": 2, "step": 40}
    )
    logging.getLogger("ganserve.worker").debug("not shown at INFO")
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["message"] == "checkpoint written" and record["level"] == "INFO"
    assert (record["job_id"], record["attempt"], record["step"]) == ("abc", 2, 40)
    assert record["logger"] == "ganserve.worker" and "timestamp" in record


def test_text_format_and_invalid_format(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("WARNING", "text")
    logging.getLogger("x").warning("plain %s", "words")
    assert "WARNING x: plain words" in capsys.readouterr().err
    with pytest.raises(ValueError, match="valid choices are: json, text"):
        configure_logging("INFO", "yaml")
