"""JSON integers as JSON Schema counts them: 66 and 66.0 are both the integer 66.

The document's `type: integer` accepts a number whose fractional part is zero, so a client
(or a generator such as Schemathesis) may send 66.0 where the schema says integer: the
server takes it as 66. A fractional number, a numeric string or a boolean is still refused
(strict), as the schema says.

Use: `Annotated[int, Field(ge=1, ...), Strict(), INTEGRAL]`, bounds first. With the bounds
after the validator, pydantic writes them into the JSON schema as `ge`/`le` instead of
`minimum`/`maximum`.
"""

from __future__ import annotations

from pydantic import BeforeValidator


def _integral(value: object) -> object:
    return int(value) if isinstance(value, float) and value.is_integer() else value


INTEGRAL = BeforeValidator(_integral)
