"""SEATER's three objectives (section 3.3) and the sampling of ranking negatives.

- generation (eq. 5): cross-entropy over the k children at every level of the target path;
- alignment (eq. 6): InfoNCE pulling each node token towards its parent token (cosine/τ),
  with the other tokens of the batch as negatives;
- ranking (eq. 7–8): for the positive path and q negatives that share prefixes of
  different lengths with it, pairs are ordered by the number of shared tokens with a
  triplet loss whose margin grows with the gap, using s(p, q) = σ(pᵀ W_s q) on
  mean-pooled encoder and decoder states.

Each function has the project's form and, as options, the form of the authors' code
(``Ethan00Si/SEATER_Generative_Retrieval``, ``model/SEATER.py`` and ``utils/data.py``);
``docs/seater_reference.md`` maps every option to the function it mirrors.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from indexer import IdTree

GenReduction = Literal["levels", "tokens"]
RankForm = Literal["sum", "reference"]
RankNegatives = Literal["levels", "levels_no_sibling", "subtrees"]


def generation_loss(logits: torch.Tensor, target_slot: torch.Tensor,
                    reduction: GenReduction = "levels") -> torch.Tensor:
    """Cross-entropy of every level's child. ``levels``: summed over the levels, mean over
    examples; ``tokens``: mean over all target tokens (the reference's
    ``nn.CrossEntropyLoss``), so the auxiliary weights are not divided by the depth.

    Shape: logits [B, L, k]; target_slot [B, L] (-1 beyond a shorter path).
    """
    ce = F.cross_entropy(logits.flatten(0, 1).float(), target_slot.flatten().clamp(min=0),
                         reduction="none").view_as(target_slot)
    real = target_slot >= 0
    if reduction == "tokens":
        return (ce * real).sum() / real.sum().clamp(min=1)
    return (ce * real).sum(1).mean()


def alignment_loss(node_emb: torch.Tensor, tokens: torch.Tensor, parent: torch.Tensor,
                   tau: float, mask_children: bool = True) -> torch.Tensor:
    """InfoNCE over the batch's distinct tokens (eq. 6).

    The paper leaves the anchor's children out of its negatives (``mask_children``); the
    reference code builds that mask but, by broadcasting, applies it to the loss weights
    instead of the denominator, so there every other batch token is a negative.
    Shape: node_emb [n_nodes, d]; tokens int64 [M] distinct node ids present in the batch
    (their parents included), sorted; parent int64 [n_nodes] (-1 for the root).
    """
    par = parent[tokens]
    has_parent = par >= 0
    anchors = tokens[has_parent]
    if anchors.numel() == 0:
        return node_emb.sum() * 0.0
    e = F.normalize(node_emb[tokens], dim=-1)
    sim = e[has_parent] @ e.T / tau  # (A, M): anchor j vs every batch token
    drop = anchors[:, None] == tokens[None, :]  # the anchor itself is no negative
    if mask_children:
        drop = drop | (par[None, :] == anchors[:, None])
    sim = sim.masked_fill(drop, float("-inf"))
    pos_col = torch.searchsorted(tokens, par[has_parent])  # the parent is the positive
    return F.cross_entropy(sim, pos_col)


def ranking_loss(z_x: torch.Tensor, z_y: torch.Tensor, shared: torch.Tensor,
                 w_s: torch.Tensor, beta: float, cosine_scale: float = 0.0,
                 form: RankForm = "sum") -> torch.Tensor:
    """Pairwise triplet loss over the positive (row 0) and its negatives (eq. 8): the
    negatives are ranked among themselves too, as in the paper's full model.

    Shape: z_x [B, d]; z_y [B, W, d]; shared int64 [B, W] tokens in common with the
    positive (-1 = no such negative could be sampled).
    ``cosine_scale`` > 0 scores σ(scale · cos(W_sᵀ z_x, z_y)) instead of the paper's
    σ(z_xᵀ W_s z_y): bounded logits, so growing state norms cannot saturate the sigmoid.

    ``form``: ``sum`` orders every pair with a margin β·(gap in shared tokens), summed
    over pairs, mean over examples; ``reference`` is ``add_n_pair_margin_loss``: see
    ``_offset_mean``. With all scores equal the loss is its margin sum, the value a
    ranking loss that learns nothing stays at.
    """
    if cosine_scale > 0:
        u = F.normalize(z_x @ w_s, dim=-1)
        s = torch.sigmoid(cosine_scale * torch.einsum("bd,bwd->bw", u,
                                                      F.normalize(z_y, dim=-1)).float())
    else:
        s = torch.sigmoid(torch.einsum("bd,de,bwe->bw", z_x, w_s, z_y).float())  # (B, W)
    if form == "reference":
        return _offset_mean(s, shared, beta)
    gap = shared[:, :, None] - shared[:, None, :]  # row i above row j when gap > 0
    valid = (gap > 0) & (shared[:, :, None] >= 0) & (shared[:, None, :] >= 0)
    hinge = torch.relu(s[:, None, :] - s[:, :, None] + beta * gap.float())
    return (hinge * valid).sum((1, 2)).mean()


def _offset_mean(s: torch.Tensor, shared: torch.Tensor, beta: float) -> torch.Tensor:
    """The reference's list form: the list is the negatives from shallow to deep, then the
    positive; for each offset i the pairs (j, j + i) where the later entry shares more
    tokens must be ordered by a margin β·i; the hinge is averaged over the valid pairs of
    the whole batch per offset, and the offsets' means are summed.

    Unsampled negatives (-1) are moved to the front of the list first, so offsets count
    only real entries (the reference always has all q). Shape: s float [B, W] (row 0 the
    positive); shared int64 [B, W].
    """
    s = torch.cat([s[:, 1:], s[:, :1]], dim=1)  # list order: negatives, then the positive
    shared = torch.cat([shared[:, 1:], shared[:, :1]], dim=1)
    order = torch.argsort((shared >= 0).long(), dim=1, stable=True)  # unsampled first
    s, shared = s.gather(1, order), shared.gather(1, order)
    n = s.shape[1]
    total = s.new_zeros(())
    for i in range(1, n):
        hi, lo = shared[:, i:], shared[:, :-i]
        valid = (hi > lo) & (lo >= 0)
        hinge = torch.relu(s[:, :-i] - s[:, i:] + beta * i)
        total = total + (hinge * valid).sum() / valid.sum().clamp(min=1)
    return total


def sample_negatives(tree: IdTree, targets: np.ndarray, q: int, rng: np.random.Generator,
                     mode: RankNegatives = "levels") -> tuple[np.ndarray, np.ndarray]:
    """``q`` ranking negatives per target item and the tokens each shares with it.

    - ``levels``: slot ℓ descends from the target's depth-ℓ ancestor through a different
      child, then to a uniformly random leaf below it, so it shares exactly ℓ tokens;
      slot L-1 is then a sibling leaf, whose decoder input equals the positive's.
    - ``levels_no_sibling``: the same without that slot (it can never be ranked below
      the positive: both rows decode the same prefix).
    - ``subtrees``: the reference's ``SEATER_Dataset.neg_sample``: one leaf drawn
      uniformly (target excluded) from the subtree of each of the q deepest ancestors
      other than the leaf's parent (``path[:-2][-q:]``), shallow to deep; a draw may
      share more tokens than its ancestor's depth.

    Every call draws the same amount of randomness for a given tree and batch, whatever
    is valid, so streams do not depend on the data. Where no negative exists the slot is
    -1 (skipped by the loss). Shape: targets [B] -> items [B, q] (-1 = none), shared [B, q].
    """
    if mode == "subtrees":
        return _subtree_negatives(tree, targets, q, rng)
    paths = tree.node_paths[targets]  # (B, L)
    depth = (paths >= 0).sum(1)
    last = depth - 1 if mode == "levels_no_sibling" else depth  # first level not offered
    b = targets.shape[0]
    items = np.full((b, q), -1, np.int64)
    shared = np.full((b, q), -1, np.int64)
    for level in range(min(q, paths.shape[1])):  # a shallow tree offers fewer levels
        ok = last > level
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


def _subtree_negatives(tree: IdTree, targets: np.ndarray, q: int, rng: np.random.Generator
                       ) -> tuple[np.ndarray, np.ndarray]:
    """``sample_negatives(mode="subtrees")``. Slots are right-aligned: with fewer than q
    eligible ancestors (a tree of depth < q + 1) the first slots stay -1."""
    paths = tree.node_paths[targets]  # (B, L)
    b = targets.shape[0]
    depth = (paths >= 0).sum(1)
    ancestors = np.concatenate([np.full((b, 1), tree.root, np.int64), paths], 1)  # (B, L+1)
    n_anc = np.maximum(depth - 1, 0)  # root .. grandparent of the leaf
    col = n_anc[:, None] - q + np.arange(q)[None, :]  # (B, q) deepest q, shallow to deep
    anc = np.take_along_axis(ancestors, np.maximum(col, 0), axis=1)
    count = tree.leaf_count[anc]
    ok = (col >= 0) & (count >= 2)
    r = rng.integers(0, np.maximum(count - 1, 1))  # (B, q), a leaf other than the target
    pos = tree.leaf_lo[anc] + r
    pos += pos >= tree.leaf_pos[targets][:, None]
    items = np.where(ok, tree.leaf_order[np.minimum(pos, tree.n_items - 1)], -1)
    common = (tree.node_paths[np.maximum(items, 0)] == paths[:, None, :]) & (paths[:, None] >= 0)
    shared = np.where(ok, common.sum(2), -1)
    return items.astype(np.int64), shared.astype(np.int64)
