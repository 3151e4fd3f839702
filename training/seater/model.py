"""SEATER (Si et al., SIGIR-AP 2024): encode the history, decode the item's tree path.

Tokens are tree nodes: one embedding row per node (``node_emb``), so a leaf token *is*
its item's embedding and the encoder reads the history through the same table. The
decoder predicts the next node with a softmax over only the current node's k children
(eq. 4): their embeddings are gathered and dotted with the decoder state.

Layout for decoding is ``[B, W, t]``: B requests (or training examples), W rows per
request (beam rows, or the positive and its ranking negatives), t prefix tokens. Rows
of one request share its memory, so cross-attention runs as ``[B, H, W*t, T]`` batched
matmuls against keys/values projected once per request (``memory_kv``), never copied
per row. Padding is -1 everywhere (history, paths), so the embedding table can grow
(inserted items) without a padding row moving.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from training.layers import SequenceEncoder
from training.seater.encoder import TransformerEncoder

NEG = -1e9  # finite "minus infinity": fully masked rows stay NaN-free in ONNX Runtime too


@dataclass(frozen=True)
class SeaterParams:
    """Architecture (paper setting: d=64, 1 encoder + 1 decoder layer, 2 heads). The
    decoder is the paper's single layer: inference decodes it deduplicated
    (``Seater._decode_last``), a path that holds for one layer only.

    The encoder is SASRec's stack (causal by default, one head) so a trained SASRec can
    initialise it; the paper's bidirectional encoder is ``encoder_causal=False``, and
    ``encoder_block="transformer"`` is the reference code's post-LN GELU layer
    (``seater.encoder``). The defaults are the project's; ``training.seater.presets``
    holds the reference configuration (``docs/seater_reference.md``).
    """

    max_len: int = 50
    d_model: int = 64
    enc_layers: int = 1
    n_heads: int = 2
    enc_heads: int = 1  # as SASRec's, so its encoder weights carry over unchanged
    dropout: float = 0.2
    enc_ff_mult: int = 1
    dec_ff_mult: int = 4
    encoder_causal: bool = True
    encoder_block: Literal["sasrec", "transformer"] = "sasrec"
    # token embeddings times sqrt(d) before positions are added (encoder and decoder);
    # the reference adds N(0, 1) embeddings unscaled (scale_input=False, emb_init_std=1)
    scale_input: bool = True
    # False: left padding stays visible to the encoder's attention as zero vectors, as in
    # a RecTools-style SASRec whose encoder initialises this one (the history is then
    # padded to max_len inside ``encode``, so states never depend on a batch's padding)
    mask_padded_keys: bool = True
    emb_init_std: float = 0.0  # 0: d**-0.5
    # ranking score inputs: a Linear(d, d) on encoder and on decoder states before the
    # mean pooling (the reference's encode_linaer / decode_linear), W_s initialisation
    rank_heads: bool = False
    rank_w_init: Literal["eye_over_d", "xavier"] = "eye_over_d"
    # one decoder dropout mask for the positive and its negatives (see row_dropout); the
    # reference draws them independently
    dec_dropout_shared_rows: bool = False


def row_dropout(drop: nn.Dropout, x: torch.Tensor, shared_rows: bool) -> torch.Tensor:
    """Dropout on decoder activations; with ``shared_rows`` the W rows of an example (the
    positive and its ranking negatives) get the same mask, so their scores differ only
    by what their paths differ in, not by independent noise that drowns it.

    Shape: x [B, W, t, d] -> [B, W, t, d].
    """
    if not (shared_rows and drop.training and drop.p > 0):
        return drop(x)
    keep = torch.empty_like(x[:, :1]).bernoulli_(1 - drop.p)  # (B, 1, t, d)
    return x * keep / (1 - drop.p)


class DecoderLayer(nn.Module):
    """Pre-LN: causal self-attention over the prefix, cross-attention, feed-forward."""

    def __init__(self, d: int, n_heads: int, ff_mult: int, dropout: float,
                 shared_rows: bool = False) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.shared_rows = shared_rows
        self.ln_self = nn.LayerNorm(d)
        self.self_qkv = nn.Linear(d, 3 * d)
        self.self_out = nn.Linear(d, d)
        self.ln_cross = nn.LayerNorm(d)
        self.cross_q = nn.Linear(d, d)
        self.cross_kv = nn.Linear(d, 2 * d)  # applied to the memory, once per request
        self.cross_out = nn.Linear(d, d)
        self.ln_ff = nn.LayerNorm(d)
        # Dropout sits on the residual branches only: masks on attention weights and the
        # FFN's inner activations cost ~20% of a CPU training step (bernoulli sampling).
        self.ff = nn.Sequential(nn.Linear(d, ff_mult * d), nn.GELU(), nn.Linear(ff_mult * d, d))
        self.drop = nn.Dropout(dropout)

    def memory_kv(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Shape: memory [B, T, d] -> k, v [B, H, T, dh]."""
        b, t, d = memory.shape
        k, v = self.cross_kv(memory).chunk(2, dim=-1)
        k = k.reshape(b, t, self.n_heads, d // self.n_heads).transpose(1, 2)
        v = v.reshape(b, t, self.n_heads, d // self.n_heads).transpose(1, 2)
        return k, v

    def forward(self, x: torch.Tensor, mem_k: torch.Tensor, mem_v: torch.Tensor,
                mem_bias: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: every position of every row.

        Shape: x [B, W, t, d]; mem_k, mem_v [B, H, T, dh]; mem_bias [B, T] -> [B, W, t, d].
        """
        return self.cross_block(self.self_block(x), mem_k, mem_v, mem_bias)

    def self_block(self, x: torch.Tensor) -> torch.Tensor:
        """Causal self-attention within each row's prefix. Shape: [B, W, t, d] -> same."""
        b, w, t, d = x.shape
        h, dh = self.n_heads, d // self.n_heads
        q, k, v = self.self_qkv(self.ln_self(x)).chunk(3, dim=-1)
        q = q.reshape(b, w, t, h, dh).transpose(2, 3)  # (B, W, h, t, dh)
        k = k.reshape(b, w, t, h, dh).transpose(2, 3)
        v = v.reshape(b, w, t, h, dh).transpose(2, 3)
        # explicit attention: SDPA's ONNX conversion takes 4-D tensors only
        scores = q @ k.transpose(-1, -2) / math.sqrt(dh)  # (B, W, h, t, t)
        causal = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
        att = torch.softmax(scores.masked_fill(~causal, NEG), dim=-1) @ v  # (B, W, h, t, dh)
        out = self.self_out(att.transpose(2, 3).reshape(b, w, t, d))
        return x + row_dropout(self.drop, out, self.shared_rows)

    def attend_prefix_last(self, x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """``self_block`` at the last position only, over distinct tokens: inference.

        ``x`` holds each distinct (node, position) token once; ``tokens`` spells every
        distinct prefix as rows into it, so LayerNorm and the K/V projections run once per
        token however many prefixes share it, and the query only for the last position.
        Shape: x [V, d]; tokens int64 [U, t] -> [U, d].
        """
        u, t = tokens.shape
        d = x.shape[-1]
        h, dh = self.n_heads, d // self.n_heads
        w_q, w_k, w_v = self.self_qkv.weight.split(d)
        b_q, b_k, b_v = self.self_qkv.bias.split(d)
        xn = self.ln_self(x)
        # F.embedding as a row gather: it exports to Gather (indexing gives GatherND, 5x slower)
        k = F.embedding(tokens, F.linear(xn, w_k, b_k)).reshape(u, t, h, dh)
        v = F.embedding(tokens, F.linear(xn, w_v, b_v)).reshape(u, t, h, dh)
        last = tokens[:, -1]
        q = F.linear(F.embedding(last, xn), w_q, b_q).reshape(u, 1, h, dh)
        att = torch.softmax((q * k).sum(-1) / math.sqrt(dh), dim=1)  # (U, t, h)
        ctx = (att.unsqueeze(-1) * v).sum(1).reshape(u, d)  # (U, d)
        return F.embedding(last, x) + self.drop(self.self_out(ctx))

    def cross_block(self, x: torch.Tensor, mem_k: torch.Tensor, mem_v: torch.Tensor,
                    mem_bias: torch.Tensor) -> torch.Tensor:
        """Cross-attention (every row of request b reads request b's memory), feed-forward.

        Linear layers see 2-D [rows, d] inputs: ONNX Runtime then runs each as one GEMM
        with the bias fused (on 4-D inputs it adds the bias as a separate pass).
        Shape: x [B, W, t, d]; mem_k, mem_v [B, H, T, dh]; mem_bias [B, T] -> [B, W, t, d].
        """
        b, w, t, d = x.shape
        h, dh = self.n_heads, d // self.n_heads
        flat = x.reshape(b * w * t, d)
        qc = self.cross_q(self.ln_cross(flat)).reshape(b, w * t, h, dh).transpose(1, 2)
        logits = qc @ mem_k.transpose(-1, -2) / math.sqrt(dh)  # (B, h, W*t, T)
        probs = torch.softmax(logits + mem_bias[:, None, None, :], dim=-1)
        ctx = (probs @ mem_v).transpose(1, 2).reshape(b * w * t, d)
        flat = flat + self._drop(self.cross_out(ctx), b, w, t)
        flat = flat + self._drop(self.ff(self.ln_ff(flat)), b, w, t)
        return flat.reshape(b, w, t, d)

    def _drop(self, flat: torch.Tensor, b: int, w: int, t: int) -> torch.Tensor:
        """``row_dropout`` on rows kept 2-D. Shape: [B*W*t, d] -> [B*W*t, d]."""
        if not self.shared_rows:
            return self.drop(flat)
        return row_dropout(self.drop, flat.reshape(b, w, t, -1), True).reshape(flat.shape)


def dedupe(keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One representative per distinct key: sort, mark run starts, scatter group ids back.

    O(N log N) in the number of keys and independent of the id range, so it costs the
    same on a 1M-item tree (a scatter into a table indexed by node id would clear
    n_nodes slots every step; ONNX Runtime's Unique is ~3x slower at 3,200 keys).
    Shape: keys int64 [N] -> reps int64 [U] (positions in keys, one per distinct key),
    inverse int64 [N] with keys == keys[reps][inverse].
    """
    ordered, order = torch.sort(keys)
    first = torch.cat([torch.ones(1, dtype=torch.bool, device=keys.device),
                       ordered[1:] != ordered[:-1]])  # (N,) a new key starts here
    group = torch.cumsum(first.long(), 0) - 1  # (N,) group id, in sorted order
    reps = order.index_select(0, torch.nonzero(first)[:, 0])
    inverse = torch.zeros_like(group).scatter(0, order, group)  # back to input order
    return reps, inverse


class Seater(nn.Module):
    def __init__(self, n_nodes: int, max_depth: int, root: int, p: SeaterParams) -> None:
        super().__init__()
        self.p = p
        self.n_nodes = n_nodes
        self.max_depth = max_depth
        self.root_id = root  # the start token of every identifier
        d = p.d_model
        self.node_emb = nn.Embedding(n_nodes, d)
        nn.init.normal_(self.node_emb.weight, std=p.emb_init_std or d**-0.5)
        self.in_scale = math.sqrt(d) if p.scale_input else 1.0
        if p.encoder_block == "transformer":
            if not p.mask_padded_keys:
                raise ValueError("model.mask_padded_keys=false needs the SASRec encoder block "
                                 "(model.encoder_block=sasrec)")
            self.encoder: nn.Module = TransformerEncoder(
                d, p.enc_layers, p.enc_heads, p.dropout, p.max_len, causal=p.encoder_causal,
                ff_mult=p.enc_ff_mult, scale_input=p.scale_input)
        else:
            self.encoder = SequenceEncoder(d, p.enc_layers, p.enc_heads, p.dropout, p.max_len,
                                           causal=p.encoder_causal, ff_mult=p.enc_ff_mult,
                                           scale_input=p.scale_input,
                                           mask_padded_keys=p.mask_padded_keys)
        self.dec_pos = nn.Embedding(max_depth + 1, d)
        self.dec_drop = nn.Dropout(p.dropout)
        # a list of the one layer, so checkpoints keep their parameter names (layers.0.*)
        self.layers = nn.ModuleList(
            [DecoderLayer(d, p.n_heads, p.dec_ff_mult, p.dropout, p.dec_dropout_shared_rows)])
        self.ln_out = nn.LayerNorm(d)
        # W_s of the ranking score σ(pᵀ W_s q). I/d: with the identity, pᵀq of pooled
        # states is tens, σ saturates and the loss has no gradient. Xavier is the
        # reference's; it starts the logits wide (docs/seater_reference.md).
        if p.rank_w_init == "xavier":
            w = nn.init.xavier_normal_(torch.empty(d, d))
        else:
            w = torch.eye(d) / d
        self.rank_w = nn.Parameter(w)
        self.rank_enc = nn.Linear(d, d) if p.rank_heads else None
        self.rank_dec = nn.Linear(d, d) if p.rank_heads else None

    def with_node_table(self, table: np.ndarray | torch.Tensor) -> Seater:
        """A copy (eval mode) whose node-embedding table is ``table``, e.g. with rows for
        nodes a cold-start insertion appended; every other weight is shared by value.
        Shape: table [n_nodes', d]."""
        grown = copy.deepcopy(self)
        grown.node_emb = nn.Embedding.from_pretrained(torch.as_tensor(table, dtype=torch.float32),
                                                      freeze=False)
        grown.n_nodes = int(grown.node_emb.weight.shape[0])
        return grown.eval()

    # ----------------------------------------------------------------- encoder
    def encode(self, history: torch.Tensor, node_emb: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Shape: history int64 [B, T] leaf node ids, -1 = padding -> states [B, T, d],
        real bool [B, T]."""
        table = self.node_emb.weight if node_emb is None else node_emb
        t = history.shape[1]
        if not self.p.mask_padded_keys:
            history = F.pad(history, (self.p.max_len - t, 0), value=-1)
        real = history >= 0
        states = self.encoder(F.embedding(history.clamp(min=0), table), real)
        return states[:, -t:], real[:, -t:]

    def memory(self, states: torch.Tensor, real: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-request cross-attention inputs of the decoder layer, with a leading layers
        axis of one: the bundle's encoder graph and the service keep that layout.

        Shape: states [B, T, d] -> mem_k, mem_v [1, B, H, T, dh], mem_bias [B, T].
        """
        mem_k, mem_v = self.layers[0].memory_kv(states)
        bias = torch.zeros(real.shape, dtype=states.dtype, device=states.device)
        # stacked: a contiguous copy, as before; the strides choose the matmul kernel, and
        # with it the last bits of a training run
        return torch.stack([mem_k]), torch.stack([mem_v]), bias.masked_fill(~real, NEG)

    # ----------------------------------------------------------------- decoder
    def decode(self, prefix: torch.Tensor, mem_k: torch.Tensor, mem_v: torch.Tensor,
               mem_bias: torch.Tensor, last_only: bool = False,
               node_emb: torch.Tensor | None = None) -> torch.Tensor:
        """Decoder states of every position, or with ``last_only`` of the newest one
        (``_decode_last``). Shape: prefix int64 [B, W, t] (-1 = padding) -> [B, W, t', d]
        with t' = 1 when ``last_only``."""
        table = self.node_emb.weight if node_emb is None else node_emb
        if last_only:
            h, _, _ = self._decode_last(prefix, mem_k, mem_v, mem_bias, table)
            return h.reshape(*prefix.shape[:2], 1, -1)
        t = prefix.shape[-1]
        x = F.embedding(prefix.clamp(min=0), table) * self.in_scale
        x = row_dropout(self.dec_drop, x + self.dec_pos(torch.arange(t, device=prefix.device)),
                        self.p.dec_dropout_shared_rows)
        return self.ln_out(self.layers[0](x, mem_k[0], mem_v[0], mem_bias))

    def _decode_last(self, prefix: torch.Tensor, mem_k: torch.Tensor, mem_v: torch.Tensor,
                     mem_bias: torch.Tensor, table: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``decode(last_only=True)``, deduplicated.

        Up to the cross-attention a row's state depends only on its prefix, and a prefix
        (a root path, no padding) is fixed by its last node: the beams of 64 requests
        hold 3,200 rows but only the tree's few hundred nodes of that depth. So the
        embeddings, self-attention and its projections run once per distinct token and
        prefix; only cross-attention and feed-forward run per row. Same numbers as
        teacher forcing (tests/training check it).
        Shape: prefix [B, W, t] -> states [B*W, d], reps int64 [U] (a row per distinct
        last node), inverse int64 [B*W] (row -> its distinct last node).
        """
        b, w, t = prefix.shape
        d = self.p.d_model
        rows = prefix.reshape(b * w, t).clamp(min=0)
        reps, inverse = dedupe(rows[:, -1])  # (U,), (R,)
        paths = F.embedding(reps, rows)  # (U, t) one prefix per distinct last node
        pos = torch.arange(t, device=rows.device).expand(paths.shape[0], t)
        keys = (paths * t + pos).reshape(-1)  # (U*t,) one key per (node, position)
        tok_reps, tok_inverse = dedupe(keys)  # (V,), (U*t,)
        x = F.embedding(paths.reshape(-1).index_select(0, tok_reps), table) * self.in_scale
        x = self.dec_drop(x + self.dec_pos(pos.reshape(-1).index_select(0, tok_reps)))
        x = self.layers[0].attend_prefix_last(x, tok_inverse.reshape(-1, t))  # (U, d)
        x = F.embedding(inverse, x).reshape(b, w, 1, d)  # back to rows
        x = self.layers[0].cross_block(x, mem_k[0], mem_v[0], mem_bias)
        return self.ln_out(x.reshape(b * w, d)), paths[:, -1], inverse

    def child_logits(self, states: torch.Tensor, nodes: torch.Tensor, children: torch.Tensor,
                     node_emb: torch.Tensor | None = None) -> torch.Tensor:
        """Eq. 4 before the softmax: scores of each node's children only.

        Shape: states [..., d]; nodes int64 [...]; children int64 [n_nodes, k] -> [..., k]
        with NEG at padded child slots.
        """
        table = self.node_emb.weight if node_emb is None else node_emb
        kids = children[nodes.clamp(min=0)]  # (..., k)
        emb = F.embedding(kids.clamp(min=0), table)  # (..., k, d)
        logits = (emb @ states.unsqueeze(-1)).squeeze(-1)
        return logits.masked_fill(kids < 0, NEG)

    def step(self, prefix: torch.Tensor, mem_k: torch.Tensor, mem_v: torch.Tensor,
             mem_bias: torch.Tensor, children: torch.Tensor,
             node_emb: torch.Tensor | None = None) -> torch.Tensor:
        """One beam-search step: log-probs over the children of each row's last node.

        This is the graph ``decoder.onnx`` holds. Shape: prefix [B, W, t] -> [B, W, k].
        Rows are root paths (what the beam search sends); ``-1`` padding is not expected.
        """
        table = self.node_emb.weight if node_emb is None else node_emb
        b, w, _ = prefix.shape
        k = children.shape[1]
        h, last, inverse = self._decode_last(prefix, mem_k, mem_v, mem_bias, table)
        # Score only up to the widest used child slot: parents of leaves in a balanced
        # tree have ~n/k^(L-1) children (3 of 16 on Beauty), the rest is -1 padding.
        kids = F.embedding(last, children)  # (U, k)
        used = ((kids >= 0) * torch.arange(1, k + 1, device=kids.device)).amax(dim=(0, 1))
        width = used.clamp(min=1).item()  # a SymInt when exported: no int()
        torch._check(width >= 1)
        torch._check(width <= k)
        kids = F.embedding(inverse, kids[:, :width])  # (R, width)
        emb = F.embedding(kids.clamp(min=0), table)  # (R, width, d)
        logits = (emb @ h.unsqueeze(-1)).squeeze(-1).masked_fill(kids < 0, NEG)
        logits = F.pad(logits, (0, k - width), value=NEG)  # back to the k slots
        return torch.log_softmax(logits, dim=-1).reshape(b, w, k)

    # ----------------------------------------------------------------- training
    def forward(self, history: torch.Tensor, paths: torch.Tensor, children: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Teacher-forced pass over the positive path (row 0) and other rows (ranking
        negatives, distilled paths).

        Shape: history [B, T]; paths int64 [B, W, L] node paths below the root (-1 padded);
        children [n_nodes, k].
        Returns child logits of every row [B, W, L, k] and the ranking score's inputs:
        pooled encoder states z_x [B, d] and pooled decoder states of every row z_y [B, W, d].
        """
        states, real = self.encode(history)
        mem_k, mem_v, bias = self.memory(states, real)
        b, w, depth = paths.shape
        root = paths.new_full((b, w, 1), self.root_id)
        prefix = torch.cat([root, paths[:, :, :-1]], dim=-1)  # (B, W, L)
        dec = self.decode(prefix, mem_k, mem_v, bias)
        logits = self.child_logits(dec, prefix, children)
        z_x, z_y = self.rank_inputs(states, real, dec, paths >= 0)
        return logits, z_x, z_y

    def rank_inputs(self, states: torch.Tensor, real: torch.Tensor, dec: torch.Tensor,
                    dec_real: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean-pooled encoder and decoder states (eq. 7), through the heads if any.

        A head applied after the mean equals the reference's head before it (the mean
        of affine maps is the affine map of the mean) and costs W times less.
        Shape: states [B, T, d]; real bool [B, T]; dec [B, W, L, d]; dec_real bool
        [B, W, L] -> z_x [B, d], z_y [B, W, d].
        """
        m = real.unsqueeze(-1).to(states.dtype)
        z_x = (states * m).sum(1) / m.sum(1).clamp(min=1)
        pm = dec_real.unsqueeze(-1).to(dec.dtype)
        z_y = (dec * pm).sum(2) / pm.sum(2).clamp(min=1)
        if self.rank_enc is not None and self.rank_dec is not None:
            z_x, z_y = self.rank_enc(z_x), self.rank_dec(z_y)
        return z_x, z_y
