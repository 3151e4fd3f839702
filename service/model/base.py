"""What the SEATER and the dense engines share: one bundle, its ONNX encoder fed in
length buckets, the :class:`~service.model.engine.ModelInfo` they report, and the shaping
of a batch's ranked rows into per-request hits. Each engine adds what its encoder's
output means (:meth:`BundleEngine._states`) and how it ranks items (``search``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np
import onnxruntime as ort

from service.model.bundle import Bundle
from service.model.catalog import Catalog
from service.model.engine import EncoderState, ModelInfo, SearchHit
from service.model.sessions import device_of


def length_buckets(lengths: Sequence[int], smallest: int = 8) -> list[np.ndarray]:
    """Group requests whose histories pad to the same power of two (at least ``smallest``).

    A micro-batch of real histories (mostly short, a few long) padded to its longest row
    is mostly padding; encoding each bucket apart costs one more graph call per bucket
    but a fraction of the padded tokens (and of attention's T^2).
    Shape: lengths [B] -> index arrays into the batch, one per non-empty bucket.
    """
    lengths = np.asarray(lengths)
    width = np.maximum(smallest, 2 ** np.ceil(np.log2(np.maximum(lengths, 1))).astype(np.int64))
    return [np.flatnonzero(width == w) for w in np.unique(width)]


def describe(bundle: Bundle, session: ort.InferenceSession, *, n_items: int, n_nodes: int = 0,
             k: int = 0, depth: int = 0) -> ModelInfo:
    """The bundle's ``ModelInfo``, with the providers and device ``session`` runs on."""
    m = bundle.manifest
    return ModelInfo(
        version=bundle.version,
        dataset=m.dataset,
        n_items=n_items,
        n_nodes=n_nodes,
        k=k,
        depth=depth,
        max_history=bundle.max_history,
        pad_id=bundle.pad_id,
        providers=list(session.get_providers()),
        device=device_of(session),
        format_version=m.format_version,
        exported_at=m.exported_at,
        metrics=m.metrics,
        kind=m.kind,
    )


class BundleEngine(ABC):
    """One bundle's encoder session and catalog. Immutable; safe for concurrent calls.

    Args:
        tokens: int64 ``[n_items]`` the encoder's input token for each item index (SEATER:
            the item's leaf node id; dense: the index itself).
        codes: int64 ``[n_items, depth]`` each item's tree code (``depth`` 0 without a tree).
    """

    def __init__(self, bundle: Bundle, encoder: ort.InferenceSession, info: ModelInfo, *,
                 tokens: np.ndarray, codes: np.ndarray) -> None:
        self.bundle = bundle
        self.encoder = encoder
        self._info = info
        self._tokens = np.asarray(tokens, dtype=np.int64)
        self._codes = np.asarray(codes, dtype=np.int64)

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
        """One encoder call per length bucket, each history left-padded with ``pad_id``.

        Shape: histories[b] int64 [T_b] item indices -> one state per history, built from
        its most recent ``T_r = min(T_b, max_history)`` items.
        """
        lengths = [min(len(h), self.bundle.max_history) for h in histories]
        states: list[EncoderState | None] = [None] * len(histories)
        for bucket in length_buckets(lengths):
            bucket_lengths = [lengths[i] for i in bucket]
            t = max(bucket_lengths)
            tokens = np.full((len(bucket), t), self.bundle.pad_id, dtype=np.int64)  # (B, T)
            for row, (i, length) in enumerate(zip(bucket, bucket_lengths, strict=True)):
                tokens[row, t - length :] = self._tokens[np.asarray(histories[i][-length:],
                                                                    dtype=np.int64)]
            for i, state in zip(bucket, self._states(tokens, bucket_lengths), strict=True):
                states[i] = state
        return states  # type: ignore[return-value]  # every index is in one bucket

    @abstractmethod
    def _states(self, tokens: np.ndarray, lengths: list[int]) -> list[EncoderState]:
        """Run the encoder on one left-padded bucket. Shape: tokens int64 [B, T]."""

    def _hits(self, items: np.ndarray, scores: np.ndarray, n: np.ndarray) -> list[SearchHit]:
        """Per request: the first n[b] found items, codes looked up in one gather.

        Rows are sorted best first and padded with -1 after the found items, so a
        request's answer is a prefix of its row: slices, not masks.
        Shape: items int64 [B, n_max], scores float32 [B, n_max], n int64 [B].
        """
        if items.shape[0] != len(n):
            raise RuntimeError(f"ranking returned {items.shape[0]} rows for {len(n)}")
        found = np.minimum((items >= 0).sum(axis=1), n).tolist()
        codes = self._codes[np.maximum(items, 0)]  # (B, n_max, depth)
        scores = scores.astype(np.float32, copy=False)
        return [SearchHit(items[b, :m], scores[b, :m], codes[b, :m]) for b, m in enumerate(found)]

    def close(self) -> None:
        """Sessions free their memory when released; drop our references eagerly."""
        self.__dict__.pop("encoder", None)
