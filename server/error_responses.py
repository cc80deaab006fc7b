"""How errors look on the wire: our JSON shape, or OpenAI's for its API.

Routes raise `server.errors` exceptions and never build error bodies themselves. Requests
under `/v1/audio/` get OpenAI's `{"error": {message, type, param, code}}` (its clients parse
that), under `/v1/text-to-speech/` ElevenLabs' `{"detail": {status, message}}`, every other
route ours: `{"error", "field", "allowed"}`.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, HTTPConnection, Request
from starlette.responses import JSONResponse, Response

from server.elevenlabs_input import error_code
from server.errors import ServiceError

logger = logging.getLogger("server")

OPENAI_PREFIX = "/v1/audio/"
ELEVENLABS_PREFIX = "/v1/text-to-speech/"


def native_body(exc: ServiceError) -> dict[str, Any]:
    body: dict[str, Any] = {"error": str(exc)}
    if exc.field is not None:
        body["field"] = exc.field
    if exc.allowed is not None:
        body["allowed"] = exc.allowed
    return body


def openai_body(exc: ServiceError) -> dict[str, Any]:
    kind = "invalid_request_error" if exc.status < 500 else "server_error"
    return {"error": {"message": str(exc), "type": kind, "param": exc.field, "code": None}}


def elevenlabs_body(exc: ServiceError) -> dict[str, Any]:
    return {"detail": {"status": error_code(exc), "message": str(exc)}}


def openai_status(exc: ServiceError) -> int:
    # OpenAI answers every invalid parameter with 400; its clients treat 422 as unexpected.
    return 400 if exc.status == 422 else exc.status


def error_response(request: HTTPConnection, exc: ServiceError) -> Response:
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None
    if request.url.path.startswith(OPENAI_PREFIX):
        return JSONResponse(openai_body(exc), status_code=openai_status(exc), headers=headers)
    if request.url.path.startswith(ELEVENLABS_PREFIX):
        return JSONResponse(elevenlabs_body(exc), status_code=exc.status, headers=headers)
    return JSONResponse(native_body(exc), status_code=exc.status, headers=headers)


async def service_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServiceError)
    return error_response(request, exc)


async def http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    error = ServiceError(str(exc.detail))
    error.status = exc.status_code
    response = error_response(request, error)
    if exc.headers:
        response.headers.update(exc.headers)
    return response


async def client_gone(request: Request, exc: Exception) -> Response:
    # The client left (or was cut off) while sending its request: no error of ours, and no
    # one is there to read an answer (uvicorn drops it).
    return Response(status_code=400)


async def unexpected(request: Request, exc: Exception) -> Response:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(request, ServiceError(f"internal error: {type(exc).__name__}"))


EXCEPTION_HANDLERS = {
    ServiceError: service_error,
    HTTPException: http_exception,
    ClientDisconnect: client_gone,
    Exception: unexpected,
}
