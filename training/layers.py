"""Transformer pieces shared by SASRec and SEATER's encoder.

The block follows the original SASRec exactly (Kang & McAuley 2018, and the PyTorch port
every benchmark uses): the *normalised* sequence is the attention query and residual,
the raw sequence the keys/values; a point-wise feed-forward with its own residual; a
final LayerNorm. Two deliberate differences, both to make outputs independent of how
much left padding a batch has (batches are trimmed to their longest row, and the service
caches per-request states): positions are right-aligned (the most recent item always has
the same position embedding) and padded keys are masked out of attention.

``mask_padded_keys=False`` restores the original behaviour (RecTools' default too): left
padding stays visible to attention as zero vectors, whose keys and values are the
projections' biases, so a short history puts more weight on that learned "nothing here"
slot. Outputs then depend on the padded length, so such a model must always see
``max_len`` inputs.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class SelfAttention(nn.Module):
    def __init__(self, d_model: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} must be divisible by n_heads={n_heads}")
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.dropout = dropout

    def forward(self, query: torch.Tensor, kv: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Shape: query, kv [B, T, d]; mask bool [B, 1, T, T] (True = may attend) -> [B, T, d]."""
        b, t, d = query.shape
        h = self.n_heads
        w_q, w_kv = self.qkv.weight.split([d, 2 * d])
        b_q, b_kv = self.qkv.bias.split([d, 2 * d])
        q = F.linear(query, w_q, b_q).view(b, t, h, d // h).transpose(1, 2)  # (B, h, T, dh)
        k, v = F.linear(kv, w_kv, b_kv).split(d, dim=-1)
        k = k.view(b, t, h, d // h).transpose(1, 2)  # (B, h, T, dh)
        v = v.view(b, t, h, d // h).transpose(1, 2)  # (B, h, T, dh)
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        return self.out(y.transpose(1, 2).reshape(b, t, d))


class FeedForward(nn.Module):
    def __init__(self, d_model: int, mult: int, dropout: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d_model, mult * d_model)
        self.fc2 = nn.Linear(mult * d_model, d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop(self.fc2(self.drop(F.relu(self.fc1(x)))))


class SASRecBlock(nn.Module):
    def __init__(self, d_model: int, n_heads: int, dropout: float, ff_mult: int) -> None:
        super().__init__()
        self.ln_attn = nn.LayerNorm(d_model, eps=1e-8)
        self.attn = SelfAttention(d_model, n_heads, dropout)
        self.ln_ff = nn.LayerNorm(d_model, eps=1e-8)
        self.ff = FeedForward(d_model, ff_mult, dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """Shape: x [B, T, d]; mask [B, 1, T, T]; keep float [B, T, 1] (0 at padding)."""
        q = self.ln_attn(x)
        x = q + self.attn(q, x, mask)
        x = self.ff(self.ln_ff(x))
        return x * keep


class SequenceEncoder(nn.Module):
    """Item-embedding sequence -> contextual states (SASRec's stack, causal or not)."""

    def __init__(
        self,
        d_model: int,
        n_layers: int,
        n_heads: int,
        dropout: float,
        max_len: int,
        causal: bool = True,
        ff_mult: int = 1,
        scale_input: bool = True,
        mask_padded_keys: bool = True,
    ) -> None:
        super().__init__()
        self.max_len = max_len
        self.causal = causal
        self.scale = math.sqrt(d_model) if scale_input else 1.0
        self.mask_padded_keys = mask_padded_keys
        self.pos = nn.Embedding(max_len, d_model)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            SASRecBlock(d_model, n_heads, dropout, ff_mult) for _ in range(n_layers)
        )
        self.ln_out = nn.LayerNorm(d_model, eps=1e-8)

    def forward(self, emb: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """Shape: emb [B, T, d] item embeddings (T <= max_len, left-padded); real bool [B, T]."""
        t = emb.shape[1]
        pos = torch.arange(t, device=emb.device) + (self.max_len - t)  # right-aligned
        x = self.drop(emb * self.scale + self.pos(pos))
        keep = real.unsqueeze(-1).to(x.dtype)
        x = x * keep
        if self.mask_padded_keys:
            eye = torch.eye(t, dtype=torch.bool, device=emb.device)
            allowed = real[:, None, None, :] | eye  # a padded query attends to itself: no NaN
        else:  # padded keys stay visible as zero vectors; callers must pad to max_len
            allowed = torch.ones(1, 1, t, t, dtype=torch.bool, device=emb.device)
        if self.causal:
            allowed = allowed & torch.ones(t, t, dtype=torch.bool, device=emb.device).tril()
        for block in self.blocks:
            x = block(x, allowed, keep)
        return self.ln_out(x)
