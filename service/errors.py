"""Domain exceptions, each carrying its HTTP status, and the ONE place that maps them to HTTP.

Code below the routes raises these (never ``HTTPException``) so the data plane stays
transport-free. Every 4xx message says what the caller should change. Bad input must
never surface as a 500: validation errors, malformed JSON and unknown routes are all
rendered here in the same :class:`~service.schemas.ErrorResponse` shape.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.logs import current_request_id

log = logging.getLogger(__name__)


class ServiceError(Exception):
    """Base of all domain errors: ``status`` and a stable machine-readable ``code``."""

    status: int = 500
    code: str = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        details: Sequence[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = list(details) if details else None
        self.headers = headers or {}


class InvalidInput(ServiceError):
    """The request is well-formed JSON but asks for something we cannot do."""

    status = 422
    code = "invalid_input"


class UnknownItems(InvalidInput):
    """Strict mode: the history or exclusions name ids the model does not know."""

    code = "unknown_items"


class PayloadTooLarge(ServiceError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(ServiceError):
    status = 415
    code = "unsupported_media_type"


class Unauthorized(ServiceError):
    status = 401
    code = "unauthorized"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"WWW-Authenticate": "Bearer"})


class Forbidden(ServiceError):
    status = 403
    code = "forbidden"


class NotFound(ServiceError):
    status = 404
    code = "not_found"


class ReloadInProgress(ServiceError):
    status = 409
    code = "reload_in_progress"


class BundleRejected(ServiceError):
    """A new bundle failed to load, verify or smoke-test; the old model keeps serving."""

    status = 422
    code = "bundle_rejected"


class Overloaded(ServiceError):
    """The bounded request queue is full: shed load instead of growing latency."""

    status = 503
    code = "overloaded"

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after_s)})


class NotReady(ServiceError):
    """No model is loaded yet, or the service is shutting down."""

    status = 503
    code = "not_ready"

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after_s)})


class InternalError(ServiceError):
    """A fault of ours (engine failure, broken invariant): 500, logged with the request id."""


def error_body(code: str, message: str, details: Sequence[dict[str, Any]] | None = None) -> dict:
    """The :class:`~service.schemas.ErrorResponse` of every non-2xx answer, as a dict."""
    return {
        "code": code,
        "message": message,
        "details": list(details) if details else None,
        "request_id": current_request_id(),
    }


def _format_loc(loc: Sequence[Any]) -> str:
    return ".".join(str(part) for part in loc) or "body"


def validation_details(errors: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pydantic's error list reduced to what a client needs: where, what, and the kind."""
    out = []
    for e in errors:
        msg = e.get("msg", "")
        reason = (e.get("ctx") or {}).get("error")
        at = e.get("loc", ())[-1:]
        if e.get("type") == "json_invalid" and reason and at and isinstance(at[0], int):
            msg = f"{msg}: {reason} (at character {at[0]})"  # FastAPI's json.loads path
        out.append({"loc": _format_loc(e.get("loc", ())), "msg": msg, "type": e.get("type", "")})
    return out


def validation_message(details: Sequence[dict[str, Any]]) -> str:
    """One readable sentence, e.g. ``body.n: Input should be less than or equal to 100``."""
    bad_json = [d for d in details if d["type"] == "json_invalid"]
    if bad_json:
        return (
            f"request body is not valid JSON ({bad_json[0]['msg']}); "
            "send a JSON object with Content-Type: application/json"
        )
    parts = [f"{d['loc']}: {d['msg']}" for d in details[:10]]
    more = f" (and {len(details) - 10} more)" if len(details) > 10 else ""
    return "invalid request: " + "; ".join(parts) + more


async def _service_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    if exc.status >= 500:
        log.error("request failed: %s", exc.message, extra={"error_code": exc.code})
    return JSONResponse(
        error_body(exc.code, exc.message, exc.details), status_code=exc.status, headers=exc.headers
    )


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = validation_details(exc.errors())
    return JSONResponse(
        error_body("invalid_request", validation_message(details), details), status_code=422
    )


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    message = {
        400: "request body could not be parsed: send a UTF-8 JSON object "
        "with Content-Type: application/json",
        404: "no such route; see /docs for the API",
        405: "method not allowed on this route; see /docs for the API",
    }.get(exc.status_code, str(exc.detail))
    code = {400: "bad_request", 404: "not_found", 405: "method_not_allowed"}.get(
        exc.status_code, "http_error"
    )
    return JSONResponse(
        error_body(code, message),
        status_code=exc.status_code,
        headers=getattr(exc, "headers", None),
    )


async def _unhandled(_: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", exc_info=exc)
    return JSONResponse(error_body("internal_error", "internal server error"), status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    """Register the mapping above; call once from the app factory."""
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unhandled)
