"""Request and response models of the HTTP API, split per use, with bounds and examples.

Static ``Field`` bounds are the hard caps from :mod:`service.settings` so the OpenAPI
document is truthful for every deployment; the (smaller) configured limits are checked
per request by :mod:`service.core.retrieval` with the same 422 error shape.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StringConstraints,
    model_serializer,
    model_validator,
)

from service.model.engine import ModelInfo
from service.model.filters import ItemFilter
from service.settings import (
    HARD_MAX_BEAM,
    HARD_MAX_EXCLUDE,
    HARD_MAX_FILTER_ATTRIBUTES,
    HARD_MAX_FILTER_CHARS,
    HARD_MAX_FILTER_VALUES,
    HARD_MAX_HISTORY,
    HARD_MAX_ID_CHARS,
    HARD_MAX_N,
)

ItemId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=HARD_MAX_ID_CHARS),
    Field(description="External item id, as in the dataset (e.g. an ASIN or '1234')."),
]


CategoryPath = Annotated[
    str,
    StringConstraints(min_length=1, max_length=HARD_MAX_FILTER_CHARS),
    Field(description="A category path, levels coarse to fine joined by '>' (as in the "
          "items file's categories column), e.g. 'Beauty > Makeup'."),
]
AttributeName = Annotated[str, StringConstraints(min_length=1, max_length=HARD_MAX_ID_CHARS)]
AttributeValue = Annotated[str, StringConstraints(max_length=HARD_MAX_FILTER_CHARS)]


class ItemFilters(BaseModel):
    """Include filters on the bundle's item metadata, applied INSIDE the search: subtrees
    with no allowed item are pruned, so n items come back while n allowed items exist.

    An item passes when one of its category paths starts with one of ``categories``
    (level by level: "Beauty > Makeup" passes "Beauty > Makeup > Lips", not
    "Beauty > Makeupx") AND, for every name in ``attributes``, its value is one of the
    listed values. Lists are ORs, the parts are ANDed; empty parts do not filter. Naming
    metadata the model lacks is a 422 listing what it has (also in GET /v1/model).
    """

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"categories": ["Beauty > Makeup"]},
                {"attributes": {"brand": ["Acme", "Zed"]}},
                {"categories": ["Beauty > Makeup", "Beauty > Fragrance"],
                 "attributes": {"brand": ["Acme"], "in_stock": ["yes"]}},
            ]
        },
    )

    categories: list[CategoryPath] = Field(
        default_factory=list,
        max_length=HARD_MAX_FILTER_VALUES,
        description="Keep items under ANY of these category paths (a path passes its "
        "sub-categories). Empty: no category constraint.",
    )
    attributes: dict[
        AttributeName,
        Annotated[list[AttributeValue], Field(min_length=1, max_length=HARD_MAX_FILTER_VALUES)],
    ] = Field(
        default_factory=dict,
        max_length=HARD_MAX_FILTER_ATTRIBUTES,
        description="Attribute name -> the values to keep (exact match, one of them); "
        "every named attribute must match. Names are the attribute columns of the items "
        "file the model was trained with.",
    )

    def canonical(self) -> ItemFilter:
        """The filter as the catalog's index takes it (raises FilterError for a path that
        names no level)."""
        return ItemFilter.of(self.categories, self.attributes)


class RetrieveRequest(BaseModel):
    """One top-n retrieval for one user history."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"history": ["12", "7", "431", "88"], "n": 10},
                {
                    "history": ["12", "7", "431", "88"],
                    "n": 5,
                    "user_id": "u-1042",
                    "beam_size": 50,
                    "exclude_seen": True,
                    "exclude": ["3", "9"],
                },
                {
                    "history": ["sku-12", "sku-7", "sku-431"],
                    "n": 10,
                    "filters": {
                        "categories": ["Beauty > Makeup"],
                        "attributes": {"brand": ["Acme", "Zed"]},
                    },
                },
            ]
        },
    )

    history: list[ItemId] = Field(
        ...,
        min_length=1,
        max_length=HARD_MAX_HISTORY,
        description="Item ids the user interacted with, OLDEST FIRST. Only the most recent "
        "`max_history` (see GET /v1/model) are encoded.",
    )
    n: int = Field(10, ge=1, le=HARD_MAX_N, description="How many items to return.")
    user_id: str | None = Field(
        None, max_length=HARD_MAX_ID_CHARS, description="Opaque; logged, never used to score."
    )
    beam_size: int | None = Field(
        None,
        ge=1,
        le=HARD_MAX_BEAM,
        description="Beam width of the constrained search (>= n). Default: the service's "
        "default beam, or n if larger.",
    )
    exclude_seen: bool = Field(True, description="Never return items already in `history`.")
    exclude: list[ItemId] = Field(
        default_factory=list,
        max_length=HARD_MAX_EXCLUDE,
        description="Further item ids never to return (already shown, out of stock...).",
    )
    filters: ItemFilters | None = Field(
        None,
        description="Only return items that pass these include filters on the item "
        "metadata (categories, attributes); see ItemFilters.",
    )

    @model_validator(mode="after")
    def _n_within_beam(self) -> RetrieveRequest:
        if self.beam_size is not None and self.n > self.beam_size:
            raise ValueError(
                f"n ({self.n}) must not exceed beam_size ({self.beam_size}): "
                "raise beam_size or lower n"
            )
        return self


