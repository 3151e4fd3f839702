"""The engine contract: one loaded model version, as the rest of the service sees it.

The batcher, cache and routes depend only on this Protocol, so they are tested with a
fake engine, and the ONNX Runtime implementation (:mod:`service.runtime`) can change
without touching them. An engine is immutable once built: a hot reload builds a new one
and swaps the reference, while requests in flight keep the engine they started with.

Threading: ``encode`` and ``search`` are called from a worker thread (never the event
loop), one call at a time per batch worker; they must not mutate shared state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from service.catalog import Catalog


@dataclass(frozen=True)
class EncoderState:
    """The per-request output of the encoder, unpadded (real history positions only).

    Shape:
        memory_k: float32 ``[layers, H, T_r, dk]`` cross-attention keys
        memory_v: float32 ``[layers, H, T_r, dv]`` cross-attention values
        memory_bias: float32 ``[T_r]`` (0 at real items)
    For SEATER ``T_r`` is the request's (truncated) history length and ``dk = dv = dh``;
    the dense baseline stores its user vector as one position (see :func:`vector_state`).
    States do not depend on the batch they were computed in, which is what makes them
    cacheable.
    """

    memory_k: np.ndarray
    memory_v: np.ndarray
    memory_bias: np.ndarray

    @property
    def length(self) -> int:
        return int(self.memory_bias.shape[0])


def vector_state(vector: np.ndarray) -> EncoderState:
    """A one-vector state (the dense baseline's user vector) in the cacheable layout.

    Shape: vector float32 [d] -> memory_k [1, 1, 1, d], memory_v [1, 1, 1, 0], bias [1].
    """
    k = np.ascontiguousarray(vector, dtype=np.float32).reshape(1, 1, 1, -1)
    return EncoderState(k, np.zeros((1, 1, 1, 0), np.float32), np.zeros(1, np.float32))


def length_buckets(lengths: Sequence[int], smallest: int = 8) -> list[np.ndarray]:
    """Group requests whose histories pad to the same power of two (at least ``smallest``).

    A micro-batch of real histories (Beauty: median 6 items, some 50) padded to its
    longest row is mostly padding; encoding each bucket apart costs one more graph call
    per bucket but a fraction of the padded tokens (and of attention's T^2).
    Shape: lengths [B] -> index arrays into the batch, one per non-empty bucket.
    """
    lengths = np.asarray(lengths)
    width = np.maximum(smallest, 2 ** np.ceil(np.log2(np.maximum(lengths, 1))).astype(np.int64))
    return [np.flatnonzero(width == w) for w in np.unique(width)]


@dataclass(frozen=True)
class SearchHit:
    """Top-n of one request, best first.

    Shape:
        items: int64 ``[m]`` item indices, ``m <= n`` (fewer when exclusions empty a beam)
        scores: float32 ``[m]`` sum of log-probs along the path, descending
        codes: int64 ``[m, depth]`` child position per level (``-1`` padded for short paths)
    """

    items: np.ndarray
    scores: np.ndarray
    codes: np.ndarray


@dataclass(frozen=True)
class ModelInfo:
    """What ``GET /v1/model`` reports about the loaded version (``k``, ``depth`` and
    ``n_nodes`` are 0 for the dense baseline, which has no tree)."""

    version: str
    dataset: str | None
    n_items: int
    n_nodes: int
    k: int
    depth: int
    max_history: int
    pad_id: int
    providers: list[str]
    device: str
    format_version: int | str | None = None
    exported_at: str | None = None
    bundle_path: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    kind: str = "seater"


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
            one :class:`EncoderState` per history, in order.
        """
        ...

    def search(
        self,
        states: Sequence[EncoderState],
        n: np.ndarray,
        beam: np.ndarray,
        exclude: Sequence[np.ndarray],
    ) -> list[SearchHit]:
        """Constrained beam search for a batch of requests in one decoding loop.

        Args:
            states: per request encoder state (from ``encode`` or the cache).
            n: int64 ``[B]`` results wanted per request, ``1 <= n[b] <= beam[b]``.
            beam: int64 ``[B]`` beam width per request.
            exclude: per request int64 item indices never to return.
        Returns:
            one :class:`SearchHit` per request, in order.
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
        raise SmokeTestFailed(f"items.json has {n_items} ids, the tree has {info.n_items} items")
    history = np.arange(min(3, n_items), dtype=np.int64)
    try:
        states = engine.encode([history, history[:1]])
    except Exception as exc:
        raise SmokeTestFailed(f"encoder failed on a smoke query: {exc}") from exc
    if len(states) != 2:
        raise SmokeTestFailed(f"encoder returned {len(states)} states for 2 histories")
    for s in states:
        k, v = s.memory_k, s.memory_v
        if k.ndim != 4 or k.shape[:3] != v.shape[:3] or k.shape[2] != s.length:
            raise SmokeTestFailed(f"encoder state shapes disagree: {k.shape}, {v.shape}")
        if not (np.isfinite(s.memory_k).all() and np.isfinite(s.memory_v).all()):
            raise SmokeTestFailed("encoder produced non-finite memory")
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
