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

"Balanced" after insertion means: uniform leaf depth, fan-out <= k (validate level
"balanced"); subtree sizes may drift from the build's floor/ceil rule.
"""

from __future__ import annotations

import logging
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
    """The tree's arrays with room for the nodes this batch can append."""

    def __init__(self, tree: IdTree, centroids: np.ndarray, extra: int) -> None:
        size = tree.n_nodes + extra
        self.children = np.full((size, tree.k), -1, np.int32)
        self.children[: tree.n_nodes] = tree.children
        self.parent = np.full(size, -1, np.int32)
        self.parent[: tree.n_nodes] = tree.parent
        self.depth = np.zeros(size, np.int32)
        self.depth[: tree.n_nodes] = tree.depth
        self.leaf_item = np.full(size, -1, np.int32)
        self.leaf_item[: tree.n_nodes] = tree.leaf_item
        self.count = np.zeros(size, np.int64)
        self.count[: tree.n_nodes] = tree.leaf_count
        self.cent = np.zeros((size, centroids.shape[1]), np.float64)
        self.cent[: tree.n_nodes] = centroids
        self.item_leaf = list(tree.item_leaf.tolist())
        self.next_id = tree.n_nodes
        self.root = tree.root

    def free_slot(self, v: int) -> int:
        return int(np.flatnonzero(self.children[v] < 0)[0])

    def new_node(self, under: int, centroid: np.ndarray, item: int = -1) -> int:
        u = self.next_id
        self.next_id += 1
        self.children[under, self.free_slot(under)] = u
        self.parent[u] = under
        self.depth[u] = self.depth[under] + 1
        self.leaf_item[u] = item
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

    g = _Growing(tree, cent, extra=m * (depth + 1))
    rng = np.random.default_rng(config.seed)
    splits = 0
    for j, x in enumerate(x_new):
        item = tree.n_items + j
        outcome = _insert_split(g, x, item, depth, rng) if config.policy == "split" else "room"
        splits += outcome == "split"
        if outcome == "room":
            _insert_room(g, x, item, depth, cap)

    size = g.next_id
    new_tree = IdTree(children=g.children[:size], parent=g.parent[:size],
                      depth=g.depth[:size], leaf_item=g.leaf_item[:size],
                      item_leaf=np.asarray(g.item_leaf), root=tree.root,
                      version=tree.version + 1)
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
