"""Diagnostics of learned codes (LMIndexer Sec. 4.3): usage, perplexity, diff ratio,
collisions, and how well the codes reconstruct the text (Macro-F1)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from training.lmindexer.assign import group_ids


def usage(codes: np.ndarray, k: int) -> np.ndarray:
    """Items per code at each position. Shape: codes [n, L] -> int64 [L, k]."""
    return np.stack([np.bincount(codes[:, t], minlength=k) for t in range(codes.shape[1])])


def perplexity(counts: np.ndarray) -> float:
    """exp(entropy) of a usage histogram: k when uniform, 1 when one code takes all."""
    p = np.asarray(counts, np.float64)
    p = p[p > 0] / p.sum()
    return float(np.exp(-(p * np.log(p)).sum()))


def diff_ratio(codes: np.ndarray, t: int) -> float:
    """Of the item pairs sharing c_<t, the fraction whose c_t differs (Fig. 4e)."""
    groups = group_ids(codes[:, :t])
    cells = group_ids(codes[:, : t + 1])
    pairs_prefix = _pairs(np.bincount(groups))
    pairs_same = _pairs(np.bincount(cells))
    return float(1.0 - pairs_same / pairs_prefix) if pairs_prefix else 1.0


def _pairs(sizes: np.ndarray) -> int:
    sizes = sizes.astype(np.int64)
    return int((sizes * (sizes - 1) // 2).sum())


def collisions(codes: np.ndarray) -> dict[str, float | int]:
    """How many items share a full code with another item, and the largest group."""
    _, inverse, counts = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
    shared = counts[inverse.ravel()] > 1
    return {"collision_rate": float(shared.mean()), "max_group": int(counts.max()),
            "unique_codes": int(len(counts))}


def cell_sizes(codes: np.ndarray) -> list[dict[str, float | int]]:
    """Items per distinct prefix at each depth (the tree's subtree sizes)."""
    out = []
    for t in range(1, codes.shape[1] + 1):
        sizes = np.bincount(group_ids(codes[:, :t]))
        out.append({"depth": t, "nodes": int(len(sizes)), "min": int(sizes.min()),
                    "median": float(np.median(sizes)), "max": int(sizes.max())})
    return out


def level_report(codes: np.ndarray, k: int) -> list[dict[str, Any]]:
    """Per position: perplexity, used codes, diff ratio."""
    use = usage(codes, k)
    return [{"level": t + 1, "perplexity": round(perplexity(use[t]), 3),
             "used_codes": int((use[t] > 0).sum()), "diff_ratio": round(diff_ratio(codes, t), 4)}
            for t in range(codes.shape[1])]


def bag_matrix(bags: np.ndarray, n_vocab: int) -> torch.Tensor:
    """-1-padded word ids -> float multi-hot. Shape: [B, W] -> [B, V]."""
    bags_t = torch.as_tensor(bags)
    out = torch.zeros(len(bags_t), n_vocab)
    valid = bags_t >= 0
    rows = torch.arange(len(bags_t))[:, None].expand_as(bags_t)
    out[rows[valid], bags_t[valid]] = 1.0
    return out


def macro_f1(logits: torch.Tensor, target: torch.Tensor) -> tuple[float, float]:
    """Token reconstruction Macro-F1 and micro-F1 (= recall here).

    Each item predicts its top-m words, m = its number of words, so precision equals
    recall per item; Macro-F1 averages per-word F1 over words that occur or are predicted.
    Shape: logits, target [B, V].
    """
    m = target.sum(dim=1).long()
    keep = m > 0
    logits, target, m = logits[keep], target[keep], m[keep]
    width = int(m.max()) if len(m) else 0
    if width == 0:
        return 0.0, 0.0
    top = logits.topk(width, dim=1).indices  # (B, width)
    take = torch.arange(width)[None, :] < m[:, None]
    pred = torch.zeros_like(target)
    rows = torch.arange(len(top))[:, None].expand_as(top)
    pred[rows[take], top[take]] = 1.0
    tp = (pred * target).sum(0)
    fp = (pred * (1 - target)).sum(0)
    fn = ((1 - pred) * target).sum(0)
    seen = (tp + fp + fn) > 0
    f1 = (2 * tp / (2 * tp + fp + fn).clamp(min=1e-9))[seen]
    micro = float(tp.sum() / target.sum())
    return float(f1.mean()), micro
