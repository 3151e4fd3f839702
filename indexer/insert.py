"""Cold-start insertion: new items get leaves in an existing tree without a rebuild.

A trained model knows every existing item by its path, so insertion must not move
existing items behind its back. Each new item descends greedily to the nearest child
centroid (centroid = mean embedding of the leaves below) and becomes a new leaf at the
tree's depth L; new nodes are appended (node ids never change), and the tree's
`version` goes up by one.

Policies when the nearest leaf group is full (k children):
- "room" (default): never move anyone. The descent only enters subtrees that still have
  a free leaf slot at depth L; a node whose children are all full gets a new chain of
  internal nodes down to depth L. Capacity is k**L leaves; a full tree is an error.
- "split": B-tree style: the full group P plus the new item are split 2-way (balanced
  2-means) and one half moves to a new sibling of P, if P's parent has a free slot
  (otherwise "room" is used). Items that move get new codes and are listed in the
  report. Keeps neighbours together at the price of retraining signal for the movers.

Semantic IDs are placed by their code instead (``insert_by_code``), and
``extend_node_table`` gives appended nodes embedding rows either way.

"Balanced" after insertion means: uniform leaf depth, fan-out <= k (validate level
"balanced"); subtree sizes may drift from the build's floor/ceil rule.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from indexer.cluster import balanced_kmeans_fast
from indexer.tree import IdTree, node_centroids

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InsertConfig:
    """Attributes: policy ("room" or "split", see the module docstring); seed for the
    2-means of "split"."""

    policy: Literal["room", "split"] = "room"
    seed: int = 0


@dataclass(frozen=True)
class InsertReport:
    """What an insertion batch did.

    Attributes:
        version: the new tree's version.
        items: indices given to the new items (n_items_before + 0, 1, ...). Shape: [m].
        leaves: their leaf node ids. Shape: [m].
        codes: their codes. Shape: [m, L].
        moved_items: existing items whose code changed ("split" only). Shape: [r].
        moved_old_codes, moved_new_codes: their codes before and after. Shape: [r, L].
        n_new_nodes: nodes appended (leaves + internal).
        n_splits: full leaf groups split ("split" only).
    """

    version: int
    items: np.ndarray
    leaves: np.ndarray
    codes: np.ndarray
    moved_items: np.ndarray
    moved_old_codes: np.ndarray
    moved_new_codes: np.ndarray
    n_new_nodes: int
    n_splits: int


class _Growing:
    """The tree's arrays with room for the nodes a batch can append, leaf counts per node
    and (for the embedding descent) running centroids."""

    def __init__(self, tree: IdTree, extra: int, centroids: np.ndarray | None = None) -> None:
        size = tree.n_nodes + extra
        self.children = np.full((size, tree.k), -1, np.int64)
        self.children[: tree.n_nodes] = tree.children
        self.parent = np.full(size, -1, np.int64)
        self.parent[: tree.n_nodes] = tree.parent
        self.depth = np.zeros(size, np.int64)
        self.depth[: tree.n_nodes] = tree.depth
        self.leaf_item = np.full(size, -1, np.int64)
        self.leaf_item[: tree.n_nodes] = tree.leaf_item
        self.count = np.zeros(size, np.int64)
        self.count[: tree.n_nodes] = tree.leaf_count
        dim = 0 if centroids is None else centroids.shape[1]
        self.cent = np.zeros((size, dim), np.float64)
        if centroids is not None:
            self.cent[: tree.n_nodes] = centroids
        self.item_leaf = list(tree.item_leaf.tolist())
        self.next_id = tree.n_nodes
        self.root = tree.root
        self.version = tree.version

    def free_slot(self, v: int) -> int:
        return int(np.flatnonzero(self.children[v] < 0)[0])

    def new_node(self, under: int, centroid: np.ndarray | None = None, item: int = -1,
                 slot: int | None = None) -> int:
        """Append a child of ``under`` at ``slot`` (default: its first free slot)."""
        u = self.next_id
        self.next_id += 1
        self.children[under, self.free_slot(under) if slot is None else slot] = u
        self.parent[u] = under
        self.depth[u] = self.depth[under] + 1
        self.leaf_item[u] = item
        if centroid is not None:
            self.cent[u] = centroid
        return u

    def kids(self, v: int) -> np.ndarray:
        row = self.children[v]
        return row[row >= 0]

    def nearest(self, x: np.ndarray, nodes: np.ndarray) -> int:
        diff = self.cent[nodes] - x
        return int(nodes[np.argmin((diff * diff).sum(axis=1))])

    def add_leaf(self, x: np.ndarray, under: int, path: list[int], item: int) -> int:
        """New leaf for `item` under `under`; counts and running means along `path`."""
        leaf = self.new_node(under, x, item)
        self.count[leaf] = 1
        self.item_leaf.append(leaf)
        p = np.asarray(path)
        self.count[p] += 1
        self.cent[p] += (x - self.cent[p]) / self.count[p][:, None]
        return leaf

    def tree(self) -> IdTree:
        """The grown tree, version + 1."""
        n = self.next_id
        return IdTree(children=self.children[:n], parent=self.parent[:n], depth=self.depth[:n],
                      leaf_item=self.leaf_item[:n], item_leaf=np.asarray(self.item_leaf),
                      root=self.root, version=self.version + 1)


def insert_items(
    tree: IdTree,
    new_embeddings: np.ndarray,
    *,
    item_embeddings: np.ndarray | None = None,
    centroids: np.ndarray | None = None,
    config: InsertConfig | None = None,
) -> tuple[IdTree, InsertReport]:
    """Add items to a uniform-depth tree; returns the new tree (version + 1) and a report.

    Args:
        tree: a tree whose leaves all sit at one depth L (balanced, random, from_codes).
        new_embeddings: the new items' vectors. Shape: [m, d].
        item_embeddings: existing items' vectors, to derive node centroids. Shape:
            [n_items, d]. Give this or `centroids`.
        centroids: precomputed node centroids. Shape: [n_nodes, d].
        config: policy and seed.
    """
    config = config or InsertConfig()
    if config.policy not in ("room", "split"):
        raise ValueError(f"unknown insert policy {config.policy!r}; use room or split")
    if not tree.is_uniform:
        raise ValueError("insert_items needs every leaf at one depth (a balanced, random or "
                         "from_codes tree); rebuild an imbalanced k-means tree instead")
    if (item_embeddings is None) == (centroids is None):
        raise ValueError("give exactly one of item_embeddings or centroids")
    cent = (node_centroids(tree, item_embeddings) if centroids is None
            else np.asarray(centroids, np.float64))
    if cent.shape[0] != tree.n_nodes:
        raise ValueError(f"centroids must be [n_nodes={tree.n_nodes}, d], got {cent.shape}")
    x_new = np.asarray(new_embeddings, np.float64)
    if x_new.ndim != 2 or x_new.shape[1] != cent.shape[1]:
        raise ValueError(f"new_embeddings must be [m, d={cent.shape[1]}], got {x_new.shape}")
    if not np.isfinite(x_new).all():
        raise ValueError("new_embeddings contain NaN or inf")
    depth, k, m = tree.max_depth, tree.k, len(x_new)
    cap = [min(k ** (depth - d), 2**62) for d in range(depth + 1)]  # leaves a node can hold
    free = cap[0] - tree.n_items
    if m > free:
        raise ValueError(f"tree is full: {tree.n_items} items, capacity k**L = {k}**{depth} "
                         f"leaves in total, {m} new items do not fit; rebuild the tree")

    g = _Growing(tree, extra=m * (depth + 1), centroids=cent)
    rng = np.random.default_rng(config.seed)
    splits = 0
    for j, x in enumerate(x_new):
        item = tree.n_items + j
        outcome = _insert_split(g, x, item, depth, rng) if config.policy == "split" else "room"
        splits += outcome == "split"
        if outcome == "room":
            _insert_room(g, x, item, depth, cap)

    size = g.next_id
    new_tree = g.tree()
    new_tree.validate("balanced")
    old_codes = tree.codes
    after = new_tree.codes[: tree.n_items]
    moved = np.flatnonzero((after != old_codes).any(axis=1))
    items = np.arange(tree.n_items, tree.n_items + m)
    report = InsertReport(
        version=new_tree.version, items=items, leaves=new_tree.item_leaf[items].astype(np.int64),
        codes=new_tree.codes[items], moved_items=moved, moved_old_codes=old_codes[moved],
        moved_new_codes=after[moved], n_new_nodes=size - tree.n_nodes, n_splits=splits)
    if len(moved):
        log.warning("insertion moved %d existing items (new codes in the report)", len(moved))
    log.info("inserted %d items: version %d, %d new nodes", m, new_tree.version,
             report.n_new_nodes)
    return new_tree, report


def _insert_room(g: _Growing, x: np.ndarray, item: int, depth: int, cap: list[int]) -> None:
    """Nearest child with a free leaf slot below; a new chain when none has one."""
    v = g.root
    path = [v]
    for d in range(depth - 1):
        kids = g.kids(v)
        roomy = kids[g.count[kids] < cap[d + 1]]
        # every child full means v has a free slot: open a new branch there
        v = g.nearest(x, roomy) if len(roomy) else g.new_node(v, x)
        path.append(v)
    g.add_leaf(x, v, path, item)


def _insert_split(
    g: _Growing, x: np.ndarray, item: int, depth: int, rng: np.random.Generator
) -> Literal["placed", "split", "room"]:
    """Nearest path; split the full leaf group there if its parent has a free slot.

    Returns "placed" (group had room), "split", or "room" (caller uses the room policy).
    """
    v = g.root
    path = [v]
    for _ in range(depth - 1):
        v = g.nearest(x, g.kids(v))
        path.append(v)
    k = g.children.shape[1]
    if len(g.kids(v)) < k:
        g.add_leaf(x, v, path, item)
        return "placed"
    up = int(g.parent[v])
    if up < 0 or len(g.kids(up)) >= k:
        return "room"
    members = g.kids(v)
    points = np.concatenate([g.cent[members], x[None]]).astype(np.float32)
    labels = balanced_kmeans_fast(points, 2, rng)
    new_side = labels[-1]
    stay_new = int((labels[:-1] == new_side).sum())  # movers if the new item's half moves
    stay_old = int((labels[:-1] != new_side).sum())  # movers if the other half moves
    moving_label = new_side if stay_new <= stay_old else 1 - new_side
    sibling = g.new_node(up, x)
    for leaf, lab in zip(members, labels[:-1], strict=True):
        if lab == moving_label:
            g.children[v, np.flatnonzero(g.children[v] == leaf)[0]] = -1
            g.children[sibling, g.free_slot(sibling)] = leaf
            g.parent[leaf] = sibling
    target = sibling if moving_label == new_side else v
    g.add_leaf(x, target, path[:-1] + [target], item)
    for node in (v, sibling):
        kids = g.kids(node)
        g.count[node] = len(kids)
        g.cent[node] = g.cent[kids].mean(axis=0)
    return "split"


RankSlots = Callable[[int, list[int]], np.ndarray]
"""(new item j, slots taken so far) -> this level's slots, best first."""


