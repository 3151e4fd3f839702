"""Cold start: an item with text and no interactions gets a leaf the moment it is listed.

    text ──► frozen encoder ──► trained indexer (no retraining) ──► ranked codes per level
         ──► ``indexer.insert.insert_by_code``: the leaf at its semantic path (a new
             leaf, new branch nodes where its path is new; existing items never move)
         ──► ``indexer.insert.extend_node_table``: rows for the new nodes (their nearest
             existing ancestor's leaf centroid, i.e. the mean of its semantic neighbours)
         ──► a new bundle version ──► ``POST /v1/admin/reload``

Two ways to write that bundle: ``publish_tree_version`` copies the previous bundle's
ONNX graphs and writes only the new tree, node table and items (the graphs take the
node table and the children table as inputs, so nothing in them depends on the tree;
it needs no torch export); or the full
``export_bundle(model.with_node_table(table), new_tree, ..., node_emb=table)``, which
re-traces the graphs and re-checks ONNX parity.

Placement follows the code, not an embedding descent: at each semantic level the item
takes its best-scoring code whose subtree still has room (the indexer re-scores the
next level given the code actually taken, ``indexer_ranker``); at a disambiguation level
added by ``from_codes`` it takes the first free slot.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from indexer import IdTree
from indexer.insert import RankSlots, extend_node_table, insert_by_code
from training.lmindexer.model import SemanticIndexer


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
