"""Validation of the identifiers the store puts in SQL rows and file paths.

One rule set per kind of identifier (model name, job id, alias, version reference, series),
used by every route that takes one in its path, query or body, and by the store itself. A
NUL byte is refused before any SQL (`reject_nul`, and `db.py` checks every statement's
parameters): PostgreSQL cannot store it and its driver would raise instead of answering.
Values echoed in an error are cut to ECHO_CHARS characters.
"""

from __future__ import annotations

import re

from ganserve.store.errors import InvalidValueError

MODEL_NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"
JOB_ID_PATTERN = r"^[0-9a-f]{32}$"
ALIAS_PATTERN = r"^[a-z][a-z0-9_-]{0,31}$"
# A version reference: a version number (1 .. 2**31-1) or an alias (implicit ones included).
VERSION_REF_PATTERN = r"^([1-9][0-9]{0,9}|[a-z][a-z0-9_-]{0,31})$"
MAX_VERSION = 2**31 - 1
# A history series: loss_d, fd, class_coverage, ... (what the worker and evaluators write).
SERIES_PATTERN = r"^[a-z][a-z0-9_.:-]{0,63}$"
ECHO_CHARS = 80  # characters of a refused value repeated in an error message
# Aliases computed by the registry, never stored: `latest` = the newest live version.
IMPLICIT_ALIASES = frozenset({"latest"})
# Aliases the workers keep: `best` = the version with the lowest final Fréchet distance.
AUTOMATIC_ALIASES = frozenset({"best"})

_MODEL_NAME = re.compile(MODEL_NAME_PATTERN)
_JOB_ID = re.compile(JOB_ID_PATTERN)
_ALIAS = re.compile(ALIAS_PATTERN)
_VERSION_REF = re.compile(VERSION_REF_PATTERN)
_SERIES = re.compile(SERIES_PATTERN)


def positive_integer_pattern(maximum: int) -> str:
    """A regex (no anchors) of the decimal numbers 1..maximum, without leading zeros.

    For documents that can only say it with a pattern: 1..2**31-1 as a version reference.
    """
    digits = str(maximum)
    parts = [f"[1-9][0-9]{{0,{len(digits) - 2}}}"] if len(digits) > 1 else []  # fewer digits
    for i, digit in enumerate(digits):  # as many: this prefix, then a smaller digit, then any
        low, high = (1 if i == 0 else 0), int(digit) - 1
        if high >= low:
            smaller = str(low) if high == low else f"[{low}-{high}]"
            rest = len(digits) - i - 1
            tail = "" if rest == 0 else "[0-9]" if rest == 1 else f"[0-9]{{{rest}}}"
            parts.append(digits[:i] + smaller + tail)
    parts.append(digits)
    return "|".join(parts)


# VERSION_REF_PATTERN with exactly the numbers 1..MAX_VERSION: what validate_version_ref takes.
VERSION_REF_EXACT_PATTERN = rf"^({positive_integer_pattern(MAX_VERSION)}|{ALIAS_PATTERN[1:-1]})$"


def echo(value: object) -> str:
    """`repr(value)`, cut to ECHO_CHARS characters: what an error may repeat of the input."""
    shown = repr(value)
    if len(shown) <= ECHO_CHARS:
        return shown
    return f"{shown[: ECHO_CHARS - 1]}… ({len(str(value))} characters)"


def reject_nul(value: str, field: str) -> str:
    """Return `value` unless it holds a NUL byte (no text column can store one)."""
    if "\x00" in value:
        raise InvalidValueError(field, "must not contain a NUL character (\\u0000)")
    return value


def validate_model_name(name: str, field: str = "name") -> str:
    """Return `name` if it is a valid model name, else raise InvalidValueError."""
    if not isinstance(name, str) or not _MODEL_NAME.fullmatch(name):
        raise InvalidValueError(
            field,
            f"invalid model name {echo(name)}: use 1-64 characters of lowercase letters, digits, "
            f"'.', '_' and '-', starting with a letter or digit ({MODEL_NAME_PATTERN})",
        )
    return name


def validate_job_id(job_id: str, field: str = "job_id") -> str:
    """Return `job_id` if it is 32 lowercase hex digits (a uuid4 hex), else raise."""
    if not isinstance(job_id, str) or not _JOB_ID.fullmatch(job_id):
        raise InvalidValueError(field, f"invalid job id {echo(job_id)}: expected 32 hex digits")
    return job_id


def validate_alias(alias: str, field: str = "alias") -> str:
    """Return `alias` if it is a settable alias, else raise InvalidValueError."""
    if alias in IMPLICIT_ALIASES:
        raise InvalidValueError(
            field,
            f"alias {alias!r} is implicit (always the newest version) and cannot be set or "
            "deleted; choose another name such as 'production' or 'stable'",
        )
    if not isinstance(alias, str) or not _ALIAS.fullmatch(alias):
        raise InvalidValueError(
            field,
            f"invalid alias {echo(alias)}: use 1-32 characters of lowercase letters, digits, '_' "
            f"and '-', starting with a letter ({ALIAS_PATTERN})",
        )
    return alias


def validate_settable_alias(alias: str, field: str = "alias") -> str:
    """`validate_alias`, and not one the workers keep: what a person may set or delete."""
    if alias in AUTOMATIC_ALIASES:
        raise InvalidValueError(
            field,
            f"alias {alias!r} is set automatically (the version with the lowest final Fréchet "
            "distance) and cannot be set or deleted by hand; choose another name such as "
            "'production' or 'stable'",
        )
    return validate_alias(alias, field)


def validate_version_ref(ref: str, field: str = "version") -> str:
    """Return `ref` if it is a version number or an alias name, else raise InvalidValueError."""
    if isinstance(ref, str) and _VERSION_REF.fullmatch(ref):
        if not ref.isdigit() or int(ref) <= MAX_VERSION:
            return ref
    raise InvalidValueError(
        field,
        f"invalid version {echo(ref)}: a version number (1 to {MAX_VERSION}) or an alias "
        f"such as 'latest' ({VERSION_REF_PATTERN})",
    )


def validate_series(series: str, field: str = "series") -> str:
    """Return `series` if it is a well-formed history series name, else raise."""
    if not isinstance(series, str) or not _SERIES.fullmatch(series):
        raise InvalidValueError(
            field,
            f"invalid series {echo(series)}: 1-64 characters of lowercase letters, digits, "
            f"'_', '.', ':' and '-', starting with a letter ({SERIES_PATTERN})",
        )
    return series
