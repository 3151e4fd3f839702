"""Evaluate any recommender on an evaluation set, in batches, with the shared metrics."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from tqdm.auto import tqdm

from training.data.sequences import Sequences
from training.metrics import DEFAULT_KS, compute_metrics
from training.protocols import EvalSet


class Recommender(Protocol):
    """The one contract SASRec, SEATER and the brute-force baselines share."""

    def recommend(self, histories: Sequences, k: int, exclude: Sequences | None) -> np.ndarray:
        """Top-``k`` item indices per history, best first (-1 for empty slots).

        Equal scores go in a seeded random order (``training.metrics.topk_indices``), so
        a model that cannot tell items apart is credited with chance, not with a bias
        towards low item indices. Shape: histories has B rows -> int64 [B, k].
        """
        ...


@dataclass(frozen=True)
class EvalResult:
    metrics: dict[str, float]
    n_users: int
    seconds: float

    @property
    def users_per_s(self) -> float:
        return self.n_users / max(self.seconds, 1e-9)


def evaluate(
    model: Recommender,
    evalset: EvalSet,
    ks: Sequence[int] = DEFAULT_KS,
    batch_size: int = 512,
    exclude_seen: bool = True,
    max_users: int = 0,
    seed: int = 0,
    progress: bool = True,
    desc: str = "eval",
) -> EvalResult:
    """Rank for every user, then score the ranked lists against the ground truth.

    ``exclude_seen`` removes the context items from the candidates (the usual choice on
    the Amazon sets, which have no repeats). ``max_users`` evaluates a fixed random
    subset (for cheap validation during training); 0 means everyone.
    """
    if max_users and max_users < len(evalset):
        rows = np.sort(np.random.default_rng(seed).choice(len(evalset), max_users, replace=False))
        evalset = evalset.subset(rows)
    k = max(ks)
    start = time.perf_counter()
    ranked = []
    for lo in tqdm(range(0, len(evalset), batch_size), desc=desc, disable=not progress,
                   leave=False, unit="batch"):
        rows = np.arange(lo, min(lo + batch_size, len(evalset)))
        ctx = evalset.contexts.take(rows)
        ranked.append(model.recommend(ctx, k, ctx if exclude_seen else None))
    ranked_all = np.concatenate(ranked) if ranked else np.zeros((0, k), dtype=np.int64)
    seconds = time.perf_counter() - start
    return EvalResult(compute_metrics(ranked_all, evalset.targets, ks), len(evalset), seconds)
