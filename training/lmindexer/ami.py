"""Do IDs group items by what they are? AMI between ID prefixes and categories
(LMIndexer Table 1, Appendix A.4).

A tree ID's depth-t prefix is a clustering of the items (its depth-t node); AMI
(Vinh et al., 2009; ``sklearn.metrics.adjusted_mutual_info_score``) compares it with the
category at one level of the catalogue's category tree, corrected for chance: 1 for a
prefix that is the category, ~0 for a random tree, whatever the number of clusters.

Category levels: Amazon paths start with the dataset's root ("Beauty > ...") on every
item, so "top" is the first level that takes more than one value (Beauty: "Makeup",
"Skin Care", ...), "sub" the level below it, named by its full path ("Makeup > Nails",
so "Face" under Makeup and under Skin Care stay apart). An item's first path is used;
items whose path does not reach the level are left out of that score.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

import numpy as np
from sklearn.metrics import adjusted_mutual_info_score

from training.data.dataset import ItemText
from training.lmindexer.assign import group_ids


def category_labels(item_text: ItemText, level: int) -> list[str]:
    """The first path's prefix down to ``level`` (0-based), joined by " > "; '' when shorter."""
    out = []
    for paths in item_text.categories:
        path = paths[0] if paths else []
        out.append(" > ".join(path[: level + 1]) if len(path) > level else "")
    return out


def first_varying_level(item_text: ItemText) -> int:
    """The shallowest category level with more than one value among known items."""
    depth = max((len(p[0]) for p in item_text.categories if p), default=0)
    for level in range(depth):
        values = {v for v in item_text.category_level(level) if v}
        if len(values) > 1:
            return level
    raise ValueError("no category level distinguishes the items (every path is the same)")


def prefix_clusters(codes: np.ndarray, depth: int) -> np.ndarray:
    """Cluster id of each item = its depth-``depth`` ID prefix. Shape: [n, L] -> [n]."""
    return group_ids(np.asarray(codes)[:, :depth])


def ami(clusters: np.ndarray, labels: list[str]) -> tuple[float, int]:
    """AMI over the items with a known label ('' = unknown); returns (score, n used)."""
    labels_arr = np.asarray(labels, dtype=object)
    known = labels_arr != ""
    if known.sum() < 2:
        return float("nan"), int(known.sum())
    score = adjusted_mutual_info_score(labels_arr[known].astype(str), np.asarray(clusters)[known])
    return float(score), int(known.sum())


def ami_table(sources: dict[str, np.ndarray], item_text: ItemText, max_depth: int = 3
              ) -> dict[str, Any]:
    """AMI of every source's depth-1..max_depth prefixes against top, sub and leaf
    categories; ``headline`` holds the Table-1 pair (depth 1 vs top, depth 2 vs sub).

    Shape: sources name -> codes [n_items, L].
    """
    top = first_varying_level(item_text)
    levels = {"top": top, "sub": top + 1}
    labels = {name: category_labels(item_text, lvl) for name, lvl in levels.items()}
    depth_all = max((len(p[0]) for p in item_text.categories if p), default=0)
    labels["leaf"] = [" > ".join(p[0]) if p else "" for p in item_text.categories]
    rows: dict[str, Any] = {}
    for name, codes in sources.items():
        table: dict[str, float] = {}
        for depth in range(1, min(max_depth, codes.shape[1]) + 1):
            clusters = prefix_clusters(codes, depth)
            for cat, lab in labels.items():
                table[f"depth{depth}_vs_{cat}"] = round(ami(clusters, lab)[0], 4)
        rows[name] = {"headline": {"level1_vs_top": table["depth1_vs_top"],
                                   "level2_vs_sub": table.get("depth2_vs_sub", float("nan"))},
                      "all": table}
    example = {k: sorted({v for v in lab if v})[:8] for k, lab in labels.items() if k != "leaf"}
    return {
        "category_levels": {"top": top, "sub": top + 1, "max_depth": depth_all},
        "n_labelled": {k: int(sum(1 for v in lab if v)) for k, lab in labels.items()},
        "n_categories": {k: len({v for v in lab if v}) for k, lab in labels.items()},
        "examples": example,
        "sources": rows,
    }


def source_agreement(a: ItemText, b: ItemText) -> dict[str, Any]:
    """AMI between two category sources' top labels, and their sub labels, over the
    items both label: how far one source can stand in for the other."""
    out: dict[str, Any] = {}
    for name, offset in (("top", 0), ("sub", 1)):
        left = np.asarray(category_labels(a, first_varying_level(a) + offset), dtype=object)
        right = np.asarray(category_labels(b, first_varying_level(b) + offset), dtype=object)
        both = (left != "") & (right != "")
        _, right_id = np.unique(right[both].astype(str), return_inverse=True)
        score, n = ami(right_id, list(left[both]))
        out[name] = {"ami": round(score, 4), "n_items": n}
    return out


def distinctive_words(labels: list[str], texts: list[str], n_words: int = 6,
                      min_share: float = 0.03) -> dict[str, dict[str, Any]]:
    """Per label, its item count and the words most over-represented in its items' text
    (lift = share among the label's items / share among all; words in at least
    ``min_share`` of the label's items and 3 of them): what a reader checks labels whose
    names are unknown against. Labels '' are skipped; most frequent label first."""
    overall: Counter[str] = Counter()
    per: defaultdict[str, Counter[str]] = defaultdict(Counter)
    for label, text in zip(labels, texts, strict=True):
        words = set(text.lower().split())
        overall.update(words)
        if label:
            per[label].update(words)
    sizes = Counter(label for label in labels if label)
    total = len(labels)
    out = {}
    for label in sorted(sizes, key=lambda x: (-sizes[x], x)):
        size = sizes[label]
        floor = max(3.0, min_share * size)
        lift = {w: (c / size) / (overall[w] / total) for w, c in per[label].items() if c >= floor}
        top = sorted(lift, key=lambda w: (-lift[w], w))[:n_words]
        out[label] = {"items": size, "words": top}
    return out


def neighbour_agreement(codes: np.ndarray, labels: list[str], query: np.ndarray, depth: int
                        ) -> tuple[float, int]:
    """How often a query item's depth-``depth`` node is led by its own category.

    For each query item with a known label, the majority label of the *other* labelled
    items in its node (queries excluded, so a cold-start item is judged by the trained
    items it was placed among); items alone in their node are skipped. Returns (the
    fraction that agree, the number judged).
    Shape: codes [n, L], query bool [n].
    """
    labels_arr = np.asarray(labels, dtype=object)
    known = labels_arr != ""
    node = prefix_clusters(codes, depth)
    _, lab = np.unique(labels_arr[known].astype(str), return_inverse=True)
    label_id = np.full(len(labels_arr), -1, np.int64)
    label_id[known] = lab
    ref = known & ~np.asarray(query)
    n_nodes, n_labels = int(node.max()) + 1, int(lab.max()) + 1
    counts = np.zeros((n_nodes, n_labels), np.int64)
    np.add.at(counts, (node[ref], label_id[ref]), 1)
    judged = np.flatnonzero(np.asarray(query) & known & (counts[node].sum(axis=1) > 0))
    if judged.size == 0:
        return float("nan"), 0
    agree = counts[node[judged]].argmax(axis=1) == label_id[judged]
    return float(agree.mean()), int(judged.size)
