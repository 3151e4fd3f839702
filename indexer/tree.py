"""The ID tree: one token per node, an item's identifier is its root-to-leaf path.

`IdTree` is a frozen bundle of flat integer arrays (the contract in docs/architecture.md)
plus views derived from them on first use (codes, node paths, subtree leaf counts, leaf
ranges). Every view is computed level by level with vectorised numpy, never per node,
so a 1M-item tree is ready in well under a second.

Leaf ranges are what the search's masks rely on: leaves are numbered in depth-first
order (children visited by slot), so every subtree owns one contiguous range
`[leaf_lo[v], leaf_hi[v])` of leaf positions, and "how many allowed items lie under v"
is a difference of two prefix sums, never a dense [B, n_nodes] table.
"""

from __future__ import annotations

import os
import zipfile
import zlib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Literal

import numpy as np

FORMAT_VERSION = 1
"""Version of the `tree.npz` layout; bump it when the saved arrays change meaning."""

ValidationLevel = Literal["structure", "balanced", "strict"]
_ARRAYS = ("children", "parent", "depth", "leaf_item", "item_leaf")
_MAX_EXAMPLES = 5


class TreeValidationError(ValueError):
    """An `IdTree` breaks an invariant; `problems` lists every broken one."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid ID tree:\n  - " + "\n  - ".join(problems))


class TreeFormatError(ValueError):
    """A tree file cannot be read: not an npz, corrupted, missing arrays or wrong version."""


def ceil_log(n: int, k: int) -> int:
    """Smallest L >= 1 with k**L >= n: the depth of a balanced k-ary tree over n leaves.

    Integer arithmetic on purpose: `math.ceil(math.log(n, k))` is off by one at exact
    powers (log(1000, 10) = 2.9999999999999996).
    """
    if n < 1 or k < 2:
        raise ValueError(f"need n >= 1 and k >= 2, got n={n}, k={k}")
    depth, capacity = 1, k
    while capacity < n:
        depth, capacity = depth + 1, capacity * k
    return depth


def _examples(ids: np.ndarray) -> str:
    """'3 nodes, e.g. [4, 9, 12]' for error messages that say exactly where."""
    ids = np.asarray(ids).ravel()
    shown = ", ".join(str(int(i)) for i in ids[:_MAX_EXAMPLES])
    more = ", ..." if len(ids) > _MAX_EXAMPLES else ""
    return f"{len(ids)} (e.g. [{shown}{more}])"


def _readonly_int(a: np.ndarray, name: str) -> np.ndarray:
    """int32 copy-if-needed, read-only: the cached views must never go stale."""
    a = np.asarray(a)
    if a.dtype.kind not in "iu":
        raise TypeError(f"IdTree.{name} must be an integer array, got dtype {a.dtype}")
    if a.size and (a.max() > np.iinfo(np.int32).max or a.min() < np.iinfo(np.int32).min):
        raise ValueError(f"IdTree.{name} does not fit int32")
    a = np.array(a, dtype=np.int32, copy=a.dtype != np.int32 or a.flags.writeable)
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class IdTree:
    """A k-ary tree over items; node ids are the model's vocabulary.

    After a fresh build leaf node id == item index, the root is node `n_items` and the
    other internal nodes follow in BFS order. Node ids never change afterwards:
    insertion appends nodes, so a trained node-embedding table stays valid.

    Attributes:
        children: child node ids by slot, -1 padded; a leaf's row is all -1.
            Shape: [n_nodes, k], int32.
        parent: parent node id, -1 for the root. Shape: [n_nodes], int32.
        depth: edges from the root (root 0). Shape: [n_nodes], int32.
        leaf_item: item index of a leaf, -1 for internal nodes. Shape: [n_nodes], int32.
        item_leaf: leaf node id of each item. Shape: [n_items], int32.
        root: the root's node id.
        version: 0 for a fresh build, +1 per insertion batch.
    """

    children: np.ndarray
    parent: np.ndarray
    depth: np.ndarray
    leaf_item: np.ndarray
    item_leaf: np.ndarray
    root: int
    version: int = 0

    format_version = FORMAT_VERSION

    def __post_init__(self) -> None:
        for name in _ARRAYS:
            object.__setattr__(self, name, _readonly_int(getattr(self, name), name))
        object.__setattr__(self, "root", int(self.root))
        object.__setattr__(self, "version", int(self.version))

    # ------------------------------------------------------------------ sizes
    @property
    def k(self) -> int:
        """Maximum fan-out (width of `children`)."""
        return int(self.children.shape[1])

    @property
    def n_nodes(self) -> int:
        return int(self.children.shape[0])

    @property
    def n_items(self) -> int:
        return int(self.item_leaf.shape[0])

    @cached_property
    def max_depth(self) -> int:
        """Depth of the deepest leaf = identifier length (L for a balanced tree)."""
        return int(self.depth[self.item_leaf].max()) if self.n_items else 0

    @cached_property
    def is_uniform(self) -> bool:
        """True when every leaf sits at the same depth (all identifiers equally long)."""
        leaf_depth = self.depth[self.item_leaf]
        return bool(leaf_depth.size == 0 or (leaf_depth == leaf_depth[0]).all())

    def precompute(self) -> IdTree:
        """Compute every derived view now (~1 s at 1M items) instead of on first use,
        e.g. when a service loads a bundle, so no request pays for it."""
        for name in ("levels", "n_children", "slot", "leaf_count", "leaf_lo", "leaf_hi",
                     "leaf_pos", "leaf_order", "node_paths", "codes", "max_depth"):
            getattr(self, name)
        return self

    def summary(self) -> dict[str, int | bool]:
        """Tree shape for manifests and logs."""
        return {
            "k": self.k, "depth": self.max_depth, "n_items": self.n_items,
            "n_nodes": self.n_nodes, "version": self.version, "uniform": self.is_uniform,
            "format_version": FORMAT_VERSION,
        }

    # --------------------------------------------------------- derived views
    @cached_property
    def levels(self) -> tuple[np.ndarray, ...]:
        """Node ids grouped by depth (ascending ids within a level)."""
        order = np.argsort(self.depth, kind="stable")
        counts = np.bincount(self.depth, minlength=1)
        return tuple(np.split(order, np.cumsum(counts)[:-1]))

    @cached_property
    def n_children(self) -> np.ndarray:
        """Valid child slots per node. Shape: [n_nodes], int32."""
        return (self.children >= 0).sum(axis=1, dtype=np.int32)

    @cached_property
    def slot(self) -> np.ndarray:
        """Position of each node in its parent's children row (-1 for the root).

        Shape: [n_nodes], int32.
        """
        rows, cols = np.nonzero(self.children >= 0)
        slot = np.full(self.n_nodes, -1, np.int32)
        slot[self.children[rows, cols]] = cols
        return slot

    @cached_property
    def leaf_count(self) -> np.ndarray:
        """Number of leaves (items) under each node; 1 for a leaf. Shape: [n_nodes], int64."""
        count = (self.leaf_item >= 0).astype(np.int64)
        for nodes in reversed(self.levels[:-1]):
            ch = self.children[nodes]  # [m, k]
            count[nodes] += np.where(ch >= 0, count[ch], 0).sum(axis=1)
        return count

    @cached_property
    def leaf_lo(self) -> np.ndarray:
        """First depth-first leaf position under each node. Shape: [n_nodes], int64.

        Node v's leaves are `leaf_order[leaf_lo[v]:leaf_hi[v]]`.
        """
        lo = np.zeros(self.n_nodes, np.int64)
        count = self.leaf_count
        for nodes in self.levels[:-1]:
            ch = self.children[nodes]  # [m, k]
            sizes = np.where(ch >= 0, count[ch], 0)
            offset = lo[nodes][:, None] + np.cumsum(sizes, axis=1) - sizes  # exclusive
            valid = ch >= 0
            lo[ch[valid]] = offset[valid]
        return lo

    @cached_property
    def leaf_hi(self) -> np.ndarray:
        """One past the last depth-first leaf position under each node. Shape: [n_nodes]."""
        return self.leaf_lo + self.leaf_count

    @cached_property
    def leaf_pos(self) -> np.ndarray:
        """Depth-first position of each item's leaf. Shape: [n_items], int64."""
        return self.leaf_lo[self.item_leaf]

    @cached_property
    def leaf_order(self) -> np.ndarray:
        """Items in depth-first leaf order (inverse of `leaf_pos`). Shape: [n_items]."""
        order = np.empty(self.n_items, np.int64)
        order[self.leaf_pos] = np.arange(self.n_items)
        return order

    @cached_property
    def node_paths(self) -> np.ndarray:
        """Node ids from depth 1 down to each item's leaf, -1 padded on the right.

        Shape: [n_items, max_depth], int64.
        """
        paths = np.full((self.n_items, self.max_depth), -1, np.int64)
        rows = np.arange(self.n_items)
        cur = self.item_leaf.astype(np.int64)
        for _ in range(self.max_depth):
            d = self.depth[cur]
            live = d >= 1
            paths[rows[live], d[live] - 1] = cur[live]
            cur = np.where(live, self.parent[cur], cur)
        return paths

    @cached_property
    def codes(self) -> np.ndarray:
        """Child positions (0..k-1) along each item's path, -1 padded on the right.

        This is the item's identifier as the service reports it.
        Shape: [n_items, max_depth], int32.
        """
        paths = self.node_paths
        return np.where(paths >= 0, self.slot[np.maximum(paths, 0)], -1).astype(np.int32)

    def codes_of(self, items: np.ndarray) -> np.ndarray:
        """Codes of the given items; -1 items (search padding) give all -1 rows.

        Shape: items [...] -> [..., max_depth].
        """
        items = np.asarray(items)
        out = self.codes[np.maximum(items, 0)]
        out[items < 0] = -1
        return out

    def paths_of(self, items: np.ndarray) -> np.ndarray:
        """Node paths (root excluded) of the given items; -1 items give -1 rows.

        Shape: items [...] -> [..., max_depth].
        """
        items = np.asarray(items)
        out = self.node_paths[np.maximum(items, 0)]
        out[items < 0] = -1
        return out

    # --------------------------------------------------------- persistence
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write `tree.npz` (compressed; leaf rows of -1 cost nearly nothing).

        Written to a temporary name and renamed, so a crash never leaves half a file.
        """
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        arrays = {name: getattr(self, name) for name in _ARRAYS}
        with open(tmp, "wb") as fh:
            np.savez_compressed(
                fh, format_version=np.int64(FORMAT_VERSION), root=np.int64(self.root),
                k=np.int64(self.k), version=np.int64(self.version), **arrays,
            )
        os.replace(tmp, path)
        return path

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], validate: ValidationLevel | None = "structure"
    ) -> IdTree:
        """Read a tree saved by `save` (never unpickles) and validate it.

        Raises:
            TreeFormatError: unreadable/corrupted file, missing arrays, wrong version.
            TreeValidationError: the arrays do not form a valid tree.
        """
        try:
            with np.load(path, allow_pickle=False) as z:
                data = {name: z[name] for name in z.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
            raise TreeFormatError(f"cannot read ID tree from {path}: {exc}") from exc
        missing = [n for n in ("format_version", "root", "k", "version", *_ARRAYS)
                   if n not in data]
        if missing:
            raise TreeFormatError(f"{path} is not an ID tree file: missing {missing}")
        version = int(data["format_version"])
        if version != FORMAT_VERSION:
            raise TreeFormatError(
                f"{path} has tree format version {version}; this code reads version "
                f"{FORMAT_VERSION} (rebuild the tree or use the matching release)")
        children = data["children"]
        if children.ndim != 2 or int(data["k"]) != children.shape[1]:
            raise TreeFormatError(
                f"{path}: k={int(data['k'])} but children has shape {children.shape}")
        tree = cls(**{n: data[n] for n in _ARRAYS}, root=int(data["root"]),
                   version=int(data["version"]))
        if validate is not None:
            tree.validate(validate)
        return tree

    # --------------------------------------------------------- validation
    def problems(self, level: ValidationLevel = "structure") -> list[str]:
        """Every broken invariant, as messages naming the offending nodes/items.

        Levels build on each other:
        - "structure": any valid tree (parent/children/depth agree, every node reachable
          exactly once, leaves <-> items one to one, internal nodes have children);
        - "balanced": plus all leaves at one depth (trees after insertion: fan-out <= k
          holds by shape, subtree sizes may drift from the build rule);
        - "strict": a fresh balanced build: plus depth == ceil(log_k n_items), every node
          with m leaves has min(k, m) children each holding floor(m/k) or floor(m/k)+1
          leaves, children left-packed, leaf id == item index, root == n_items and
          internal nodes numbered in BFS order.
        """
        out = _structure_problems(self)
        if out or level == "structure":
            return out
        leaf_depth = self.depth[self.item_leaf]
        if not self.is_uniform:
            depths, counts = np.unique(leaf_depth, return_counts=True)
            spread = {int(d): int(c) for d, c in zip(depths, counts, strict=True)}
            return [f"leaves at several depths (depth: count) {spread}; a balanced tree "
                    "has every leaf at one depth"]
        if level == "balanced":
            return out
        return _strict_problems(self)

    def validate(self, level: ValidationLevel = "structure") -> None:
        """Raise `TreeValidationError` listing every problem found at `level`."""
        found = self.problems(level)
        if found:
            raise TreeValidationError(found)


def _structure_problems(t: IdTree) -> list[str]:
    """Invariants every tree must satisfy; ordered so later checks can index safely."""
    ch, n_nodes, n_items = t.children, t.n_nodes, t.n_items
    if ch.ndim != 2 or ch.shape[1] < 1:
        return [f"children must have shape [n_nodes, k>=1], got {ch.shape}"]
    out = [f"{name} has shape {getattr(t, name).shape}, expected ({n_nodes},)"
           for name in ("parent", "depth", "leaf_item") if getattr(t, name).shape != (n_nodes,)]
    if t.item_leaf.ndim != 1:
        out.append(f"item_leaf must be 1-D, got shape {t.item_leaf.shape}")
    if not 0 <= t.root < n_nodes:
        out.append(f"root {t.root} is not a node id (n_nodes={n_nodes})")
    bad = np.argwhere((ch < -1) | (ch >= n_nodes))
    if len(bad):
        out.append(f"children holds ids outside [-1, {n_nodes}) at (node, slot) "
                   f"{[tuple(map(int, b)) for b in bad[:_MAX_EXAMPLES]]}")
    bad_items = np.flatnonzero((t.item_leaf < 0) | (t.item_leaf >= n_nodes))
    if len(bad_items):
        out.append(f"item_leaf points outside the node range for items {_examples(bad_items)}")
    bad_leaf = np.flatnonzero((t.leaf_item < -1) | (t.leaf_item >= n_items))
    if len(bad_leaf):
        out.append(f"leaf_item outside [-1, {n_items}) at nodes {_examples(bad_leaf)}")
    if out:
        return out  # the remaining checks index with these arrays

    owner, slot = np.nonzero(ch >= 0)
    kids = ch[owner, slot].astype(np.int64)
    if (kids == t.root).any():
        out.append(f"the root {t.root} is listed as a child of node "
                   f"{int(owner[kids == t.root][0])}")
    listed = np.bincount(kids, minlength=n_nodes)
    if (listed > 1).any():
        twice = np.flatnonzero(listed > 1)
        out.append(f"nodes listed as a child more than once: {_examples(twice)}")
    orphans = np.flatnonzero(listed == 0)
    orphans = orphans[orphans != t.root]
    if len(orphans):
        out.append(f"nodes unreachable from the root (no parent lists them): {_examples(orphans)}")
    if t.parent[t.root] != -1:
        out.append(f"parent[root={t.root}] is {int(t.parent[t.root])}, expected -1")
    wrong_parent = kids[t.parent[kids] != owner]
    if len(wrong_parent):
        c = int(wrong_parent[0])
        out.append(f"parent disagrees with children for nodes {_examples(wrong_parent)}: node "
                   f"{c} is a child of {int(owner[kids == c][0])} but parent[{c}]="
                   f"{int(t.parent[c])}")
    if t.depth[t.root] != 0:
        out.append(f"depth[root] is {int(t.depth[t.root])}, expected 0")
    wrong_depth = kids[t.depth[kids] != t.depth[owner] + 1]
    if len(wrong_depth):
        out.append(f"depth != parent depth + 1 at nodes {_examples(wrong_depth)}")

    childless = t.n_children == 0
    has_item = t.leaf_item >= 0
    if childless[t.root]:
        out.append("the root has no children")
    inner_item = np.flatnonzero(has_item & ~childless)
    if len(inner_item):
        out.append(f"nodes with children carry an item (leaf_item >= 0): {_examples(inner_item)}")
    dangling = np.flatnonzero(childless & ~has_item)
    dangling = dangling[dangling != t.root]
    if len(dangling):
        out.append(f"internal nodes without children (dangling): {_examples(dangling)}")
    per_item = np.bincount(t.leaf_item[has_item], minlength=n_items)
    if (per_item != 1).any():
        out.append(f"items without exactly one leaf: {_examples(np.flatnonzero(per_item != 1))}")
    back = t.leaf_item[t.item_leaf]
    mismatch = np.flatnonzero(back != np.arange(n_items))
    if len(mismatch):
        i = int(mismatch[0])
        out.append(f"item_leaf and leaf_item disagree for items {_examples(mismatch)}: "
                   f"item_leaf[{i}]={int(t.item_leaf[i])} but leaf_item[{int(t.item_leaf[i])}]"
                   f"={int(back[i])}")
    return out


def _strict_problems(t: IdTree) -> list[str]:
    """The exact fresh-build rules of the balanced (and random) builders."""
    out: list[str] = []
    n, k = t.n_items, t.k
    want = ceil_log(n, k)
    if t.max_depth != want:
        out.append(f"leaves at depth {t.max_depth}, a balanced tree over {n} items with "
                   f"k={k} has depth ceil(log_k n) = {want}")
    if t.root != n:
        out.append(f"root is node {t.root}, a fresh build puts it at n_items={n}")
    not_self = np.flatnonzero(t.item_leaf != np.arange(n))
    if len(not_self):
        out.append(f"leaf node id != item index for items {_examples(not_self)}")
    valid = t.children >= 0
    packed = valid[:, 1:] & ~valid[:, :-1]
    if packed.any():
        out.append(f"children rows not left-packed (a gap before a valid slot) at nodes "
                   f"{_examples(np.flatnonzero(packed.any(axis=1)))}")
    inner = np.flatnonzero(t.leaf_item < 0)
    m = t.leaf_count[inner]
    wrong_fan = inner[t.n_children[inner] != np.minimum(m, k)]
    if len(wrong_fan):
        v = int(wrong_fan[0])
        out.append(f"nodes whose child count is not min(k, leaves): {_examples(wrong_fan)}; "
                   f"node {v} has {int(t.leaf_count[v])} leaves and {int(t.n_children[v])} "
                   "children")
    ch = t.children[inner]
    sizes = np.where(ch >= 0, t.leaf_count[np.maximum(ch, 0)], -1)
    q = (m // k)[:, None]
    bad = ((sizes >= 0) & ((sizes < q) | (sizes > q + 1))).any(axis=1)
    if bad.any():
        v = int(inner[bad][0])
        row = t.leaf_count[t.children[v][t.children[v] >= 0]]
        out.append(f"unbalanced splits at nodes {_examples(inner[bad])}; node {v} splits "
                   f"{int(t.leaf_count[v])} leaves into {row.tolist()}, allowed sizes are "
                   f"{int(t.leaf_count[v]) // k} and {int(t.leaf_count[v]) // k + 1}")
    if len(inner) > 1:
        # BFS order: (depth, parent id, slot) strictly increases along internal node ids.
        ids = inner[inner != t.root]
        key = np.stack([t.depth[ids], t.parent[ids], t.slot[ids]], axis=1).astype(np.int64)
        expected = ids[np.lexsort(key.T[::-1])]
        if (ids != expected).any() or (len(ids) and ids[0] != t.root + 1):
            out.append("internal nodes are not numbered root+1, root+2, ... in BFS order")
    return out


def subtree_sums(tree: IdTree, leaf_values: np.ndarray) -> np.ndarray:
    """Sum per-item values over every subtree (bottom-up, one pass per level).

    Shape: leaf_values [n_items, ...] -> [n_nodes, ...], float64.
    """
    values = np.asarray(leaf_values, dtype=np.float64)
    out = np.zeros((tree.n_nodes, *values.shape[1:]), np.float64)
    out[tree.item_leaf] = values
    for nodes in reversed(tree.levels[:-1]):
        inner = nodes[tree.leaf_item[nodes] < 0]
        for j in range(tree.k):
            c = tree.children[inner, j]
            ok = c >= 0
            out[inner[ok]] += out[c[ok]]  # one child per (node, slot): no repeated indices
    return out


def node_centroids(tree: IdTree, item_embeddings: np.ndarray) -> np.ndarray:
    """Mean embedding of the leaves under each node (a leaf's centroid is its item).

    Shape: item_embeddings [n_items, d] -> [n_nodes, d], float32.
    """
    emb = np.asarray(item_embeddings)
    if emb.ndim != 2 or emb.shape[0] != tree.n_items:
        raise ValueError(f"item_embeddings must be [n_items={tree.n_items}, d], got {emb.shape}")
    sums = subtree_sums(tree, emb)
    return (sums / np.maximum(tree.leaf_count, 1)[:, None]).astype(np.float32)
