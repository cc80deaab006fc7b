"""What can go wrong with a request, in words meant for the client.

A leaf module: it imports nothing of the worker, so any layer can raise these. How each API
shows them (our `{"error", "field", "allowed"}` or OpenAI's `{"error": {...}}`) is decided in
`server/error_responses.py`; a stream that has started reports them as an event instead.
"""

from __future__ import annotations

# Seconds a client is asked to wait before retrying.
RETRY_AFTER_BUSY_S = 2  # a slot frees as soon as one stream ends
RETRY_AFTER_LOADING_S = 5  # loading a model takes seconds
# A draining worker is about to exit and be replaced (which loads a model): behind the
# balancer another worker takes the retry at once, so this only paces direct clients.
RETRY_AFTER_DRAINING_S = RETRY_AFTER_LOADING_S


class ServiceError(Exception):
    """An error with an HTTP status and, where one field is at fault, its name."""

    status = 500
    retry_after: int | None = None

    def __init__(self, message: str, field: str | None = None, allowed: str | None = None):
        super().__init__(message)
        self.field = field
        self.allowed = allowed


class FieldError(ServiceError):
    """A field's value is not accepted."""

    status = 422

    def __init__(self, field_name: str, message: str, allowed: str | None = None):
        super().__init__(message, field_name, allowed)


class BadRequest(ServiceError):
    """Malformed input that is no single field's fault (a broken multipart body, bad JSON)."""

    status = 400


class PayloadTooLarge(ServiceError):
    status = 413

    def __init__(self, field_name: str, limit: int):
        super().__init__(
            f"{field_name} is larger than the {limit} byte limit",
            field_name,
            f"at most {limit} bytes",
        )
        self.limit = limit


class NotFound(ServiceError):
    status = 404


class Conflict(ServiceError):
    """The request is well formed but does not fit what the server holds (a saved voice made
    for another model). `code` names the case for APIs that name their errors."""

    status = 409

    def __init__(self, message: str, field: str | None, code: str):
        super().__init__(message, field)
        self.code = code


class Overloaded(ServiceError):
    """Every running slot and every queue place is taken."""

    status = 503
    retry_after = RETRY_AFTER_BUSY_S

    def __init__(self) -> None:
        super().__init__("server busy: every stream slot and queue place is taken; retry shortly")


class NotReady(ServiceError):
    """The model is not loaded (yet, or at all)."""

    status = 503
    retry_after = RETRY_AFTER_LOADING_S


class Draining(NotReady):
    """The worker is shutting down: it finishes what it runs and takes nothing new."""

    retry_after = RETRY_AFTER_DRAINING_S

    def __init__(self) -> None:
        super().__init__("the worker is shutting down and takes no new requests; retry shortly")


class SynthesisFailed(ServiceError):
    """The engine failed on a request that had been accepted; the worker carries on."""

    status = 500
