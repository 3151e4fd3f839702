"""The brute-force baseline engine: SASRec's user vector against every item embedding.

Served by exactly the stack SEATER uses (routes, micro-batcher, cache, metrics), so the
two can be load-tested side by side: only the engine differs. ``encode`` runs the
bundle's ``encoder.onnx`` (history item indices and, from bundle format 2 on, the item
table -> user vector, a :class:`~service.model.engine.UserVector` state the cache stores
like any other).
``search`` scores the micro-batch with one ``[B, d] x [d, n_items]`` matmul, masks each
request's exclusions and filters, and takes the top-n with ``argpartition``; ties go to the lower
item index, so an answer never varies between calls (offline evaluation breaks ties in a
seeded random order instead, ``training.metrics.topk_indices``, so that a model is not
credited for the index order). There is no tree, so codes are empty.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnxruntime as ort

from service.model.base import BundleEngine, describe
from service.model.bundle import DenseBundle
from service.model.engine import SearchHit, UserVector
from service.model.sessions import RuntimeOptions, open_session

# the encoder's inputs by bundle format: 1 held the item table inside the graph
ENCODER_INPUTS = {1: {"history"}, 2: {"history", "item_emb"}}
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


class DenseEngine(BundleEngine):
    """One dense bundle's user encoder + item table. Immutable; safe for concurrent calls."""

    bundle: DenseBundle

    def __init__(self, bundle: DenseBundle, options: RuntimeOptions) -> None:
        inputs = ENCODER_INPUTS[bundle.manifest.format_version]
        encoder = open_session(bundle.encoder_path, options, inputs, ENCODER_OUTPUTS)
        n_items = bundle.item_emb.shape[0]
        super().__init__(bundle, encoder, describe(bundle, encoder, n_items=n_items),
                         tokens=np.arange(n_items), codes=np.zeros((n_items, 0)))
        self.item_emb_t = np.ascontiguousarray(bundle.item_emb.T)  # (d, n_items) for the matmul
        # the table as a graph input: wrapped once, shared with the bundle's array
        self._table = ({"item_emb": ort.OrtValue.ortvalue_from_numpy(bundle.item_emb)}
                       if "item_emb" in inputs else {})

    def _states(self, tokens: np.ndarray, lengths: list[int]) -> list[UserVector]:
        """Shape: tokens int64 [B, T] item indices -> one user vector [d] per request."""
        feed = {"history": ort.OrtValue.ortvalue_from_numpy(tokens), **self._table}
        (users,) = self.encoder.run_with_ort_values(list(ENCODER_OUTPUTS), feed)
        users = users.numpy()  # (B, d)
        if users.shape != (len(tokens), self.item_emb_t.shape[0]):
            raise RuntimeError(f"encoder returned {users.shape} for {len(tokens)} histories")
        return [UserVector(np.ascontiguousarray(user, dtype=np.float32)) for user in users]

    def search(self, states: Sequence[UserVector], n: np.ndarray, beam: np.ndarray,
               exclude: Sequence[np.ndarray], allowed: np.ndarray | None = None,
               allowed_of: np.ndarray | None = None) -> list[SearchHit]:
        """Score every item for the whole batch, mask exclusions and filters, top-n per
        request (masked before the top-n, so n allowed items come back while n exist).

        ``beam`` is ignored: the scan is exhaustive.
        """
        users = np.stack([s.vector for s in states])  # (B, d)
        scores = users @ self.item_emb_t  # (B, n_items)
        for b, items in enumerate(exclude):
            scores[b, np.asarray(items, np.int64)] = -np.inf
        if allowed is not None:
            np.copyto(scores, -np.inf, where=~np.asarray(allowed)[np.asarray(allowed_of)])
        n = np.asarray(n, np.int64)
        top = top_n(scores, int(n.max()))  # (B, n_max), best first
        found = np.take_along_axis(scores, top, axis=1)
        top[~np.isfinite(found)] = -1  # fewer than n items left after the exclusions
        return self._hits(top, found, n)
