"""Top-K ranking metrics over the full item set, vectorised over users.

Every metric takes the hit matrix of ranked lists against ground-truth *sets* (a target
repeated in the data counts once; an item repeated in a ranked list counts at its first
position only) and returns one value per user; the registry maps names to functions.

- ``recall@K = |top-K ∩ T| / |T|``
- ``hr@K = 1[|top-K ∩ T| > 0]`` (equal to recall under leave-one-out, where |T| = 1)
- ``ndcg@K = DCG@K / IDCG@K`` with ``DCG = Σ_{j<K} hit_j / log2(j + 2)`` and
  ``IDCG = Σ_{j < min(|T|, K)} 1 / log2(j + 2)`` (the official definition SEATER uses;
  ComiRec's code divides by the hits' own ideal instead, which inflates NDCG)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from training.data.sequences import Sequences

DEFAULT_KS = (5, 10, 20, 50)
MetricFn = Callable[[np.ndarray, np.ndarray, int], np.ndarray]


def hit_matrix(ranked: np.ndarray, targets: Sequences) -> np.ndarray:
    """``hits[u, j]``: the j-th ranked item of user u is in u's target set (first occurrence).

    Shape: ranked int [U, K] (-1 = empty slot); targets has U rows -> bool [U, K].
    """
    ranked = np.asarray(ranked, dtype=np.int64)
    n_users, width = ranked.shape
    if len(targets) != n_users:
        raise ValueError(f"{n_users} ranked lists but {len(targets)} target sets")
    base = int(max(ranked.max(initial=0), targets.values.max(initial=0))) + 1
    target_keys = np.unique(targets.row_ids() * base + targets.values)
    keys = np.arange(n_users, dtype=np.int64)[:, None] * base + ranked
    hits = np.isin(keys, target_keys) & (ranked >= 0)
    return hits & _first_occurrence(ranked)


def _first_occurrence(ranked: np.ndarray) -> np.ndarray:
    """True where an item appears in its row for the first time. Shape: [U, K] -> [U, K]."""
    order = np.argsort(ranked, axis=1, kind="stable")
    srt = np.take_along_axis(ranked, order, axis=1)
    dup_sorted = np.zeros_like(srt, dtype=bool)
    dup_sorted[:, 1:] = srt[:, 1:] == srt[:, :-1]
    first = np.ones_like(ranked, dtype=bool)
    np.put_along_axis(first, order, ~dup_sorted, axis=1)
    return first


def n_relevant(targets: Sequences) -> np.ndarray:
    """Distinct ground-truth items per user. Shape: [U]."""
    rows = targets.row_ids()
    base = int(targets.values.max(initial=0)) + 1
    uniq = np.unique(rows * base + targets.values)
    return np.bincount(uniq // base, minlength=len(targets))


def recall(hits: np.ndarray, n_rel: np.ndarray, k: int) -> np.ndarray:
    return hits[:, :k].sum(axis=1) / np.maximum(n_rel, 1)


def hit_rate(hits: np.ndarray, n_rel: np.ndarray, k: int) -> np.ndarray:
    return hits[:, :k].any(axis=1).astype(np.float64)


def ndcg(hits: np.ndarray, n_rel: np.ndarray, k: int) -> np.ndarray:
    discounts = 1.0 / np.log2(np.arange(k) + 2.0)
    top = hits[:, :k]
    dcg = top @ discounts[: top.shape[1]]
    ideal = np.concatenate([[0.0], np.cumsum(discounts)])
    return dcg / ideal[np.clip(n_rel, 1, k)]


METRICS: dict[str, MetricFn] = {"recall": recall, "hr": hit_rate, "ndcg": ndcg}


def compute_metrics(
    ranked: np.ndarray,
    targets: Sequences,
    ks: Sequence[int] = DEFAULT_KS,
    names: Sequence[str] = ("recall", "hr", "ndcg"),
) -> dict[str, float]:
    """Mean of every metric at every K, keyed ``"<name>@<K>"``; users without targets skip."""
    per_user = per_user_metrics(ranked, targets, ks, names)
    return {key: float(v.mean()) if v.size else 0.0 for key, v in per_user.items()}


def per_user_metrics(
    ranked: np.ndarray,
    targets: Sequences,
    ks: Sequence[int] = DEFAULT_KS,
    names: Sequence[str] = ("recall", "hr", "ndcg"),
) -> dict[str, np.ndarray]:
    hits = hit_matrix(ranked, targets)
    n_rel = n_relevant(targets)
    keep = n_rel > 0
    return {
        f"{name}@{k}": METRICS[name](hits[keep], n_rel[keep], k) for name in names for k in ks
    }


def topk_indices(scores: np.ndarray, k: int, tie_seed: int | None = 0) -> np.ndarray:
    """Indices of the ``k`` best scores per row, best first; equal scores in random order.

    The tie rule decides what a model that scores many items equally (an untrained or
    collapsed one) is credited with. Ties go to a seeded random order, so such a model
    gets chance-level metrics and the same scores always give the same answer. Sending
    them to the lower index instead (``tie_seed=None``, the service's deterministic rule)
    favours low item indices, which the S3Rec files give to the earliest-seen items.
    Shape: scores float [U, N] -> int64 [U, min(k, N)].
    """
    scores = np.asarray(scores)
    n_rows, n = scores.shape
    k = min(k, n)
    if k == 0:
        return np.zeros((n_rows, 0), dtype=np.int64)
    kth = -np.partition(-scores, k - 1, axis=1)[:, k - 1 : k]  # the k-th largest value
    greater = scores > kth
    ties = scores == kth
    room = k - greater.sum(axis=1, keepdims=True)
    rng = None if tie_seed is None else np.random.default_rng(tie_seed)
    take = greater | _pick_ties(ties, room, rng)
    cols = np.nonzero(take)[1].reshape(n_rows, k)  # row-major: ascending index per row
    vals = np.take_along_axis(scores, cols, axis=1)
    if rng is None:
        order = np.argsort(-vals, axis=1, kind="stable")
    else:  # equal scores inside the list in random order too
        order = np.lexsort((rng.random(vals.shape), -vals), axis=1)
    return np.take_along_axis(cols, order, axis=1).astype(np.int64)


def _pick_ties(ties: np.ndarray, room: np.ndarray, rng: np.random.Generator | None
               ) -> np.ndarray:
    """``room`` of each row's tied entries: the lowest indices, or a random choice.

    Shape: ties bool [U, N]; room int [U, 1] -> bool [U, N]."""
    if rng is None:
        return ties & (np.cumsum(ties, axis=1) <= room)
    rows, cols = np.nonzero(ties)  # sparse: trained scores tie only at the k-th value
    order = np.lexsort((rng.random(rows.size), rows))  # by row, random inside a row
    rows, cols = rows[order], cols[order]
    rank = np.arange(rows.size) - np.searchsorted(rows, rows, side="left")
    keep = rank < room[rows, 0]
    picked = np.zeros_like(ties)
    picked[rows[keep], cols[keep]] = True
    return picked
