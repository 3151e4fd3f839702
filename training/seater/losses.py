"""SEATER's three objectives (section 3.3) and the sampling of ranking negatives.

- generation (eq. 5): cross-entropy over the k children at every level of the target path;
- alignment (eq. 6): InfoNCE pulling each node token towards its parent token (cosine/τ),
  with the other tokens of the batch — except the node's own children — as negatives;
- ranking (eq. 7–8): for the positive path and q negatives that share prefixes of
  different lengths with it, every pair is ordered by the number of shared tokens with a
  triplet loss whose margin grows with the gap: ξ = β·(num(y‡) − num(y†)), using
  s(p, q) = σ(pᵀ W_s q) on mean-pooled encoder and decoder states.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from indexer import IdTree


def generation_loss(logits: torch.Tensor, target_slot: torch.Tensor) -> torch.Tensor:
    """Sum over levels, mean over examples. Shape: logits [B, L, k]; target_slot [B, L]
    (-1 beyond a shorter path)."""
    ce = F.cross_entropy(logits.flatten(0, 1).float(), target_slot.flatten().clamp(min=0),
                         reduction="none").view_as(target_slot)
    return (ce * (target_slot >= 0)).sum(1).mean()


def alignment_loss(node_emb: torch.Tensor, tokens: torch.Tensor, parent: torch.Tensor,
                   tau: float) -> torch.Tensor:
    """InfoNCE over the batch's distinct tokens (eq. 6).

    Shape: node_emb [n_nodes, d]; tokens int64 [M] distinct node ids present in the batch
    (their parents included); parent int64 [n_nodes] (-1 for the root).
    """
    par = parent[tokens]
    has_parent = par >= 0
    anchors = tokens[has_parent]
    if anchors.numel() == 0:
        return node_emb.sum() * 0.0
    e = F.normalize(node_emb[tokens], dim=-1)
    sim = e[has_parent] @ e.T / tau  # (A, M): anchor j vs every batch token
    # the parent is the positive; the anchor itself and its children are not negatives
    is_self = anchors[:, None] == tokens[None, :]
    is_child = par[None, :] == anchors[:, None]
    sim = sim.masked_fill(is_self | is_child, float("-inf"))
    pos_col = torch.searchsorted(tokens, par[has_parent])  # tokens are sorted
    return F.cross_entropy(sim, pos_col)


def ranking_loss(z_x: torch.Tensor, z_y: torch.Tensor, shared: torch.Tensor,
                 w_s: torch.Tensor, beta: float, negatives_ranked: bool = True,
                 cosine_scale: float = 0.0) -> torch.Tensor:
    """Pairwise triplet loss over the positive (row 0) and its negatives (eq. 8).

    Shape: z_x [B, d]; z_y [B, W, d]; shared int64 [B, W] tokens in common with the
    positive (-1 = no such negative could be sampled). With ``negatives_ranked`` False
    only pairs (positive, negative) count — the paper's "w/o L_rank for negatives".
    ``cosine_scale`` > 0 scores σ(scale · cos(W_sᵀ z_x, z_y)) instead of the paper's
    σ(z_xᵀ W_s z_y): bounded logits, so growing state norms cannot saturate the sigmoid
    (on Beauty the paper's score reaches the margin sum, 0.2, within a few epochs and
    the loss stops giving gradient).
    """
    if cosine_scale > 0:
        u = F.normalize(z_x @ w_s, dim=-1)
        s = torch.sigmoid(cosine_scale * torch.einsum("bd,bwd->bw", u,
                                                      F.normalize(z_y, dim=-1)).float())
    else:
        s = torch.sigmoid(torch.einsum("bd,de,bwe->bw", z_x, w_s, z_y).float())  # (B, W)
    gap = shared[:, :, None] - shared[:, None, :]  # row i above row j when gap > 0
    valid = (gap > 0) & (shared[:, :, None] >= 0) & (shared[:, None, :] >= 0)
    if not negatives_ranked:
        valid = valid & (torch.arange(shared.shape[1], device=s.device)[:, None] == 0)
    hinge = torch.relu(s[:, None, :] - s[:, :, None] + beta * gap.float())
    return (hinge * valid).sum((1, 2)).mean()


def sample_negatives(tree: IdTree, targets: np.ndarray, q: int, rng: np.random.Generator
                     ) -> tuple[np.ndarray, np.ndarray]:
    """For each target item, ``q`` items whose paths share 0, 1, ... q-1 leading tokens.

    A negative sharing ℓ tokens descends from the target's depth-ℓ ancestor through a
    different child, then to a uniformly random leaf below it. Where the ancestor has
    no other child the slot is -1 (skipped by the loss).
    Shape: targets [B] -> items [B, q] (-1 = none), shared [B, q].
    """
    paths = tree.node_paths[targets]  # (B, L)
    depth = (paths >= 0).sum(1)
    b = targets.shape[0]
    items = np.full((b, q), -1, np.int64)
    shared = np.full((b, q), -1, np.int64)
    for level in range(min(q, paths.shape[1])):  # a shallow tree offers fewer levels
        ok = depth > level
        anc = np.where(level == 0, tree.root, paths[:, max(level - 1, 0)])
        own = paths[:, level]
        n_kids = tree.n_children[anc]
        ok &= n_kids >= 2
        r = rng.integers(0, np.maximum(n_kids - 1, 1))
        own_slot = tree.slot[np.maximum(own, 0)]
        slot = r + (r >= own_slot)
        kid = tree.children[anc, np.minimum(slot, tree.k - 1)]
        ok &= kid >= 0
        kid = np.maximum(kid, 0)
        pos = tree.leaf_lo[kid] + rng.integers(0, np.maximum(tree.leaf_count[kid], 1))
        items[ok, level] = tree.leaf_order[pos[ok]]
        shared[ok, level] = level
    return items, shared
