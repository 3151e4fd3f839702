"""Shuffled training batches, optionally grouped by length: shared by every model's task.

Grouping examples of similar length (sorted inside shuffled chunks of 64 batches, the
batch order shuffled again) pads a batch to about its own length instead of the longest
example's, which is most of an epoch's cost when most histories are short.
"""

from __future__ import annotations

import numpy as np

CHUNK_BATCHES = 64


def length_batches(rng: np.random.Generator, lengths: np.ndarray, batch_size: int,
                   bucket: bool) -> list[np.ndarray]:
    """Example indices per batch for one epoch, every example once, in ``rng``'s order.

    Shape: lengths [N] -> batches of at most ``batch_size`` indices."""
    order = rng.permutation(len(lengths))
    if bucket:
        chunk = batch_size * CHUNK_BATCHES
        parts = [order[i : i + chunk] for i in range(0, len(order), chunk)]
        order = np.concatenate([p[np.argsort(lengths[p], kind="stable")] for p in parts]) \
            if parts else order
    groups = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if bucket:
        groups = [groups[g] for g in rng.permutation(len(groups))]
    return groups
