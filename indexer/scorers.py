"""Reference step scorers for `beam_search`: no model, just arrays.

`DotProductScorer` is the decoder's last step without the decoder: the log-softmax over
the children of q_b . e_child for a per-request query q_b (SEATER's Eq. 4 with the
hidden state replaced by a fixed query). Benchmarks use it so they time the search's
own bookkeeping; tests use it and `TableScorer` because both score a row from the row
alone, so results do not depend on how rows are batched.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def log_softmax_children(logits: np.ndarray, kids: np.ndarray) -> np.ndarray:
    """Log-softmax over the valid child slots (kids >= 0); invalid slots get -inf.

    Shape: logits, kids [..., k] -> float32 [..., k].
    """
    valid = kids >= 0
    logits = np.where(valid, logits, -np.inf)
    top = logits.max(axis=-1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        norm = np.log(np.exp(logits - top).sum(axis=-1, keepdims=True))
    return np.where(valid, logits - top - norm, -np.inf).astype(np.float32)


@dataclass(frozen=True)
class DotProductScorer:
    """logp(child | prefix, b) = log_softmax over children of q_b . e_child.

    Attributes:
        children: the tree's children table. Shape: [n_nodes, k].
        node_emb: one vector per node. Shape: [n_nodes, d], float32.
        queries: one vector per request. Shape: [B, d], float32.
    """

    children: np.ndarray
    node_emb: np.ndarray
    queries: np.ndarray

    def __call__(self, prefix: np.ndarray) -> np.ndarray:
        """Shape: prefix [B, W, t] -> [B, W, k] float32."""
        kids = self.children[prefix[..., -1]]  # [B, W, k]
        emb = self.node_emb[np.maximum(kids, 0)]  # [B, W, k, d]
        logits = np.einsum("bwkd,bd->bwk", emb, self.queries)
        return log_softmax_children(logits, kids)


@dataclass(frozen=True)
class TableScorer:
    """logp from a fixed [B, n_nodes] table of child logits (tests: exact, tie-prone).

    Attributes:
        children: the tree's children table. Shape: [n_nodes, k].
        logits: per request, a logit for every node as a child. Shape: [B, n_nodes].
        normalise: apply the log-softmax (False keeps raw values, to craft exact ties).
    """

    children: np.ndarray
    logits: np.ndarray
    normalise: bool = True

    def __call__(self, prefix: np.ndarray) -> np.ndarray:
        """Shape: prefix [B, W, t] -> [B, W, k] float32."""
        kids = self.children[prefix[..., -1]]  # [B, W, k]
        b = np.arange(prefix.shape[0])[:, None, None]
        raw = self.logits[b, np.maximum(kids, 0)]
        if self.normalise:
            return log_softmax_children(raw, kids)
        return np.where(kids >= 0, raw, -np.inf).astype(np.float32)
