"""Validation of the identifiers the store puts in SQL rows and file paths."""

from __future__ import annotations

import re

from ganserve.store.errors import InvalidValueError

MODEL_NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"
JOB_ID_PATTERN = r"^[0-9a-f]{32}$"
ALIAS_PATTERN = r"^[a-z][a-z0-9_-]{0,31}$"
# Aliases computed by the registry, never stored: `latest` = the newest live version.
IMPLICIT_ALIASES = frozenset({"latest"})

_MODEL_NAME = re.compile(MODEL_NAME_PATTERN)
_JOB_ID = re.compile(JOB_ID_PATTERN)
_ALIAS = re.compile(ALIAS_PATTERN)


def validate_model_name(name: str, field: str = "name") -> str:
    """Return `name` if it is a valid model name, else raise InvalidValueError."""
    if not isinstance(name, str) or not _MODEL_NAME.fullmatch(name):
        raise InvalidValueError(
            field,
            f"invalid model name {name!r}: use 1-64 characters of lowercase letters, digits, "
            f"'.', '_' and '-', starting with a letter or digit ({MODEL_NAME_PATTERN})",
        )
    return name


def validate_job_id(job_id: str, field: str = "job_id") -> str:
    """Return `job_id` if it is 32 lowercase hex digits (a uuid4 hex), else raise."""
    if not isinstance(job_id, str) or not _JOB_ID.fullmatch(job_id):
        raise InvalidValueError(field, f"invalid job id {job_id!r}: expected 32 hex digits")
    return job_id


def validate_alias(alias: str, field: str = "alias") -> str:
    """Return `alias` if it is a settable alias, else raise InvalidValueError."""
    if alias in IMPLICIT_ALIASES:
        raise InvalidValueError(
            field,
            f"alias {alias!r} is implicit (always the newest version) and cannot be set or "
            "deleted; choose another name such as 'production' or 'best'",
        )
    if not isinstance(alias, str) or not _ALIAS.fullmatch(alias):
        raise InvalidValueError(
            field,
            f"invalid alias {alias!r}: use 1-32 characters of lowercase letters, digits, '_' "
            f"and '-', starting with a letter ({ALIAS_PATTERN})",
        )
    return alias
