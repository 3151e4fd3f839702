"""``POST /retrieve``: top-n items for a history."""

from __future__ import annotations

from fastapi import APIRouter

from service.api.deps import RetrieverDep
from service.schemas import ErrorResponse, RetrieveRequest, RetrieveResponse

router = APIRouter(tags=["retrieval"])

_ERRORS = {
    400: {"model": ErrorResponse, "description": "Body is not parseable (e.g. not UTF-8)."},
    413: {"model": ErrorResponse, "description": "Body larger than SEATER_MAX_BODY_BYTES."},
    422: {"model": ErrorResponse, "description": "Invalid request; the message says what to fix."},
    503: {"model": ErrorResponse, "description": "Overloaded or no model loaded; see Retry-After."},
}


@router.post(
    "/retrieve",
    response_model=RetrieveResponse,
    responses=_ERRORS,
    summary="Top-n next items for a user history",
)
async def retrieve(body: RetrieveRequest, retriever: RetrieverDep) -> RetrieveResponse:
    """Encode the (truncated) history, then run the constrained beam search over the ID tree.

    Concurrent calls are decoded together in micro-batches; the answer is the same as if
    the request were sent alone.
    """
    return await retriever.retrieve(body)
