"""KServe-style health: live = the process answers; ready = a model is loaded and serving
(in every worker process of the container)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from service.api.deps import HolderDep, MemberDep
from service.schemas import LiveResponse, ReadyResponse

router = APIRouter(prefix="/v2/health", tags=["health"])


@router.get("/live", response_model=LiveResponse)
async def live() -> LiveResponse:
    return LiveResponse(live=True)


@router.get(
    "/ready",
    response_model=ReadyResponse,
    responses={503: {"model": ReadyResponse, "description": "No model loaded (yet)."}},
)
async def ready(holder: HolderDep, member: MemberDep, response: Response) -> ReadyResponse:
    """With several worker processes: ready only when every one serves a model (a probe
    reaches one worker, which answers for the container)."""
    engine = holder.engine
    version = engine.version if engine else None
    group = {}
    ok = engine is not None
    if member is not None:
        serving = member.group.serving()
        group = {"workers": member.group.expected, "workers_serving": serving}
        ok = ok and serving >= member.group.expected
    if not ok:
        response.status_code = 503
    return ReadyResponse(ready=ok, model_version=version, **group)
