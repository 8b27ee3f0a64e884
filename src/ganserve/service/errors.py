"""Exceptions of the HTTP layer; each maps to one RFC 9457 problem-details response."""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    """Base class: an HTTP status, a short title and a detail that names the problem."""

    status: int = 500
    title: str = "Internal Server Error"

    def __init__(self, detail: str, *, field: str | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field
        self.extra = extra


class InvalidInputError(ServiceError):
    """A request field has an invalid value (422)."""

    status, title = 422, "Invalid input"


class TranslationModelError(InvalidInputError):
    """A noise-sampling option was sent to an image-to-image (CycleGAN) model (422)."""


class BadRequestError(ServiceError):
    """The request cannot be understood as sent (400)."""

    status, title = 400, "Bad request"


class NotFoundError(ServiceError):
    """The job, model, version or dataset does not exist (404)."""

    status, title = 404, "Not found"


class ConflictError(ServiceError):
    """The resource is not in a state that allows this (409)."""

    status, title = 409, "Conflict"


class PayloadTooLargeError(ServiceError):
    """The request or its result exceeds a documented limit (413)."""

    status, title = 413, "Payload too large"


class UnauthorizedError(ServiceError):
    """No API key was sent where one is required (401)."""

    status, title = 401, "Unauthorized"


class ForbiddenError(ServiceError):
    """The API key sent is not one of the configured keys (403)."""

    status, title = 403, "Forbidden"


class UnavailableError(ServiceError):
    """A dependency (database, broker) cannot be reached (503)."""

    status, title = 503, "Service unavailable"
