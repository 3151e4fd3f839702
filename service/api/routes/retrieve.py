"""``POST /retrieve``: top-n items for a history."""

from __future__ import annotations

from fastapi import APIRouter, Request

from service.api.json_route import JsonRoute
from service.schemas import ErrorResponse, RetrieveRequest, RetrieveResponse

router = APIRouter(tags=["retrieval"], route_class=JsonRoute)

_ERRORS = {
    413: {"model": ErrorResponse, "description": "Body larger than SEATER_MAX_BODY_BYTES."},
    415: {"model": ErrorResponse, "description": "Body sent with a Content-Type other than JSON."},
    422: {"model": ErrorResponse, "description": "Invalid request or JSON; says what to fix."},
    503: {"model": ErrorResponse, "description": "Overloaded or no model loaded; see Retry-After."},
}


@router.post(
    "/retrieve",
    response_model=RetrieveResponse,
    responses=_ERRORS,
    summary="Top-n next items for a user history",
)
async def retrieve(body: RetrieveRequest, request: Request) -> RetrieveResponse:
    """Encode the (truncated) history, then run the constrained beam search over the ID tree.

    Concurrent calls are decoded together in micro-batches; the answer is the same as if
    the request were sent alone.
    """
    return await request.app.state.retriever.retrieve(body)
