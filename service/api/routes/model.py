"""``GET /v1/model``: what is being served, on which device, under which limits, and what
it can filter on."""

from __future__ import annotations

from fastapi import APIRouter

from service.api.deps import CacheDep, HolderDep, SettingsDep
from service.schemas import ErrorResponse, FilterNames, ModelResponse

router = APIRouter(tags=["model"])


@router.get(
    "/v1/model",
    response_model=ModelResponse,
    responses={503: {"model": ErrorResponse, "description": "No model loaded."}},
)
async def model_info(holder: HolderDep, settings: SettingsDep, cache: CacheDep) -> ModelResponse:
    engine = holder.require()
    info = engine.info.model_dump()
    index = engine.catalog.filters
    limits = {
        "max_history_length": settings.max_history_length,
        "max_n": settings.max_n,
        "max_beam": settings.max_beam,
        "default_beam": settings.default_beam,
        "max_exclude": settings.max_exclude,
        "max_body_bytes": settings.max_body_bytes,
        "max_batch_size": settings.max_batch_size,
        "max_wait_ms": settings.max_wait_ms,
        "strict_ids": settings.strict_ids,
    }
    filters = FilterNames(categories=index.has_categories, attributes=index.attribute_names)
    return ModelResponse(**info, limits=limits, cache_backend=cache.backend, filters=filters)