class RetrievedItem(BaseModel):
    id: str = Field(..., description="External item id.")
    score: float = Field(
        ..., description="Log-probability of the item's ID path (<= 0); the dense baseline "
        "returns its dot product instead."
    )
    code: list[int] = Field(
        ..., description="Tree code: child position at each level (empty for the dense "
        "baseline, which has no tree)."
    )
    title: str | None = Field(None, description="Item title when the bundle has titles.")


class RetrieveResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "items": [
                        {"id": "512", "score": -1.23, "code": [3, 0, 11, 7], "title": None},
                        {"id": "77", "score": -1.87, "code": [3, 0, 2, 1], "title": None},
                    ],
                    "model_version": "beauty-20240101T000000",
                    "cached": False,
                    "history_used": 4,
                    "unknown_ids": [],
                }
            ]
        }
    )

    items: list[RetrievedItem] = Field(..., description="Best first.")
    model_version: str
    cached: bool = Field(..., description="Encoder state came from the cache.")
    history_used: int = Field(
        ..., description="History items encoded (after dropping unknown ids and truncating)."
    )
    unknown_ids: list[str] = Field(
        default_factory=list, description="Ids dropped because the model does not know them."
    )


class ErrorDetail(BaseModel):
    loc: str = Field(..., description="Where, e.g. 'body.n'.")
    msg: str
    type: str


class ErrorResponse(BaseModel):
    """Every non-2xx answer has this shape."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "code": "invalid_request",
                    "message": "invalid request: body.n: Input should be greater than or "
                    "equal to 1",
                    "details": [
                        {
                            "loc": "body.n",
                            "msg": "Input should be greater than or equal to 1",
                            "type": "greater_than_equal",
                        }
                    ],
                    "request_id": "5f0c8f6c2a9b4c52b1b7d3e0f4a1c2d3",
                }
            ]
        }
    )

    code: str = Field(..., description="Stable machine-readable error code.")
    message: str = Field(..., description="What went wrong and what to change.")
    details: list[ErrorDetail] | None = None
    request_id: str | None = None


class FilterNames(BaseModel):
    """What ``filters`` in POST /retrieve can select on for this model."""

    categories: bool = Field(..., description="Items carry category paths "
                             "(filters.categories applies).")
    attributes: list[str] = Field(..., description="Attribute names filters.attributes "
                                  "accepts.")


class ModelResponse(ModelInfo):
    """The model being served, the limits it is served under and what it can filter on."""

    limits: dict[str, int | float | bool] = Field(default_factory=dict)
    cache_backend: str
    filters: FilterNames


class LiveResponse(BaseModel):
    live: bool


class _WorkerFields(BaseModel):
    """Answers that carry the worker group's counts, which a single process leaves out
    (its answers stay as they were before there were workers)."""

    @model_serializer(mode="wrap")
    def _omit_unset_worker_counts(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        for key in [k for k in data if k.startswith("workers") and data[k] is None]:
            del data[key]
        return data


class ReadyResponse(_WorkerFields):
    ready: bool
    model_version: str | None = None
    workers: int | None = Field(None, description="Worker processes this container runs "
                                "(absent for a single process).")
    workers_serving: int | None = Field(None, description="Of those, how many serve a model; "
                                        "ready only when all do.")


class ReloadRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"path": "/artifacts/v2"}]}
    )

    path: str | None = Field(
        None,
        min_length=1,
        max_length=4096,
        description="Bundle directory; default: the configured SEATER_ARTIFACTS.",
    )


class ReloadResponse(_WorkerFields):
    previous_version: str | None
    model_version: str
    bundle_path: str
    load_seconds: float
    workers: int | None = Field(None, description="Worker processes (absent for a single "
                                "process).")
    workers_updated: int | None = Field(None, description="Workers serving the new bundle "
                                        "when this answer was sent.")
    workers_failed: int | None = Field(None, description="Workers that could not load it "
                                       "(they keep serving the previous bundle).")
