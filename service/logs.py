"""Structured (JSON-lines) logging with the current request id on every record.

The request id lives in a ``ContextVar`` set by the request-id middleware, so any log
call made while serving a request (routes, batcher callbacks, error handlers) carries it
without threading it through signatures. Configuration happens in the app factory, never
at import time.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from contextvars import ContextVar

_request_id: ContextVar[str | None] = ContextVar("seater_request_id", default=None)

# LogRecord attributes that are plumbing, not payload.
_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


def current_request_id() -> str | None:
    """The id of the request being served in this context, if any."""
    return _request_id.get()


def set_request_id(request_id: str | None) -> object:
    """Bind ``request_id`` to the current context; returns a token for :func:`reset_request_id`."""
    return _request_id.set(request_id)


def reset_request_id(token: object) -> None:
    _request_id.reset(token)  # type: ignore[arg-type]


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id and any ``extra``."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None) or current_request_id()
        if request_id and request_id != "-":
            payload["request_id"] = request_id
        for key, value in record.__dict__.items():
            if key not in _RESERVED and key not in payload and not key.startswith("_"):
                payload[key] = value
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


class _RequestIdFilter(logging.Filter):
    """Stamp the request id on each record when it is emitted (``%(request_id)s``, JSON)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = current_request_id() or "-"
        return True


def configure_logging(level: str = "INFO", as_json: bool = True) -> None:
    """Route the ``service`` logger (and uvicorn's) to stderr in the chosen format.

    Only our own loggers are touched, so embedding the app (tests, another server) does
    not have its root logger rewritten.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_RequestIdFilter())
    if as_json:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")
        )
    for name in ("service", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.setLevel(level)
        logger.propagate = False
