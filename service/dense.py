"""The brute-force baseline engine: SASRec's user vector against every item embedding.

Served by exactly the stack SEATER uses (routes, micro-batcher, cache, metrics), so the
two can be load-tested side by side: only the :class:`~service.engine.Engine` differs.
``encode`` runs the bundle's ``encoder.onnx`` (history item indices -> user vector) and
stores each vector as a one-position state (:func:`service.engine.vector_state`), so
the cache keeps working unchanged. ``search`` scores the micro-batch with one
``[B, d] x [d, n_items]`` matmul, masks each request's exclusions, and takes the top-n
with ``argpartition``; ties go to the lower item index, as ``training.metrics.topk_indices``
breaks them offline. There is no tree, so codes are empty.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from service.bundle import DenseBundle, load_dense_bundle
from service.catalog import Catalog
from service.engine import EncoderState, ModelInfo, SearchHit, length_buckets, vector_state
from service.sessions import RuntimeOptions, device_of, open_session

__all__ = ["DenseEngine", "load_dense_bundle", "top_n"]

ENCODER_INPUTS = {"history"}
ENCODER_OUTPUTS = ("user",)


def top_n(scores: np.ndarray, n: int) -> np.ndarray:
    """Indices of the ``n`` best scores per row, best first, ties to the lower index.

    ``argpartition`` finds the n best in O(N); a row whose n-th best value also occurs
    outside them (a tie across the cut) is re-ranked exactly, so the lower index wins
    there too, as offline. Shape: scores float32 [B, N] -> int64 [B, min(n, N)].
    """
    rows, width = scores.shape
    n = min(n, width)
    if n < width:
        part = np.argpartition(-scores, n - 1, axis=1)[:, :n]
    else:
        part = np.tile(np.arange(width), (rows, 1))
    picked = np.take_along_axis(scores, part, axis=1)
    if 0 < n < width:
        kth = picked.min(axis=1, keepdims=True)
        tied = np.flatnonzero((scores == kth).sum(axis=1) > (picked == kth).sum(axis=1))
        for b in tied:
            part[b] = np.lexsort((np.arange(width), -scores[b]))[:n]
            picked[b] = scores[b, part[b]]
    order = np.lexsort((part, -picked), axis=1)
    return np.take_along_axis(part, order, axis=1).astype(np.int64)


class DenseEngine:
    """One dense bundle's user encoder + item table. Immutable; safe for concurrent calls."""

    def __init__(self, bundle: DenseBundle, options: RuntimeOptions) -> None:
        self.bundle = bundle
        self.encoder = open_session(bundle.encoder_path, options, ENCODER_INPUTS, ENCODER_OUTPUTS)
        self.item_emb_t = np.ascontiguousarray(bundle.item_emb.T)  # (d, n_items) for the matmul
        n_items = bundle.item_emb.shape[0]
        self._info = ModelInfo(
            version=bundle.version,
            dataset=bundle.manifest.dataset,
            n_items=n_items,
            n_nodes=0,
            k=0,
            depth=0,
            max_history=bundle.max_history,
            pad_id=bundle.pad_id,
            providers=list(self.encoder.get_providers()),
            device=device_of(self.encoder),
            format_version=bundle.manifest.format_version,
            exported_at=bundle.manifest.exported_at,
            bundle_path=str(bundle.path),
            metrics=bundle.manifest.metrics,
            kind="dense",
        )

    @property
    def version(self) -> str:
        return self.bundle.version

    @property
    def info(self) -> ModelInfo:
        return self._info

    @property
    def catalog(self) -> Catalog:
        return self.bundle.catalog

    def encode(self, histories: Sequence[np.ndarray]) -> list[EncoderState]:
        """One encoder call per length bucket, left-padded with ``pad_id``.

        Shape: histories[b] int64 [T_b] item indices -> one user vector [d] per request.
        """
        lengths = [min(len(h), self.bundle.max_history) for h in histories]
        states: list[EncoderState | None] = [None] * len(histories)
        for bucket in length_buckets(lengths):
            t = max(lengths[i] for i in bucket)
            seq = np.full((len(bucket), t), self.bundle.pad_id, dtype=np.int64)  # (B, T)
            for row, i in enumerate(bucket):
                seq[row, t - lengths[i] :] = np.asarray(histories[i][-lengths[i] :], np.int64)
            (users,) = self.encoder.run(list(ENCODER_OUTPUTS), {"history": seq})  # (B, d)
            if users.shape != (len(bucket), self.item_emb_t.shape[0]):
                raise RuntimeError(f"encoder returned {users.shape} for {len(bucket)} histories")
            for i, user in zip(bucket, users, strict=True):
                states[i] = vector_state(user)
        return states  # type: ignore[return-value]  # every index is in one bucket

    def search(
        self,
        states: Sequence[EncoderState],
        n: np.ndarray,
        beam: np.ndarray,
        exclude: Sequence[np.ndarray],
    ) -> list[SearchHit]:
        """Score every item for the whole batch, mask exclusions, top-n per request.

        ``beam`` is ignored: the scan is exhaustive.
        """
        users = np.stack([s.memory_k.reshape(-1) for s in states])  # (B, d)
        scores = users @ self.item_emb_t  # (B, n_items)
        for b, items in enumerate(exclude):
            scores[b, np.asarray(items, np.int64)] = -np.inf
        n = np.asarray(n, np.int64)
        top = top_n(scores, int(n.max()))
        hits = []
        for b in range(len(states)):
            items = top[b, : n[b]]
            found = scores[b, items]
            keep = np.isfinite(found)  # fewer than n items left after the exclusions
            no_codes = np.zeros((int(keep.sum()), 0), np.int64)
            hits.append(SearchHit(items[keep], found[keep].astype(np.float32), no_codes))
        return hits

    def close(self) -> None:
        self.__dict__.pop("encoder", None)
