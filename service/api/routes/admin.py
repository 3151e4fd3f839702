"""``POST /v1/admin/reload``: hot-swap the model (bearer token; only when enabled)."""

from __future__ import annotations

from fastapi import APIRouter, Body

from service.api.deps import AdminDep, HolderDep, MemberDep
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
async def reload(holder: HolderDep, member: MemberDep,
                 body: ReloadRequest | None = Body(None)) -> ReloadResponse:
    """Load, verify and smoke-test a bundle off the event loop, then swap it in atomically.

    With several worker processes, the worker this request reached loads it first, then
    every worker does; the answer comes when all have (or after
    SEATER_RELOAD_SYNC_TIMEOUT_S) and says how many serve it. On any failure the current
    model keeps serving and the answer says why.
    """
    path = body.path if body else None
    if member is None:
        report = await holder.load(path)
        group = {}
    else:
        report, progress = await member.reload(path)
        group = {"workers": progress.expected, "workers_updated": progress.updated,
                 "workers_failed": progress.failed}
    return ReloadResponse(
        previous_version=report.previous_version,
        model_version=report.version,
        bundle_path=str(report.path),
        load_seconds=round(report.seconds, 4),
        **group,
    )
