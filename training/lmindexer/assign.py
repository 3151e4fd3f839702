"""Capacity-aware code assignment: learned scores -> stored codes, one position at a time.

The auto-encoder alone gives every item its argmax code, and near-duplicate products
(30 shades of one nail polish) then share a full ID. ``indexer.from_codes`` can still
tell them apart with an extra level, but that level's fan-out is the largest group,
which makes beam search wide and the IDs one token longer. So each position is
assigned under a capacity: among items that share the prefix c_<t, code j may hold at
most ``cap`` items, where

    cap = min(max_collision * k**(L-1-t),  ceil(slack * group_size / k))

The first bound is the hard one (the subtree below must still fit its items with
distinct codes, so with max_collision = 1 the final codes are collision-free); the
second is a balance knob. Within a group the assignment is item-proposing deferred
acceptance (Gale-Shapley): every item asks for its best-scoring code, a full code
keeps its best-scoring askers and refuses the rest, who ask for their next choice. The
result is stable (no item and code both prefer each other over what they got), every
item keeps its argmax unless its code is over capacity, and it is vectorised over all
groups at once, one round per refusal wave (each round moves every refused item one
choice down, so there are at most n * (k - 1) refusals in all; a few dozen rounds in
practice).
"""

from __future__ import annotations

import math

import numpy as np


def hard_capacity(k: int, levels: int, t: int, max_collision: int) -> int:
    """Items one code at position t (0-based) can hold: max_collision * k**(L-1-t)."""
    return max_collision * k ** (levels - 1 - t)


def auto_levels(n_items: int, k: int, max_collision: int) -> int:
    """Smallest L with k**L * max_collision >= n_items (integer arithmetic)."""
    levels, capacity = 1, k * max_collision
    while capacity < n_items:
        levels, capacity = levels + 1, capacity * k
    return levels


def group_ids(prefix: np.ndarray) -> np.ndarray:
    """Dense id of each row's prefix (rows with equal prefixes share it).

    Shape: prefix int [n, t] (t may be 0) -> int64 [n] in 0..n_groups-1.
    """
    if prefix.shape[1] == 0:
        return np.zeros(len(prefix), np.int64)
    _, inverse = np.unique(prefix, axis=0, return_inverse=True)
    return inverse.ravel().astype(np.int64)


def group_caps(sizes: np.ndarray, k: int, hard_cap: int, slack: float) -> np.ndarray:
    """Per-group capacity of one code. Shape: sizes [G] -> int64 [G]."""
    sizes = np.asarray(sizes, np.int64)
    if (sizes > k * hard_cap).any():
        raise ValueError(f"a prefix group of {int(sizes.max())} items cannot fit k={k} codes "
                         f"of capacity {hard_cap}: raise levels or max_collision")
    soft = np.ceil(slack * sizes / k) if math.isfinite(slack) else np.full(len(sizes), hard_cap)
    need = -(-sizes // k)  # ceil(size / k): below this the group cannot fit
    return np.minimum(np.maximum(soft.astype(np.int64), need), hard_cap)


def capacity_assign(scores: np.ndarray, groups: np.ndarray, caps: np.ndarray) -> np.ndarray:
    """Item-proposing deferred acceptance within each group, at most caps[g] per code.

    Shape: scores float [n, k] (higher = better), groups int [n] in 0..G-1, caps int [G]
    with bincount(groups) <= k * caps -> codes int64 [n].
    """
    scores = np.asarray(scores, np.float64)
    groups = np.asarray(groups, np.int64)
    n, k = scores.shape
    sizes = np.bincount(groups, minlength=len(caps))
    if (sizes > k * np.asarray(caps)).any():
        raise ValueError("some group has more items than k * cap: infeasible")
    prefs = np.argsort(-scores, axis=1, kind="stable")  # (n, k) best code first
    ptr = np.zeros(n, np.int64)
    rows = np.arange(n)
    while True:
        code = prefs[rows, ptr]
        cell = groups * k + code
        score = scores[rows, code]
        order = np.lexsort((rows, -score, cell))  # by cell, best score first, then index
        sorted_cell = cell[order]
        starts = np.flatnonzero(np.r_[True, sorted_cell[1:] != sorted_cell[:-1]])
        rank = np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n]))
        refused = order[rank >= caps[groups[order]]]
        if refused.size == 0:
            return code
        ptr[refused] += 1
        if (ptr >= k).any():  # cannot happen when the sizes fit, kept as a guard
            raise RuntimeError("deferred acceptance ran out of codes")
