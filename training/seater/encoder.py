"""The reference code's history encoder: a standard post-LN Transformer encoder layer.

SEATER's authors encode the history with ``nn.TransformerEncoderLayer(d_model, nhead,
dim_feedforward, dropout, activation="gelu")`` (``model/SEATER.py``, ``Encoder``): the
residual sum is normalised *after* each sublayer, GELU in the feed-forward, dropout on
the attention weights, inside the feed-forward and on both residual branches, no
dropout on the input and no final LayerNorm. This module is that layer written out with
the project's attention (``training.layers.SelfAttention``) so it exports to ONNX like
the rest, plus the project's padding rules: positions count back from the most recent
item and padded keys are masked, so states at real positions do not depend on how much
left padding a batch has (the service caches them per request).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from training.layers import SelfAttention


class PostNormBlock(nn.Module):
    """x <- LN(x + drop(attn(x))); x <- LN(x + drop(W2 drop(gelu(W1 x))))."""

    def __init__(self, d_model: int, n_heads: int, ff_mult: int, dropout: float) -> None:
        super().__init__()
        self.attn = SelfAttention(d_model, n_heads, dropout)  # dropout on attention weights
        self.ln_attn = nn.LayerNorm(d_model)
        self.fc1 = nn.Linear(d_model, ff_mult * d_model)
        self.fc2 = nn.Linear(ff_mult * d_model, d_model)
        self.ln_ff = nn.LayerNorm(d_model)
        self.drop = nn.Dropout(dropout)
        # as nn.MultiheadAttention initialises its projections
        nn.init.xavier_uniform_(self.attn.qkv.weight)
        nn.init.zeros_(self.attn.qkv.bias)
        nn.init.zeros_(self.attn.out.bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Shape: x [B, T, d]; mask bool [B, 1, T, T] (True = may attend) -> [B, T, d]."""
        x = self.ln_attn(x + self.drop(self.attn(x, x, mask)))
        return self.ln_ff(x + self.drop(self.fc2(self.drop(F.gelu(self.fc1(x))))))


class TransformerEncoder(nn.Module):
    """Item-embedding sequence -> contextual states; same call as ``SequenceEncoder``."""

    def __init__(self, d_model: int, n_layers: int, n_heads: int, dropout: float,
                 max_len: int, causal: bool = False, ff_mult: int = 4,
                 scale_input: bool = False) -> None:
        super().__init__()
        self.max_len = max_len
        self.causal = causal
        self.scale = math.sqrt(d_model) if scale_input else 1.0
        self.pos = nn.Embedding(max_len, d_model)
        self.blocks = nn.ModuleList(
            PostNormBlock(d_model, n_heads, ff_mult, dropout) for _ in range(n_layers)
        )

    def forward(self, emb: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """Shape: emb [B, T, d] item embeddings (T <= max_len, left-padded); real bool [B, T]."""
        t = emb.shape[1]
        pos = torch.arange(t, device=emb.device) + (self.max_len - t)  # right-aligned
        keep = real.unsqueeze(-1).to(emb.dtype)
        x = (emb * self.scale + self.pos(pos)) * keep
        eye = torch.eye(t, dtype=torch.bool, device=emb.device)
        allowed = real[:, None, None, :] | eye  # a padded query attends to itself: no NaN
        if self.causal:
            allowed = allowed & torch.ones(t, t, dtype=torch.bool, device=emb.device).tril()
        for block in self.blocks:
            x = block(x, allowed) * keep
        return x
