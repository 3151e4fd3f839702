"""The three LMIndexer losses, as pure functions of tensors (hand-checked in the tests)."""

from __future__ import annotations

import torch


def reconstruction_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Eq. 4 with bags of words: -mean over items of (1/|d \\ d_h|) sum_w log P(w).

    Items without a target word (every word was a hint) are left out, so the value is
    comparable across hint ratios.
    Shape: logits [B, V], target float multi-hot [B, V] -> scalar.
    """
    count = target.sum(dim=1)
    keep = count > 0
    if not keep.any():
        return logits.sum() * 0.0
    logp = torch.log_softmax(logits[keep], dim=-1)
    return -((logp * target[keep]).sum(dim=1) / count[keep]).mean()


def prefix_contrastive_loss(h: torch.Tensor, prefix: torch.Tensor, tau: float) -> torch.Tensor:
    """Eq. 9: items that share the prefix c_<t must differ at position t.

    l_d = -log exp(h_d·h_d/τ) / (exp(h_d·h_d/τ) + sum_{d' != d, same prefix} exp(h_d·h_d'/τ)),
    averaged over the items that have at least one same-prefix partner in the batch
    (the others contribute log 1 = 0). At t = 1 every pair shares the empty prefix.
    Shape: h [B, D] (unit rows), prefix int64 [B] (one id per distinct c_<t) -> scalar.
    """
    sim = (h @ h.T) / tau  # (B, B)
    same = prefix[:, None] == prefix[None, :]
    eye = torch.eye(len(h), dtype=torch.bool, device=h.device)
    partners = same & ~eye
    has = partners.any(dim=1)
    if not has.any():
        return h.sum() * 0.0
    self_sim = sim.diagonal()
    denom = torch.logsumexp(sim.masked_fill(~same, float("-inf")), dim=1)  # self + partners
    return (denom - self_sim)[has].mean()


def commitment_loss(h: torch.Tensor, e: torch.Tensor, beta: float) -> torch.Tensor:
    """VQ codebook + commitment: ||sg(h) - e||^2 + β ||h - sg(e)||^2 (mean over rows).

    The first term pulls the chosen code towards its items, the second keeps h_t close
    to its code, so the argmax (the item's ID) does not flip while the encoder trains.
    Shape: h [B, D], e [B, D] (the chosen codes, not straight-through) -> scalar.
    """
    codebook = (h.detach() - e).pow(2).sum(dim=1).mean()
    commit = (h - e.detach()).pow(2).sum(dim=1).mean()
    return codebook + beta * commit
