"""The retrieval data plane: validate a request against the model (limits, ids, filters),
batch it, shape the answer.

Transport-free (no FastAPI here): routes call :meth:`Retriever.retrieve`, which raises
domain errors from :mod:`service.errors`. Per-request limits configured in settings are
checked here because the schema's static bounds are the hard caps.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from service.core.batcher import MicroBatcher
from service.core.holder import ModelHolder
from service.errors import InvalidInput, UnknownItems
from service.model.engine import Engine
from service.model.filters import FilterError
from service.schemas import ItemFilters, RetrievedItem, RetrieveRequest, RetrieveResponse
from service.settings import Settings

_MAX_NAMED = 20  # unknown ids named in one error message
_EXAMPLES = 2  # catalogue ids quoted as examples of valid ones


def _limit(loc: str, value: int, limit: int, what: str) -> dict[str, str] | None:
    if value <= limit:
        return None
    return {"loc": loc, "msg": f"{what} is {value}, the limit is {limit}", "type": "limit"}


def _catalogue_hint(engine: Engine) -> str:
    """Where valid ids come from, with a couple of them: enough to spot a format mismatch
    (``12`` vs ``sku-12``) without sending the catalogue."""
    ids = engine.catalog.ids
    examples = ", ".join(repr(i) for i in ids[:_EXAMPLES])
    return (f"model {engine.version} knows {len(ids)} item ids, e.g. {examples} (all of them: "
            'the "ids" list of the bundle\'s items.json)')


class Retriever:
    """Turns a :class:`RetrieveRequest` into a :class:`RetrieveResponse`."""

    def __init__(self, holder: ModelHolder, batcher: MicroBatcher, settings: Settings) -> None:
        self.holder = holder
        self.batcher = batcher
        self.settings = settings

    def _check_limits(self, req: RetrieveRequest, beam: int) -> None:
        s = self.settings
        problems = [
            p
            for p in (
                _limit("body.history", len(req.history), s.max_history_length, "history length"),
                _limit("body.n", req.n, s.max_n, "n"),
                _limit("body.beam_size", beam, s.max_beam, "beam_size"),
                _limit("body.exclude", len(req.exclude), s.max_exclude, "exclude length"),
            )
            if p is not None
        ]
        if problems:
            raise InvalidInput(
                "request exceeds the service limits: "
                + "; ".join(f"{p['loc']}: {p['msg']}" for p in problems),
                details=problems,
            )

    def _indices(
        self, engine: Engine, ids: Sequence[str], loc: str
    ) -> tuple[np.ndarray, list[str]]:
        """Known item indices (order kept) and the unknown ids (strict mode: 422)."""
        idx = engine.catalog.lookup(ids)
        unknown = [ids[i] for i in np.flatnonzero(idx < 0)]
        if unknown and self.settings.strict_ids:
            named = ", ".join(repr(u) for u in unknown[:_MAX_NAMED])
            more = f" and {len(unknown) - _MAX_NAMED} more" if len(unknown) > _MAX_NAMED else ""
            raise UnknownItems(
                f"{loc} has {len(unknown)} item id(s) unknown to model {engine.version}: "
                f"{named}{more}; remove them or ask for SEATER_STRICT_IDS=false; "
                f"{_catalogue_hint(engine)}",
                details=[
                    {"loc": loc, "msg": f"unknown item id {u!r}", "type": "unknown_item"}
                    for u in unknown[:_MAX_NAMED]
                ],
            )
        return idx[idx >= 0], unknown

    @staticmethod
    def allowed(engine: Engine, filters: ItemFilters | None) -> np.ndarray | None:
        """The filter's mask over the model's items (None: no filter); 422 when it names
        metadata the model lacks. Shape: -> bool [n_items], shared and read-only."""
        if filters is None:
            return None
        try:
            item_filter = filters.canonical()
            return None if item_filter.empty else engine.catalog.filters.mask(item_filter)
        except FilterError as exc:
            loc = f"body.filters.{exc.field}"
            raise InvalidInput(
                f"{loc}: {exc} (model {engine.version})",
                details=[{"loc": loc, "msg": str(exc), "type": "unknown_filter"}],
            ) from None

    async def retrieve(self, req: RetrieveRequest) -> RetrieveResponse:
        engine = self.holder.require()
        beam = req.beam_size or max(self.settings.default_beam, req.n)
        self._check_limits(req, beam)
        history, unknown = self._indices(engine, req.history, "body.history")
        excluded, unknown_excl = self._indices(engine, req.exclude, "body.exclude")
        if history.size == 0:
            raise InvalidInput(
                f"none of the {len(req.history)} history ids is known to model "
                f"{engine.version}: send the external item ids of its catalogue; "
                f"{_catalogue_hint(engine)}",
                details=[{"loc": "body.history", "msg": "no known ids", "type": "unknown_item"}],
            )
        truncated = history[-engine.info.max_history :]
        if req.exclude_seen:
            excluded = np.concatenate([excluded, history])
        excluded = np.unique(excluded)
        allowed = self.allowed(engine, req.filters)
        result = await self.batcher.submit(engine, truncated, req.n, beam, excluded, allowed)
        hit = result.hit
        catalog = engine.catalog
        # Values the engine produced, already of the model's types: constructed, not
        # validated field by field (this runs for every item of every answer).
        items = [
            RetrievedItem.model_construct(
                id=catalog.external_id(i), score=score, code=[c for c in code if c >= 0],
                title=catalog.title(i),
            )
            for i, score, code in zip(hit.items.tolist(), hit.scores.tolist(),
                                      hit.codes.tolist(), strict=True)
        ]
        return RetrieveResponse(
            items=items,
            model_version=engine.version,
            cached=result.cached,
            history_used=int(truncated.size),
            unknown_ids=unknown + unknown_excl,
        )