def insert_by_code(tree: IdTree, rank_slots: RankSlots, m: int, semantic_levels: int,
                   code_k: int) -> tuple[IdTree, np.ndarray]:
    """Append ``m`` items, item j at the path ``rank_slots`` prefers (with room): the
    placement of semantic IDs, which follows a code rather than an embedding descent.

    Levels < ``semantic_levels`` use slots 0..code_k-1 ranked by ``rank_slots``; deeper
    levels (a disambiguation level) use any free slot. A subtree "has room" when its leaf
    count is below what its allowed slots can hold, so the descent never dead-ends and
    every leaf stays at the tree's depth. Existing items keep their codes (checked).
    Returns the new tree and the new items' codes. Shape: -> [m, depth].
    """
    if not tree.is_uniform:
        raise ValueError("insert_by_code needs every leaf at one depth (a from_codes tree)")
    depth = tree.max_depth
    if semantic_levels > depth:
        raise ValueError(f"the indexer has {semantic_levels} levels but the tree only {depth}")
    width = [min(code_k, tree.k) if d < semantic_levels else tree.k for d in range(depth)]
    cap = [int(np.prod(width[d:], dtype=np.int64)) for d in range(depth + 1)]  # per depth
    if tree.n_items + m > cap[0]:
        raise ValueError(f"the tree holds at most {cap[0]} items; {tree.n_items} + {m} do not fit")
    g = _Growing(tree, extra=m * depth)
    for j in range(m):
        item = tree.n_items + j
        v, taken, path = tree.root, [], [tree.root]
        for d in range(depth):
            ranked = rank_slots(j, taken) if d < semantic_levels else np.arange(width[d])
            slot = next((int(s) for s in ranked
                         if s < width[d] and _has_room(g, v, int(s), cap[d + 1])), -1)
            if slot < 0:  # the parent had room, so an allowed slot must have it too
                raise RuntimeError(f"no room below node {v} at depth {d}")
            child = int(g.children[v, slot])
            if child < 0:
                child = g.new_node(v, item=item if d == depth - 1 else -1, slot=slot)
            taken.append(slot)
            path.append(child)
            v = child
        g.item_leaf.append(v)
        g.count[path] += 1
    new_tree = g.tree()
    new_tree.validate("balanced")
    if not np.array_equal(new_tree.codes[: tree.n_items], tree.codes):
        raise RuntimeError("insertion changed existing items' codes")  # never expected
    return new_tree, new_tree.codes[tree.n_items:]


def _has_room(g: _Growing, v: int, slot: int, child_cap: int) -> bool:
    """A free slot, or a child whose subtree holds fewer leaves than it can."""
    child = g.children[v, slot]
    return bool(child < 0 or (g.leaf_item[child] < 0 and g.count[child] < child_cap))


def extend_node_table(old: IdTree, new: IdTree, table: np.ndarray) -> np.ndarray:
    """Rows for appended nodes: the mean leaf row under the nearest pre-existing
    ancestor (for a leaf added to an existing group: the mean of its siblings).

    Shape: table [old.n_nodes, d] -> [new.n_nodes, d].
    """
    table = np.asarray(table, np.float32)
    if table.shape[0] != old.n_nodes:
        raise ValueError(f"table has {table.shape[0]} rows, the old tree {old.n_nodes} nodes")
    centroids = node_centroids(old, table[old.item_leaf])
    added = np.arange(old.n_nodes, new.n_nodes)
    anc = added.copy()
    while (anc >= old.n_nodes).any():
        anc = np.where(anc >= old.n_nodes, new.parent[anc], anc)
    return np.concatenate([table, centroids[anc]]).astype(np.float32)
