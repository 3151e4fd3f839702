"""Cold start: an item with text and no interactions gets a leaf the moment it is listed.

    text ──► frozen encoder ──► trained indexer (no retraining) ──► ranked codes per level
         ──► ``insert_by_code``: the leaf at its semantic path (a new leaf, new branch
             nodes where its path is new; existing items never move)
         ──► ``extend_node_table``: rows for the new nodes (their nearest existing
             ancestor's leaf centroid, i.e. the mean of its semantic neighbours)
         ──► a new bundle version ──► ``POST /v1/admin/reload``

Two ways to write that bundle: ``publish_tree_version`` copies the previous bundle's
ONNX graphs and writes only the new tree, node table and items (the graphs take the
node table and the children table as inputs, so nothing in them depends on the tree;
this takes about a second and needs no torch export); or the full
``export_bundle(grow_model(model, table), new_tree, ..., node_emb=table)``, which
re-traces the graphs and re-checks ONNX parity (~25 s of CPU for a tiny model).

Placement follows the code, not an embedding descent: at each semantic level the item
takes its best-scoring code whose subtree still has room (the indexer re-scores the
next level given the code actually taken); at a disambiguation level added by
``from_codes`` it takes the first free slot. A subtree "has room" when its leaf count is
below the number of leaves its allowed slots can hold, so the descent never dead-ends
and every leaf stays at the tree's depth (``validate("balanced")``).
"""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from indexer import IdTree, node_centroids
from training.lmindexer.model import SemanticIndexer

RankSlots = Callable[[int, list[int]], np.ndarray]
"""(new item j, slots taken so far) -> this level's slots, best first."""


@dataclass(frozen=True)
class ColdStartResult:
    """New items placed and embedded.

    Attributes:
        tree: the new tree (version + 1).
        items: indices of the new items (n_items_before + 0, 1, ...). Shape: [m].
        codes: their tree codes. Shape: [m, depth].
        preferred: the indexer's unconstrained codes. Shape: [m, L].
        node_emb: node-embedding table with rows for the new nodes. Shape: [n_nodes, d].
        n_new_nodes: nodes appended.
    """

    tree: IdTree
    items: np.ndarray
    codes: np.ndarray
    preferred: np.ndarray
    node_emb: np.ndarray
    n_new_nodes: int


class _Growing:
    """Tree arrays with room to append nodes; leaf counts kept along each new path."""

    def __init__(self, tree: IdTree, extra: int) -> None:
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
        self.item_leaf = list(tree.item_leaf.tolist())
        self.next_id = tree.n_nodes

    def add(self, under: int, slot: int, item: int = -1) -> int:
        u = self.next_id
        self.next_id += 1
        self.children[under, slot] = u
        self.parent[u] = under
        self.depth[u] = self.depth[under] + 1
        self.leaf_item[u] = item
        return u

    def tree(self, root: int, version: int) -> IdTree:
        n = self.next_id
        return IdTree(children=self.children[:n], parent=self.parent[:n], depth=self.depth[:n],
                      leaf_item=self.leaf_item[:n], item_leaf=np.asarray(self.item_leaf),
                      root=root, version=version)


