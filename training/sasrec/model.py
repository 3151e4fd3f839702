"""SASRec (Kang & McAuley, ICDM 2018): causal self-attention over the item history.

Three training objectives, all computed at real (non-padding) positions only — Beauty
histories average 9 items padded to 50, so this alone makes epochs several times faster:
- ``ss``: sampled softmax over the target and ``n_negatives`` uniform negatives per
  position (the "SASRec+SS" of the eSASRec study); accidental hits are masked.
- ``ce``: full softmax cross-entropy over the whole catalogue.
- ``bce``: the original paper's binary cross-entropy with one negative per position.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from training.layers import SequenceEncoder

Loss = Literal["ss", "ce", "bce"]


@dataclass(frozen=True)
class SASRecParams:
    """Architecture and objective (the eSASRec study's Beauty/Sports setting by default)."""

    max_len: int = 50
    d_model: int = 64
    n_layers: int = 1
    n_heads: int = 1
    dropout: float = 0.2
    ff_mult: int = 1
    loss: Loss = "ss"
    n_negatives: int = 256
    # "batch": one set of negatives shared by every position of a batch (a matmul, but
    # each item then gets only a few negative updates per epoch); "sequence": each user
    # row draws its own set, shared by its positions (128x the coverage for a small
    # gather). Fresh negatives per position, as RecTools samples them, are not offered:
    # their gather's backward took ~75% of a CPU epoch (torch.profiler).
    negatives: Literal["batch", "sequence"] = "sequence"
    # RecTools' SASRec (the eSASRec study's backbone) differs from the original in three
    # details, each switchable here: "xavier" initialises every matrix (item embeddings
    # included, so they start near 0.01) with Xavier-normal and adds positions to the
    # unscaled embeddings; ``item_dropout`` drops out the whole catalogue's embeddings
    # (the rows scored as targets and negatives, not only the inputs); and
    # ``mask_padded_keys=False`` leaves left padding visible to attention.
    init: Literal["sasrec", "xavier"] = "sasrec"
    item_dropout: float = 0.0
    mask_padded_keys: bool = True


class SASRec(nn.Module):
    def __init__(self, n_items: int, p: SASRecParams) -> None:
        super().__init__()
        self.n_items = n_items
        self.p = p
        self.pad_id = n_items
        self.item_emb = nn.Embedding(n_items + 1, p.d_model, padding_idx=n_items)
        self.encoder = SequenceEncoder(
            p.d_model, p.n_layers, p.n_heads, p.dropout, p.max_len, causal=True,
            ff_mult=p.ff_mult, scale_input=p.init == "sasrec",
            mask_padded_keys=p.mask_padded_keys,
        )
        if p.init == "xavier":
            for w in self.parameters():
                if w.dim() > 1:
                    nn.init.xavier_normal_(w)
        else:
            # N(0, 1/d), multiplied by sqrt(d) at the input (original SASRec). N(0, 1)
            # embeddings without the scaling collapsed here (valid NDCG@10 0.009).
            nn.init.normal_(self.item_emb.weight, std=p.d_model**-0.5)
        with torch.no_grad():
            self.item_emb.weight[self.pad_id].zero_()

    def catalogue(self) -> torch.Tensor:
        """All embedding rows (pad last), dropped out as a whole while training."""
        w = self.item_emb.weight
        return F.dropout(w, self.p.item_dropout, self.training) if self.p.item_dropout else w

    def encode(self, seq: torch.Tensor, catalogue: torch.Tensor | None = None,
               items: torch.Tensor | None = None) -> torch.Tensor:
        """Shape: seq int64 [B, T] left-padded with pad_id -> states [B, T, d].

        With visible padding the states depend on how much of it there is, so the input
        is left-padded to ``max_len`` here, whatever length the caller trimmed it to.
        ``items`` [n_items, d] is a table without the padding row (an exported graph's
        input): padded positions then read zeros by mask, which is the pad row's value
        (``padding_idx``: initialised to zero, never updated), so no catalogue-sized op
        runs per call.
        """
        t = seq.shape[1]
        if not self.p.mask_padded_keys:
            seq = F.pad(seq, (self.p.max_len - t, 0), value=self.pad_id)
        real = seq != self.pad_id
        if items is not None:
            emb = F.embedding(seq.clamp(max=self.n_items - 1), items) * real.unsqueeze(-1)
        else:
            weight = self.item_emb.weight if catalogue is None else catalogue
            emb = F.embedding(seq, weight, padding_idx=self.pad_id)
        return self.encoder(emb, real)[:, -t:]

    def forward(self, seq: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        """States without ``target``; with it, the next-item loss at every real position.

        One entry point for both, so DistributedDataParallel sees the training pass.
        Shape: seq, target int64 [B, T].
        """
        if target is None:
            return self.encode(seq)
        catalogue = self.catalogue()
        h = self.encode(seq, catalogue)
        real = target != self.pad_id
        items = catalogue[: self.n_items]
        if self.p.loss == "ss" and self.p.negatives == "sequence":
            return self._sequence_sampled_softmax(h, target, real, items)
        h = h[real]  # (P, d)
        pos = target[real]  # (P,)
        if self.p.loss == "ce":
            return F.cross_entropy(h @ items.T, pos)
        if self.p.loss == "ss":  # negatives == "batch": one set for every position
            pos_logit = (h * items[pos]).sum(-1, keepdim=True)  # (P, 1)
            neg = torch.randint(0, self.n_items, (1, self.p.n_negatives), device=pos.device)
            neg_logit = h @ items[neg[0]].T  # (P, n)
            neg_logit = neg_logit.masked_fill(neg == pos[:, None], float("-inf"))
            logits = torch.cat([pos_logit, neg_logit], dim=1)
            return F.cross_entropy(logits, torch.zeros_like(pos))
        neg = torch.randint(0, self.n_items, pos.shape, device=pos.device)
        pos_logit = (h * items[pos]).sum(-1)
        neg_logit = (h * items[neg]).sum(-1)
        return F.binary_cross_entropy_with_logits(
            torch.cat([pos_logit, neg_logit]),
            torch.cat([torch.ones_like(pos_logit), torch.zeros_like(neg_logit)]),
        )

    def _sequence_sampled_softmax(self, h: torch.Tensor, target: torch.Tensor,
                                  real: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Sampled softmax with one negative set per sequence. Shape: h [B, T, d]."""
        b = h.shape[0]
        neg = torch.randint(0, self.n_items, (b, self.p.n_negatives), device=h.device)
        pos_logit = (h * F.embedding(target.clamp(max=self.n_items - 1), items)).sum(-1)
        neg_logit = h @ items[neg].transpose(1, 2)  # (B, T, n)
        neg_logit = neg_logit.masked_fill(neg[:, None, :] == target[:, :, None], float("-inf"))
        logits = torch.cat([pos_logit[..., None], neg_logit], dim=-1)[real]  # (P, 1 + n)
        return F.cross_entropy(logits, torch.zeros(logits.shape[0], dtype=torch.long,
                                                   device=h.device))

    @torch.no_grad()
    def user_states(self, seq: torch.Tensor) -> torch.Tensor:
        """The state at the most recent position. Shape: [B, T] -> [B, d]."""
        return self.encode(seq)[:, -1]

    @torch.no_grad()
    def scores(self, seq: torch.Tensor) -> torch.Tensor:
        """Dot-product scores over the catalogue. Shape: [B, T] -> [B, n_items]."""
        return self.user_states(seq) @ self.item_emb.weight[: self.n_items].T

    def item_embeddings(self) -> np.ndarray:
        """Learned item embeddings, row i = item index i. Shape: [n_items, d]."""
        return self.item_emb.weight[: self.n_items].detach().cpu().numpy().astype(np.float32)
