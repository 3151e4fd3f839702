"""``POST /v1/admin/reload``: hot-swap the model (bearer token; only when enabled)."""

from __future__ import annotations

from fastapi import APIRouter, Body

from service.api.deps import AdminDep, HolderDep
from service.schemas import ErrorResponse, ReloadRequest, ReloadResponse

router = APIRouter(prefix="/v1/admin", tags=["operations"], dependencies=[AdminDep])


@router.post(
    "/reload",
    response_model=ReloadResponse,
    responses={
        400: {"model": ErrorResponse, "description": "Body is not parseable."},
        401: {"model": ErrorResponse, "description": "No bearer token."},
        403: {"model": ErrorResponse, "description": "Wrong token, or path outside the root."},
        409: {"model": ErrorResponse, "description": "Another reload is running."},
        422: {"model": ErrorResponse, "description": "Bundle rejected; the old model serves."},
    },
)
async def reload(holder: HolderDep, body: ReloadRequest | None = Body(None)) -> ReloadResponse:
    """Load, verify and smoke-test a bundle off the event loop, then swap it in atomically.

    On any failure the current model keeps serving and the answer says why.
    """
    report = await holder.load(body.path if body else None)
    return ReloadResponse(
        previous_version=report.previous_version,
        model_version=report.version,
        bundle_path=str(report.path),
        load_seconds=round(report.seconds, 4),
    )
