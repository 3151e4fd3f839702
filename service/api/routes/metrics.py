"""``GET /metrics``: Prometheus exposition of this app's registry."""

from __future__ import annotations

from fastapi import APIRouter, Response

from service.api.deps import MetricsDep

router = APIRouter(tags=["operations"])


@router.get("/metrics", response_class=Response, include_in_schema=False)
async def metrics(metrics: MetricsDep) -> Response:
    body, content_type = metrics.render()
    return Response(content=body, media_type=content_type)
