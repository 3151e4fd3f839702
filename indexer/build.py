"""Tree builders: balanced (SEATER Algorithm 1), imbalanced k-means, random, from codes.

Every builder produces per-item codes (child positions along the path) and hands them
to `assemble`, which numbers the nodes the one way the contract allows: leaf id == item
index, root == n_items, internal nodes in BFS order (by depth, parent, slot).

Deviation from Algorithm 1 (uniform depth): the paper stops recursing when a group has
<= k items, so with n = 257, k = 16 most leaves sit at depth 3 but one group of 1-2
items ends at depth 2. Here every leaf of a balanced tree sits at depth
L = ceil(log_k n): a group is split into k groups of floor(m/k) or floor(m/k)+1 items at
every level, and a group of m <= k items above the last level becomes m single-item
chains (a node may then have fewer than k children, even one). Equal lengths keep the
paper's promise that tokens at one level share one granularity, and they let the
search decode all rows in lock-step.

Children of a split are ordered by their smallest item index, so codes do not depend on
the arbitrary labels a clustering run returns.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from indexer.cluster import balanced_kmeans_exact, balanced_kmeans_fast, kmeans
from indexer.tree import IdTree, ceil_log, subtree_sums

log = logging.getLogger(__name__)

Method = Literal["balanced", "kmeans", "random"]
Splitter = Literal["auto", "exact", "fast"]


@dataclass(frozen=True)
class BuildConfig:
    """How to build a tree.

    Attributes:
        k: branching factor (paper: 16 on most datasets).
        method: "balanced" (Algorithm 1), "kmeans" (imbalanced ablation) or "random"
            (balanced shape, random assignment; the paper's weakest identifiers).
        splitter: balanced only. "exact" = k-means-constrained (min-cost flow) at every
            split; "fast" = price-based balanced assignment (`indexer.cluster`); "auto"
            = exact when n_items <= exact_max_items, else fast.
        exact_max_items: threshold of "auto"; exact costs ~0.5 s per 1k points per split.
        max_iter: Lloyd iterations per split (both splitters).
        n_init: restarts of the exact splitter.
        sample_size: fast splitter: centroids converge on a subsample above this size.
        max_depth: kmeans only: deepest allowed leaf (default ceil(log_k n) + 2);
            a k-means split that would not fit falls back to a balanced split.
        seed: makes every builder deterministic.
        progress: show a tqdm bar per level (when tqdm is installed).
    """

    k: int = 16
    method: Method = "balanced"
    splitter: Splitter = "auto"
    exact_max_items: int = 20_000
    max_iter: int = 30
    n_init: int = 1
    sample_size: int = 20_000
    max_depth: int | None = None
    seed: int = 0
    progress: bool = True


@dataclass(frozen=True)
class BuildReport:
    """What a build did and how long each level took (seconds)."""

    method: str
    splitter: str
    n_items: int
    k: int
    depth: int
    seconds: float
    level_seconds: tuple[float, ...] = field(default_factory=tuple)
    level_splits: tuple[int, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class CodesReport:
    """Collision statistics of `from_codes` (semantic IDs may collide)."""

    n_items: int
    n_unique_codes: int
    collision_rate: float  # fraction of items whose code another item shares
    max_collision: int  # items in the largest group sharing one code
    added_level: bool  # True when a disambiguation level was appended
    k: int


def build_tree(embeddings: np.ndarray | None, config: BuildConfig) -> tuple[IdTree, BuildReport]:
    """Build the tree named by `config.method`; "random" only reads len(embeddings)
    (or call `build_random(n_items, config)` directly).

    Shape: embeddings [n_items, d].
    """
    if config.method == "balanced":
        return build_balanced(embeddings, config)
    if config.method == "kmeans":
        return build_kmeans(embeddings, config)
    if config.method == "random":
        if embeddings is None:
            raise ValueError("build_tree(method='random') needs embeddings for n_items; "
                             "or call build_random(n_items, config)")
        return build_random(len(embeddings), config)
    raise ValueError(f"unknown build method {config.method!r}; use balanced, kmeans or random")


def _check_embeddings(embeddings: np.ndarray | None, k: int) -> np.ndarray:
    if k < 2:
        raise ValueError(f"k must be >= 2, got {k}")
    x = np.asarray(embeddings)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"embeddings must be a non-empty [n_items, d] array, got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("embeddings contain NaN or inf")
    return np.ascontiguousarray(x, dtype=np.float32)


def _progress(items: Iterable[int], total: int, desc: str, enabled: bool) -> Iterable[int]:
    if not enabled or total == 0:
        return items
    try:
        from tqdm.auto import tqdm  # optional: not in the serving image
    except ImportError:
        return items
    return tqdm(items, total=total, desc=desc, leave=False)


def _canonical(labels: np.ndarray) -> np.ndarray:
    """Relabel clusters 0, 1, ... in order of first appearance (= smallest item index)."""
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.empty(len(first), np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    return rank[inverse.ravel()]


def _balanced_codes(
    n: int, k: int, split: Callable[[np.ndarray], np.ndarray], config: BuildConfig, name: str,
) -> tuple[np.ndarray, list[float], list[int]]:
    """Level-by-level balanced recursion shared by the balanced and random builders.

    `order` keeps every current group contiguous (items ascending inside a group);
    groups of <= k items split into singletons vectorised, larger ones call `split`.
    Shape: -> codes [n, L].
    """
    depth = ceil_log(n, k)
    codes = np.empty((n, depth), np.int32)
    order = np.arange(n)
    starts = np.array([0, n])
    level_seconds, level_splits = [], []
    for level in range(depth):
        t0 = time.perf_counter()
        sizes = np.diff(starts)
        group = np.repeat(np.arange(len(sizes)), sizes)
        label = np.arange(n) - starts[:-1][group]  # singletons for groups of <= k
        large = np.flatnonzero(sizes > k)
        if level == depth - 1 and len(large):
            raise AssertionError("a last-level group has more than k items")
        desc = f"{name} level {level + 1}/{depth}"
        for g in _progress(large, len(large), desc, config.progress):
            lo, hi = starts[g], starts[g + 1]
            members = order[lo:hi]
            lab = _canonical(split(members))
            perm = np.argsort(lab, kind="stable")
            order[lo:hi] = members[perm]
            label[lo:hi] = lab[perm]
        codes[order, level] = label
        brk = np.ones(n, bool)
        brk[1:] = (group[1:] != group[:-1]) | (label[1:] != label[:-1])
        starts = np.append(np.flatnonzero(brk), n)
        level_seconds.append(time.perf_counter() - t0)
        level_splits.append(len(large))
        log.info("%s: %d splits, %d groups, %.2f s", desc, len(large), len(starts) - 1,
                 level_seconds[-1])
    return codes, level_seconds, level_splits


def build_balanced(embeddings: np.ndarray, config: BuildConfig) -> tuple[IdTree, BuildReport]:
    """SEATER Algorithm 1 with uniform depth (see the module docstring).

    Shape: embeddings [n_items, d].
    """
    x = _check_embeddings(embeddings, config.k)
    n, k = len(x), config.k
    splitter = config.splitter
    if splitter == "auto":
        splitter = "exact" if n <= config.exact_max_items else "fast"
    if splitter not in ("exact", "fast"):
        raise ValueError(f"unknown splitter {config.splitter!r}; use auto, exact or fast")
    rng = np.random.default_rng(config.seed)

    def split(members: np.ndarray) -> np.ndarray:
        seed = int(rng.integers(2**31 - 1))
        if splitter == "exact":
            return balanced_kmeans_exact(x[members], k, seed, config.max_iter, config.n_init)
        return balanced_kmeans_fast(x[members], k, np.random.default_rng(seed),
                                    config.max_iter, config.sample_size)

    t0 = time.perf_counter()
    codes, seconds, splits = _balanced_codes(n, k, split, config, f"balanced/{splitter}")
    tree = assemble(codes, k)
    report = BuildReport("balanced", splitter, n, k, tree.max_depth,
                         time.perf_counter() - t0, tuple(seconds), tuple(splits))
    log.info("balanced tree: %s in %.1f s", tree.summary(), report.seconds)
    return tree, report


def build_random(n_items: int, config: BuildConfig) -> tuple[IdTree, BuildReport]:
    """Balanced shape, items placed uniformly at random (the paper's "Random" IDs)."""
    if n_items < 1 or config.k < 2:
        raise ValueError(f"need n_items >= 1 and k >= 2, got {n_items}, {config.k}")
    rng = np.random.default_rng(config.seed)

    def split(members: np.ndarray) -> np.ndarray:
        m = len(members)
        q, r = divmod(m, config.k)
        sizes = np.where(np.arange(config.k) < r, q + 1, q)
        return np.repeat(np.arange(config.k), sizes)[rng.permutation(m)]

    t0 = time.perf_counter()
    codes, seconds, splits = _balanced_codes(n_items, config.k, split, config, "random")
    tree = assemble(codes, config.k)
    return tree, BuildReport("random", "random", n_items, config.k, tree.max_depth,
                             time.perf_counter() - t0, tuple(seconds), tuple(splits))


def build_kmeans(embeddings: np.ndarray, config: BuildConfig) -> tuple[IdTree, BuildReport]:
    """Imbalanced hierarchical k-means (the paper's "Imbalanced" ablation).

    Groups of <= k items become leaf children (a single item is a leaf at once), so
    identifiers have varying lengths. A split that degenerates (fewer than 2 clusters)
    or leaves a cluster too big for the remaining depth budget (`max_depth`) falls back
    to a balanced split, which always fits.
    Shape: embeddings [n_items, d].
    """
    x = _check_embeddings(embeddings, config.k)
    n, k = len(x), config.k
    max_depth = config.max_depth or ceil_log(n, k) + 2
    if k**max_depth < n:
        raise ValueError(f"max_depth={max_depth} cannot hold {n} items with k={k}")
    rng = np.random.default_rng(config.seed)
    codes = np.full((n, max_depth), -1, np.int32)
    groups = [np.arange(n)] if n > 1 else []
    if n == 1:
        codes[0, 0] = 0
    t0 = time.perf_counter()
    level_seconds, level_splits, fallbacks = [], [], 0
    for level in range(max_depth):
        if not groups:
            break
        t_level = time.perf_counter()
        nxt: list[np.ndarray] = []
        n_splits = 0
        desc = f"kmeans level {level + 1}"
        for g in _progress(range(len(groups)), len(groups), desc, config.progress):
            members = groups[g]
            if len(members) <= k:
                codes[members, level] = np.arange(len(members))
                continue
            n_splits += 1
            seed = int(rng.integers(2**31 - 1))
            lab = _canonical(kmeans(x[members], k, np.random.default_rng(seed), config.max_iter))
            sizes = np.bincount(lab)
            if len(sizes) < 2 or sizes.max() > k ** (max_depth - level - 1):
                fallbacks += 1
                lab = _canonical(balanced_kmeans_fast(x[members], k, np.random.default_rng(seed),
                                                      config.max_iter, config.sample_size))
            codes[members, level] = lab
            perm = np.argsort(lab, kind="stable")
            for part in np.split(members[perm], np.cumsum(np.bincount(lab))[:-1]):
                if len(part) > 1:  # a single-item cluster is a leaf at once
                    nxt.append(part)
        groups = nxt
        level_seconds.append(time.perf_counter() - t_level)
        level_splits.append(n_splits)
    tree = assemble(codes, k)
    log.info("kmeans tree: %s, %d balanced fallbacks", tree.summary(), fallbacks)
    return tree, BuildReport("kmeans", "kmeans", n, k, tree.max_depth, time.perf_counter() - t0,
                             tuple(level_seconds), tuple(level_splits))


def from_codes(codes: np.ndarray, k: int | None = None) -> tuple[IdTree, CodesReport]:
    """Tree from externally learned fixed-length codes (e.g. LMIndexer semantic IDs).

    Items sharing a full code get one extra level that tells them apart (positions
    0, 1, ... by item index); when any collision exists every item gets that level
    (non-colliding ones at position 0) so lengths stay equal. The tree's k grows to the
    largest collision group if that exceeds the code range.
    Shape: codes [n_items, L] ints in 0..k-1.
    """
    codes = np.asarray(codes)
    if codes.ndim != 2 or codes.shape[0] == 0 or codes.shape[1] == 0:
        raise ValueError(f"codes must be a non-empty [n_items, L] array, got {codes.shape}")
    if codes.dtype.kind not in "iu" or codes.min() < 0:
        raise ValueError("codes must be non-negative integers")
    width = int(codes.max()) + 1
    k = width if k is None else k
    if k < width:
        raise ValueError(f"codes use values up to {width - 1} but k={k}")
    _, inverse, counts = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.ravel()
    shared = counts[inverse] > 1
    added = bool(shared.any())
    if added:
        order = np.lexsort((np.arange(len(codes)), inverse))
        first = np.searchsorted(inverse[order], np.arange(len(counts)))
        extra = np.empty(len(codes), np.int64)
        extra[order] = np.arange(len(codes)) - first[inverse[order]]
        codes = np.concatenate([codes, extra[:, None]], axis=1)
        k = max(k, int(counts.max()), 2)
    report = CodesReport(len(codes), len(counts), float(shared.mean()), int(counts.max()),
                         added, max(k, 2))
    if added:
        log.warning("from_codes: %.2f%% of items share a code (largest group %d); added a "
                    "disambiguation level", 100 * report.collision_rate, report.max_collision)
    return assemble(codes, max(k, 2)), report


def assemble(codes: np.ndarray, k: int) -> IdTree:
    """Number the nodes of a tree given each item's code (child positions, -1 padded).

    Level by level: the internal nodes of a level are the distinct (parent id, slot)
    keys of items that continue below it, numbered in sorted key order, which is BFS
    order because parents were numbered that way one level up.
    Shape: codes [n_items, L] (rows must be distinct and prefix-free).
    """
    codes = np.asarray(codes, dtype=np.int64)
    n, max_len = codes.shape
    if ((codes < -1) | (codes >= k)).any():
        raise ValueError(f"codes must lie in [0, {k}) (or -1 padding)")
    length = (codes >= 0).sum(axis=1)
    if (length == 0).any() or ((codes >= 0) != (np.arange(max_len) < length[:, None])).any():
        raise ValueError("every code needs >= 1 position and -1 padding only on the right")
    cur = np.full(n, n, np.int64)  # node of each item at the current level (root = n)
    next_id = n + 1
    parents, slots, nodes, depths = [], [], [], []  # edges, level by level
    for level in range(max_len):
        live = np.flatnonzero(length > level)
        key = cur[live] * k + codes[live, level]
        ends = length[live] == level + 1
        leaf_keys, inner_keys = key[ends], key[~ends]
        uniq, inverse = np.unique(inner_keys, return_inverse=True)
        clash = np.isin(leaf_keys, uniq)
        dup = np.unique(leaf_keys, return_counts=True)[1] > 1
        if clash.any() or dup.any():
            raise ValueError(f"codes are not unique and prefix-free at position {level} "
                             "(use from_codes to disambiguate collisions)")
        ids = np.arange(next_id, next_id + len(uniq))
        next_id += len(uniq)
        leaf_items = live[ends]
        parents += [leaf_keys // k, uniq // k]
        slots += [leaf_keys % k, uniq % k]
        nodes += [leaf_items, ids]
        depths.append(np.full(len(leaf_items) + len(ids), level + 1, np.int32))
        cur[live[~ends]] = ids[inverse.ravel()]
    parent_of = np.concatenate(parents)
    slot_of = np.concatenate(slots)
    node_of = np.concatenate(nodes)
    n_nodes = next_id
    children = np.full((n_nodes, k), -1, np.int32)
    children[parent_of, slot_of] = node_of
    parent = np.full(n_nodes, -1, np.int32)
    parent[node_of] = parent_of
    depth = np.zeros(n_nodes, np.int32)
    depth[node_of] = np.concatenate(depths)
    leaf_item = np.full(n_nodes, -1, np.int32)
    leaf_item[:n] = np.arange(n)
    return IdTree(children=children, parent=parent, depth=depth, leaf_item=leaf_item,
                  item_leaf=np.arange(n, dtype=np.int32), root=n, version=0)


def level_sse(tree: IdTree, embeddings: np.ndarray) -> np.ndarray:
    """Within-node sum of squared distances to the node mean, summed per depth.

    Entry d-1 is the SSE of the partition formed by the depth-d nodes (leaves that ended
    higher up count as singletons): the quantity Algorithm 1 minimises split by split.
    Shape: embeddings [n_items, d] -> [max_depth], float64.
    """
    x = np.asarray(embeddings, dtype=np.float64)
    sums = subtree_sums(tree, x)
    sq = subtree_sums(tree, (x * x).sum(axis=1))
    count = np.maximum(tree.leaf_count, 1)
    node_sse = sq - (sums * sums).sum(axis=1) / count
    out = np.zeros(tree.max_depth)
    for d in range(1, tree.max_depth + 1):
        nodes = tree.levels[d] if d < len(tree.levels) else np.array([], np.int64)
        out[d - 1] = max(float(node_sse[nodes].sum()), 0.0)
    return out
