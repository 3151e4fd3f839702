"""Pure-ASGI middleware: request id + access log + request metrics, and the body-size limit.

Written against raw ASGI (not ``BaseHTTPMiddleware``) so they add no task or stream
copies per request and see the route template FastAPI stores in ``scope["route"]``,
which keeps the ``route`` metric label bounded.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import error_body
from service.logs import reset_request_id, set_request_id
from service.metrics import ServiceMetrics

log = logging.getLogger("service.access")

_REQUEST_ID_OK = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_BODY_METHODS = {"POST", "PUT", "PATCH"}


class RequestContextMiddleware:
    """Assigns a request id (honours a sane ``X-Request-ID``), echoes it, logs, measures."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics
        # Ids are this process's random 64-bit prefix + a counter: unique across workers
        # and restarts like a uuid4, without a urandom read per request.
        self._id_prefix = uuid.uuid4().hex[:16]
        self._ids = itertools.count()
        # labels() takes a lock and builds a key per call; the label sets are few and fixed
        self._timers: dict[tuple[str, str], Any] = {}
        self._counters: dict[tuple[str, str, int], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = _header(scope, b"x-request-id")
        request_id = (incoming if incoming and _REQUEST_ID_OK.match(incoming)
                      else f"{self._id_prefix}{next(self._ids):016x}")
        token = set_request_id(request_id)
        status = 500
        start = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - start
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "")
            self._timer(template, method).observe(elapsed)
            self._counter(template, method, status).inc()
            extra = {
                "request_id": request_id,
                "status": status,
                "route": template,
                "duration_ms": round(elapsed * 1e3, 3),
            }
            log.info(
                "%s %s %d %.1fms", method, scope.get("path", ""), status, elapsed * 1e3, extra=extra
            )
            reset_request_id(token)

    def _timer(self, route: str, method: str) -> Any:
        key = (route, method)
        if key not in self._timers:
            self._timers[key] = self.metrics.request_seconds.labels(route=route, method=method)
        return self._timers[key]

    def _counter(self, route: str, method: str, status: int) -> Any:
        key = (route, method, status)
        if key not in self._counters:
            self._counters[key] = self.metrics.requests.labels(route=route, method=method,
                                                               status=str(status))
        return self._counters[key]


class BodySizeLimitMiddleware:
    """413 for bodies over ``max_bytes``, by ``Content-Length`` or by counting a chunked body.

    Bodies are small here (a few KB), so a chunked body is buffered up to the limit and
    replayed to the app; nothing over the limit is ever read into memory.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared is not None:
            if not declared.isdigit():
                await _reject(send, 400, "bad_request", "Content-Length is not a number")
                return
            if int(declared) > self.max_bytes:
                await self._too_large(send, int(declared))
                return
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._too_large(send, None)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, send: Send, size: int | None) -> None:
        got = f"{size} bytes" if size is not None else "more than that"
        await _reject(
            send,
            413,
            "payload_too_large",
            f"request body is {got}; the limit is {self.max_bytes} bytes "
            "(shorten the history or the exclusion list)",
        )


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


async def _reject(send: Send, status: int, code: str, message: str) -> None:
    """Answer from middleware in the same ErrorResponse shape the error handlers use."""
    body = json.dumps(error_body(code, message)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
