"""The engine contract: one loaded model version, as the rest of the service sees it.

The batcher, cache and routes depend only on this Protocol and the state types, so they
are tested with a fake engine, and the engines (:mod:`service.model.seater`,
:mod:`service.model.dense`) can change without touching them. An engine is immutable
once built: a hot reload builds a new one and swaps the reference, while requests in
flight keep the engine they started with.

Threading: ``encode`` and ``search`` are called from a worker thread (never the event
loop), one call at a time per batch worker; they must not mutate shared state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from service.model.catalog import Catalog


@dataclass(frozen=True)
class EncoderMemory:
    """SEATER's per-request state: the decoder's cross-attention memory, unpadded (real
    history positions only), so it does not depend on the batch it was computed in.

    Shape:
        memory_k: float32 ``[layers, H, T_r, dh]`` cross-attention keys
        memory_v: float32 ``[layers, H, T_r, dh]`` cross-attention values
        memory_bias: float32 ``[T_r]`` (0 at real items)
    ``T_r`` is the request's (truncated) history length.
    """

    memory_k: np.ndarray
    memory_v: np.ndarray
    memory_bias: np.ndarray
    # Kept at float32 in any cache: padding biases are -1e9, beyond float16's range.
    FULL_PRECISION: ClassVar[frozenset[str]] = frozenset({"memory_bias"})

    @property
    def length(self) -> int:
        return int(self.memory_bias.shape[0])


@dataclass(frozen=True)
class UserVector:
    """The dense baseline's per-request state: SASRec's user vector.

    Shape: vector float32 ``[d]``.
    """

    vector: np.ndarray
    FULL_PRECISION: ClassVar[frozenset[str]] = frozenset()


EncoderState = EncoderMemory | UserVector
"""What ``encode`` returns and the cache stores: frozen dataclasses of float32 arrays."""
STATE_TYPES: tuple[type[EncoderMemory], type[UserVector]] = (EncoderMemory, UserVector)
"""Every state type, in a fixed order (the cache's payload names a state by its index)."""


def state_arrays(state: EncoderState) -> dict[str, np.ndarray]:
    """A state's arrays by field name, in declaration order."""
    return {f.name: getattr(state, f.name) for f in fields(state)}


@dataclass(frozen=True)
class SearchHit:
    """Top-n of one request, best first.

    Shape:
        items: int64 ``[m]`` item indices, ``m <= n`` (fewer when exclusions empty a beam)
        scores: float32 ``[m]`` sum of log-probs along the path (dense: dot product),
            descending
        codes: int64 ``[m, depth]`` child position per level (``-1`` padded for short
            paths; ``depth`` 0 for the dense baseline)
    """

    items: np.ndarray
    scores: np.ndarray
    codes: np.ndarray


class ModelInfo(BaseModel):
    """What ``GET /v1/model`` reports about the loaded version (``k``, ``depth`` and
    ``n_nodes`` are 0 for the dense baseline, which has no tree); the response adds the
    limits it is served under (:class:`service.schemas.ModelResponse`)."""

    model_config = ConfigDict(frozen=True)

    version: str
    kind: str = Field(description="seater (generative retrieval) or dense (brute-force baseline).")
    dataset: str | None
    format_version: int | str | None
    exported_at: str | None
    n_items: int
    n_nodes: int
    k: int
    depth: int
    max_history: int
    pad_id: int
    providers: list[str]
    device: str
    metrics: dict[str, Any] = Field(default_factory=dict, description="Metrics at export.")


@runtime_checkable
class Engine(Protocol):
    """One loaded model version. See the module docstring for the threading rules."""

    @property
    def version(self) -> str:
        """Model version; part of every cache key."""
        ...

    @property
    def info(self) -> ModelInfo: ...

    @property
    def catalog(self) -> Catalog:
        """External id <-> item index for this version."""
        ...

    def encode(self, histories: Sequence[np.ndarray]) -> list[EncoderState]:
        """Encode a batch of histories in one model call.

        Args:
            histories: per request, int64 ``[T_b]`` item indices, oldest first, already
                truncated to ``info.max_history`` (``1 <= T_b``).
        Returns:
            one state per history, in order.
        """
        ...

    def search(self, states: Sequence[EncoderState], n: np.ndarray, beam: np.ndarray,
               exclude: Sequence[np.ndarray], allowed: np.ndarray | None = None,
               allowed_of: np.ndarray | None = None) -> list[SearchHit]:
        """Top-n for a batch of requests in one decoding loop (or one scan).

        Args:
            states: per request encoder state (from ``encode`` or the cache).
            n: int64 ``[B]`` results wanted per request, ``1 <= n[b] <= beam[b]``.
            beam: int64 ``[B]`` beam width per request.
            exclude: per request int64 item indices never to return.
            allowed: bool ``[M, n_items]`` the distinct include masks of the batch (filters),
                or None: every item may be returned.
            allowed_of: int64 ``[B]`` the mask row of each request (with ``allowed``).
        Returns:
            one :class:`SearchHit` per request, in order; a filtered request gets
            ``min(n, allowed items not excluded)`` items, the search is not cut short by
            the filter.
        """
        ...

    def close(self) -> None:
        """Release sessions/device memory. Only called when no request can use it."""
        ...


class SmokeTestFailed(RuntimeError):
    """A freshly loaded engine did not answer a trivial query sensibly."""


def smoke_check(engine: Engine) -> None:
    """Run one tiny retrieval and check shapes and values; raise :class:`SmokeTestFailed`.

    Called after every load (startup and hot reload) so that a bundle that loads but
    cannot answer never replaces a working one.
    """
    info = engine.info
    n_items = len(engine.catalog)
    if n_items != info.n_items:
        raise SmokeTestFailed(f"items.json has {n_items} ids, the model has {info.n_items} items")
    history = np.arange(min(3, n_items), dtype=np.int64)
    try:
        states = engine.encode([history, history[:1]])
    except Exception as exc:
        raise SmokeTestFailed(f"encoder failed on a smoke query: {exc}") from exc
    if len(states) != 2:
        raise SmokeTestFailed(f"encoder returned {len(states)} states for 2 histories")
    for s in states:
        if not all(np.isfinite(a).all() for a in state_arrays(s).values()):
            raise SmokeTestFailed("encoder produced a non-finite state")
    n = min(5, n_items)
    beam = min(max(n, 8), n_items)
    # Exclude one item only where enough remain to fill n.
    excluded = history[:1] if n_items > n else np.zeros(0, dtype=np.int64)
    try:
        hits = engine.search(
            states,
            np.array([n, 1], dtype=np.int64),
            np.array([beam, beam], dtype=np.int64),
            [excluded, np.zeros(0, dtype=np.int64)],
        )
    except Exception as exc:
        raise SmokeTestFailed(f"beam search failed on a smoke query: {exc}") from exc
    if len(hits) != 2:
        raise SmokeTestFailed(f"search returned {len(hits)} results for 2 requests")
    for hit, want in zip(hits, (n, 1), strict=True):
        items, scores = hit.items, hit.scores
        if len(items) == 0 or len(items) > want or len(scores) != len(items):
            raise SmokeTestFailed(f"search returned {len(items)} items, wanted 1..{want}")
        if items.min() < 0 or items.max() >= n_items:
            raise SmokeTestFailed("search returned an item index outside the catalog")
        if not np.isfinite(scores).all() or np.any(np.diff(scores) > 1e-5):
            raise SmokeTestFailed("search scores are not finite and descending")
        if hit.codes.shape[0] != len(items):
            raise SmokeTestFailed("search returned codes of the wrong length")
    if set(excluded.tolist()) & set(hits[0].items.tolist()):
        raise SmokeTestFailed("search returned an excluded item")
