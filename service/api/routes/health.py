"""KServe-style health: live = the process answers; ready = a model is loaded and serving."""

from __future__ import annotations

from fastapi import APIRouter, Response

from service.api.deps import HolderDep
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
async def ready(holder: HolderDep, response: Response) -> ReadyResponse:
    engine = holder.engine
    if engine is None:
        response.status_code = 503
        return ReadyResponse(ready=False)
    return ReadyResponse(ready=True, model_version=engine.version)
