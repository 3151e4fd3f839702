"""The sequential discrete auto-encoder of LMIndexer (ICML 2024, Sec. 3.1), scaled down.

    x (frozen MiniLM, 384-d) ──► head_t(x, e_1..e_{t-1}) = h_t ──► c_t = argmax_j h_t·e^t_j
                                                                       │ straight-through
    bag of words of the item ◄── reconstructor(q_1..q_t, hint words) ◄─┘

- Semantic encoder: the sentence encoder is frozen; each position t has its own small
  MLP head that reads the text vector and the embeddings of the codes already chosen,
  so position t refines what positions < t said (sequential IDs, not independent ones).
  A finished position's head and codebook are frozen, so an item's earlier codes are
  reproduced exactly when a new item is coded later (cold start).
- Codebooks: one [k, D] table per position; h_t and codes are unit vectors and the code
  is the highest cosine (dot product of unit vectors).
- Straight-through (Eq. 6): forward uses the chosen code e_{c_t}, backward the softmax-
  weighted mean of all codes, so reconstruction gradients reach the encoder head.
- Reconstructor (Eq. 5, bag-of-words form): each position's code is projected and
  summed with the mean embedding of the hint words; logits over the vocabulary use the
  same (tied) word embeddings. Deliberately shallow, so the codes must carry the text.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from training.lmindexer.config import IndexerParams


@dataclass(frozen=True)
class Quantized:
    """One position's quantisation.

    Attributes:
        q: straight-through code embeddings (forward: the chosen code). Shape: [B, D].
        codes: chosen code per row. Shape: int64 [B].
        scores: cosine of h_t with every code. Shape: [B, k].
    """

    q: torch.Tensor
    codes: torch.Tensor
    scores: torch.Tensor


class LevelHead(nn.Module):
    """h_t = normalize(MLP([x, e_1, ..., e_{t-1}])).

    Shape: x [B, d_text], ctx [B, t*D] -> [B, D].
    """

    def __init__(self, d_in: int, hidden: int, d_code: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d_in, hidden), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, d_code))

    def forward(self, x: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net(torch.cat([x, ctx], dim=-1)), dim=-1)


class BowReconstructor(nn.Module):
    """P(w | c_<=t, hints) = softmax(W z + b), z = LN(sum_t P_t q_t + mean W[hints])."""

    def __init__(self, levels: int, d_code: int, d_recon: int, n_vocab: int) -> None:
        super().__init__()
        self.proj = nn.ModuleList(nn.Linear(d_code, d_recon, bias=False) for _ in range(levels))
        self.word = nn.Embedding(n_vocab, d_recon)
        nn.init.normal_(self.word.weight, std=d_recon**-0.5)
        self.bias = nn.Parameter(torch.zeros(n_vocab))
        self.start = nn.Parameter(torch.zeros(d_recon))
        self.ln = nn.LayerNorm(d_recon)

    def forward(self, inputs: list[torch.Tensor], hints: torch.Tensor) -> torch.Tensor:
        """Shape: inputs t x [B, D] (codes or h, position order); hints float [B, V]
        multi-hot -> logits [B, V]."""
        n_hints = hints.sum(dim=1, keepdim=True).clamp(min=1.0)
        z = self.start + (hints @ self.word.weight) / n_hints  # (B, d_recon)
        for proj, v in zip(self.proj, inputs, strict=False):
            z = z + proj(v)
        return self.ln(z) @ self.word.weight.T + self.bias


class SemanticIndexer(nn.Module):
    """Encoder heads, per-position codebooks and the reconstructor (nanoGPT order)."""

    def __init__(self, p: IndexerParams, n_vocab: int) -> None:
        super().__init__()
        if p.levels < 1 or p.k < 2:
            raise ValueError(f"need levels >= 1 and k >= 2, got levels={p.levels}, k={p.k}")
        self.p = p
        self.n_vocab = n_vocab
        self.heads = nn.ModuleList(
            LevelHead(p.d_text + t * p.d_code, p.hidden, p.d_code, p.dropout)
            for t in range(p.levels)
        )
        self.codebooks = nn.ParameterList(
            nn.Parameter(F.normalize(torch.randn(p.k, p.d_code), dim=-1))
            for _ in range(p.levels)
        )
        self.recon = BowReconstructor(p.levels, p.d_code, p.d_recon, n_vocab)

    @property
    def levels(self) -> int:
        return self.p.levels

    def codebook(self, t: int) -> torch.Tensor:
        """Unit-norm codes of position t. Shape: [k, D]."""
        return F.normalize(self.codebooks[t], dim=-1)

    def code_embeddings(self, codes: torch.Tensor) -> list[torch.Tensor]:
        """Embeddings of fixed codes, one tensor per position. Shape: codes [B, t] -> t x [B, D]."""
        return [self.codebook(j)[codes[:, j]] for j in range(codes.shape[1])]

    def encode(self, x: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        """h_t for t = prev.shape[1]. Shape: x [B, d_text], prev int64 [B, t] -> [B, D]."""
        t = prev.shape[1]
        ctx = torch.cat([x.new_zeros(x.shape[0], 0), *self.code_embeddings(prev)], dim=-1)
        return self.heads[t](x, ctx)

    def quantize(self, h: torch.Tensor, t: int) -> Quantized:
        """Eq. 6: argmax forward, softmax-weighted codebook backward. Shape: h [B, D]."""
        book = self.codebook(t)  # (k, D)
        scores = h @ book.T  # (B, k)
        soft = torch.softmax(scores / self.p.tau, dim=-1) @ book
        codes = scores.argmax(dim=-1)
        hard = book[codes]
        return Quantized(soft + (hard - soft).detach(), codes, scores)

    def reconstruct(self, prev: torch.Tensor, current: torch.Tensor | None,
                    hints: torch.Tensor) -> torch.Tensor:
        """Logits over the vocabulary from fixed codes ``prev`` [B, t], the current
        position's vector (q_t, or h_t during the encoder warm-up; None = none) and hint
        words [B, V]. Shape: -> [B, V]."""
        inputs = self.code_embeddings(prev)
        if current is not None:
            inputs.append(current)
        return self.recon(inputs, hints)

    @torch.no_grad()
    def level_scores(self, x: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        """Cosine of h_t with each code of position t = prev.shape[1] (eval mode).

        Shape: x [B, d_text], prev [B, t] -> [B, k].
        """
        h = self.encode(x, prev)
        return h @ self.codebook(prev.shape[1]).T

    @torch.no_grad()
    def greedy_codes(self, x: torch.Tensor) -> torch.Tensor:
        """Unconstrained codes (argmax at every position, each conditioned on the ones
        before): what the auto-encoder alone says. Shape: [B, d_text] -> int64 [B, L]."""
        prev = x.new_zeros(x.shape[0], 0, dtype=torch.long)
        for _ in range(self.levels):
            prev = torch.cat([prev, self.level_scores(x, prev).argmax(-1, keepdim=True)], 1)
        return prev

    def freeze_level(self, t: int) -> None:
        """Position t is final: its head and codebook stop training (Algorithm 1)."""
        self.heads[t].requires_grad_(False)
        self.codebooks[t].requires_grad_(False)