def insert_by_code(tree: IdTree, rank_slots: RankSlots, m: int, semantic_levels: int,
                   code_k: int) -> tuple[IdTree, np.ndarray]:
    """Append ``m`` items, item j at the path ``rank_slots`` prefers (with room).

    Levels < ``semantic_levels`` use slots 0..code_k-1 ranked by ``rank_slots``; deeper
    levels (a disambiguation level) use any free slot. Existing items keep their codes
    (checked). Returns the new tree and the new items' codes. Shape: -> [m, depth].
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
                child = g.add(v, slot, item if d == depth - 1 else -1)
            taken.append(slot)
            path.append(child)
            v = child
        g.item_leaf.append(v)
        g.count[path] += 1
    new_tree = g.tree(tree.root, tree.version + 1)
    new_tree.validate("balanced")
    if not np.array_equal(new_tree.codes[: tree.n_items], tree.codes):
        raise RuntimeError("insertion changed existing items' codes")  # never expected
    return new_tree, new_tree.codes[tree.n_items:]


def _has_room(g: _Growing, v: int, slot: int, child_cap: int) -> bool:
    """A free slot, or a child whose subtree holds fewer leaves than it can."""
    child = g.children[v, slot]
    return bool(child < 0 or (g.leaf_item[child] < 0 and g.count[child] < child_cap))


def indexer_ranker(indexer: SemanticIndexer, x_new: np.ndarray) -> RankSlots:
    """Slots by the indexer's score of each code, given the codes already taken.

    Shape: x_new float32 [m, d_text].
    """
    x = torch.as_tensor(x_new, dtype=torch.float32)

    def rank(j: int, taken: list[int]) -> np.ndarray:
        prev = torch.tensor([taken], dtype=torch.long).reshape(1, len(taken))
        scores = indexer.level_scores(x[j: j + 1], prev)[0].numpy()
        return np.argsort(-scores, kind="stable")

    return rank


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


def grow_model(model: Any, table: np.ndarray) -> Any:
    """A copy of a SEATER model whose node-embedding table is ``table`` (more rows).

    ``export_bundle`` checks ONNX against torch with the model's own table and the new
    tree's paths, so the model must know the new nodes too. Shape: table [n_nodes, d].
    """
    grown = copy.deepcopy(model)
    grown.node_emb = nn.Embedding.from_pretrained(torch.as_tensor(table, dtype=torch.float32),
                                                  freeze=False)
    grown.n_nodes = int(table.shape[0])
    return grown.eval()


def cold_start(tree: IdTree, indexer: SemanticIndexer, x_new: np.ndarray, table: np.ndarray
               ) -> ColdStartResult:
    """Code, place and embed new items with a trained indexer (no retraining).

    Shape: x_new float32 [m, d_text] (the frozen encoder's vectors of their texts),
    table [tree.n_nodes, d] (the trained SEATER node embeddings).
    """
    indexer.eval()
    x = np.asarray(x_new, np.float32)
    new_tree, codes = insert_by_code(tree, indexer_ranker(indexer, x), len(x), indexer.levels,
                                     indexer.p.k)
    preferred = indexer.greedy_codes(torch.from_numpy(x)).numpy()
    return ColdStartResult(
        tree=new_tree,
        items=np.arange(tree.n_items, new_tree.n_items),
        codes=codes,
        preferred=preferred,
        node_emb=extend_node_table(tree, new_tree, table),
        n_new_nodes=new_tree.n_nodes - tree.n_nodes,
    )


def extend_items(items: dict[str, Any], new_ids: list[str], new_titles: list[str] | None = None
                 ) -> dict[str, Any]:
    """items.json content with the new external ids (and titles) appended in index order."""
    ids = [str(i) for i in items["ids"]]
    clash = sorted(set(ids) & set(new_ids))
    if clash or len(set(new_ids)) != len(new_ids):
        raise ValueError(f"new item ids must be unique and unknown; already present: {clash[:5]}")
    out = {**items, "ids": ids + list(new_ids)}
    if items.get("titles") is not None:
        titles = new_titles if new_titles is not None else [""] * len(new_ids)
        out["titles"] = list(items["titles"]) + list(titles)
    return out


GRAPHS = ("encoder.onnx", "decoder.onnx")


def publish_tree_version(base: Path, tree: IdTree, node_emb: np.ndarray, items: dict[str, Any],
                         out_root: Path, version: str, extra: dict[str, Any] | None = None
                         ) -> Path:
    """``out_root/<version>/``: ``base``'s graphs with a new tree, node table and items.

    The manifest is ``base``'s with the version, time, commit, checksums and tree shape
    renewed and ``base_version`` added. The tree must keep ``base``'s k and depth (the
    graphs fix the children width and the longest prefix) and the table its width.
    Published by ``training.publish`` like every bundle (atomic, checksummed, immutable).
    Shape: node_emb [tree.n_nodes, d].
    """
    from training.publish import publish_bundle

    base = Path(base)
    manifest = json.loads((base / "manifest.json").read_text())
    shape, d = manifest["tree"], manifest["config"]["d_model"]
    table = np.ascontiguousarray(node_emb, dtype=np.float32)
    if tree.k != shape["k"] or tree.max_depth != shape["depth"]:
        raise ValueError(f"tree k={tree.k}, depth={tree.max_depth} but the graphs of {base} "
                         f"were exported for k={shape['k']}, depth={shape['depth']}")
    if table.shape != (tree.n_nodes, d):
        raise ValueError(f"node_emb is {table.shape}, need ({tree.n_nodes}, {d})")
    if len(items["ids"]) != tree.n_items:
        raise ValueError(f"items has {len(items['ids'])} ids for {tree.n_items} tree items")

    def write(tmp: Path) -> dict[str, Any]:
        for name in GRAPHS:
            shutil.copy2(base / name, tmp / name)
        np.save(tmp / "embeddings.npy", table)
        tree.save(tmp / "tree.npz")
        (tmp / "items.json").write_text(json.dumps(items))
        kept = {k: v for k, v in manifest.items()
                if k not in ("model_version", "exported_at", "commit", "files")}
        return {**kept, "tree": tree.summary(), "base_version": manifest["model_version"],
                **(extra or {})}

    return publish_bundle(out_root, version, list(manifest["files"]), write)
