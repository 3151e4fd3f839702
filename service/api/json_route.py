"""A route class for the hot path: the JSON body is parsed and validated in one pass by
pydantic-core, and the returned model is serialized by it, straight to bytes.

FastAPI's own handler decodes the body with ``json.loads``, validates the resulting
objects field by field, solves the dependency graph, then validates the endpoint's return
value against ``response_model`` again before encoding it: per retrieval that was more
Python than the dense engine's whole search. The OpenAPI document is generated from the
endpoint's signature as for any route, and errors go through the app's exception handlers
as FastAPI's would (a body that does not validate raises ``RequestValidationError`` with
the same ``body.<field>`` locations).

Endpoints served this way take ``(body: <a BaseModel>, request: Request)`` and return an
instance of their ``response_model``; nothing else (dependencies, other parameters) is
resolved for them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, get_type_hints

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError

from service.errors import UnsupportedMediaType

JSON_TYPE = "application/json"


def is_json(content_type: str | None) -> bool:
    """No header (curl -d without -H) is taken as JSON, as FastAPI does; else
    ``application/json`` or a ``+json`` type, parameters ignored."""
    if not content_type:
        return True
    media = content_type.split(";", 1)[0].strip().lower()
    return media == JSON_TYPE or (media.startswith("application/") and media.endswith("+json"))


class JsonRoute(APIRoute):
    """See the module docstring."""

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        body_model = get_type_hints(self.endpoint)["body"]
        if not (isinstance(body_model, type) and issubclass(body_model, BaseModel)):
            raise TypeError(f"{self.path}: JsonRoute needs a 'body: <BaseModel>' parameter")
        endpoint: Callable[[Any, Request], Awaitable[BaseModel]] = self.endpoint
        status = self.status_code or 200

        async def handle(request: Request) -> Response:
            if not is_json(request.headers.get("content-type")):
                raise UnsupportedMediaType(
                    f"the body must be JSON: send it with Content-Type: {JSON_TYPE}, not "
                    f"{request.headers['content-type']!r}")
            raw = await request.body()
            try:
                body = body_model.model_validate_json(raw)
            except ValidationError as exc:
                errors = [{**e, "loc": ("body", *e["loc"])}
                          for e in exc.errors(include_url=False)]
                raise RequestValidationError(errors, body=raw) from None
            result = await endpoint(body, request)
            return Response(result.model_dump_json(), status, media_type=JSON_TYPE)

        return handle
