"""Errors the routes raise and the JSON responses they become (never a bare 500 for bad input)."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from server.admission import Overloaded
from server.engine.conditionals import AudioPromptError
from server.forms import FieldError
from server.worker import NotReady

logger = logging.getLogger("server")

RETRY_AFTER_BUSY_S = 2
RETRY_AFTER_LOADING_S = 5


class PayloadTooLarge(Exception):
    def __init__(self, field: str, limit: int):
        super().__init__(f"{field} is larger than the {limit} byte limit")
        self.field = field
        self.limit = limit


class BadRequest(Exception):
    """Malformed input that is no single field's fault (a broken multipart body, bad JSON)."""


async def field_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, FieldError)
    return JSONResponse(exc.body(), status_code=422)


async def audio_prompt_error(request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": str(exc), "field": "audio_prompt"}, status_code=422)


async def payload_too_large(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PayloadTooLarge)
    body = {"error": str(exc), "field": exc.field, "allowed": f"at most {exc.limit} bytes"}
    return JSONResponse(body, status_code=413)


async def bad_request(request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": str(exc)}, status_code=400)


async def overloaded(request: Request, exc: Exception) -> Response:
    return JSONResponse(
        {"error": "server busy: every stream slot and queue place is taken; retry shortly"},
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_BUSY_S)},
    )


async def not_ready(request: Request, exc: Exception) -> Response:
    return JSONResponse(
        {"error": str(exc)}, status_code=503, headers={"Retry-After": str(RETRY_AFTER_LOADING_S)}
    )


async def http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)


async def unexpected(request: Request, exc: Exception) -> Response:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return JSONResponse({"error": f"internal error: {type(exc).__name__}"}, status_code=500)


EXCEPTION_HANDLERS = {
    FieldError: field_error,
    AudioPromptError: audio_prompt_error,
    PayloadTooLarge: payload_too_large,
    BadRequest: bad_request,
    Overloaded: overloaded,
    NotReady: not_ready,
    HTTPException: http_exception,
    Exception: unexpected,
}
