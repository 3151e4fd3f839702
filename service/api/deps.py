"""Dependencies as ``Annotated`` aliases, so handlers read as typed parameters.

Everything comes from ``request.app.state`` (built by the lifespan), never from module
globals; tests can swap any of them with ``app.dependency_overrides``. They are ``async``
although they never await: FastAPI runs a plain ``def`` dependency in its thread pool,
a thread hand-off per dependency per request, which dominated the HTTP overhead.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request

from service.core.cache import StateCache
from service.core.holder import ModelHolder
from service.core.workers import GroupMember
from service.errors import Forbidden, Unauthorized
from service.metrics import ServiceMetrics
from service.settings import Settings


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_metrics(request: Request) -> ServiceMetrics:
    return request.app.state.metrics


async def get_holder(request: Request) -> ModelHolder:
    return request.app.state.holder


async def get_cache(request: Request) -> StateCache:
    return request.app.state.cache


async def get_member(request: Request) -> GroupMember | None:
    """This worker's place in its group; None for a single process."""
    return request.app.state.member


SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[ServiceMetrics, Depends(get_metrics)]
HolderDep = Annotated[ModelHolder, Depends(get_holder)]
CacheDep = Annotated[StateCache, Depends(get_cache)]
MemberDep = Annotated[GroupMember | None, Depends(get_member)]


async def require_admin(request: Request, settings: SettingsDep) -> None:
    """Bearer-token check for admin routes; constant-time comparison."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("send 'Authorization: Bearer <SEATER_RELOAD_TOKEN>'")
    expected = settings.reload_token.get_secret_value() if settings.reload_token else ""
    if not expected or not hmac.compare_digest(token.encode(), expected.encode()):
        raise Forbidden("the bearer token does not match SEATER_RELOAD_TOKEN")


AdminDep = Depends(require_admin)
