"""Progressive training of the semantic indexer (LMIndexer Algorithm 1, Sec. 3.2).

    reconstructor warm-up (hints only, Eq. 12)
    for t = 1..L:
        encoder warm-up: recon(c_<t, h_t) + contrastive       (no t-th codebook, Eq. 13)
        E^t <- k-means of {h_t}                                (against posterior collapse)
        full training: recon(c_<t, q_t) + contrastive + commitment            (Eq. 11)
        c_t <- capacity-aware argmax; freeze head_t and E^t    (earlier codes stay fixed)

Each phase optimises only what Algorithm 1 lets it: the reconstructor in the warm-up,
head t (+ E^t) and the reconstructor afterwards. Finished positions are frozen, so their
codes never move.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from tqdm.auto import tqdm

from indexer.cluster import kmeans
from training.lmindexer.assign import capacity_assign, group_caps, group_ids, hard_capacity
from training.lmindexer.config import AssignParams, IndexerParams, ScheduleParams
from training.lmindexer.losses import (
    commitment_loss,
    prefix_contrastive_loss,
    reconstruction_loss,
)
from training.lmindexer.model import SemanticIndexer
from training.lmindexer.stats import bag_matrix, macro_f1

log = logging.getLogger(__name__)

Phase = Literal["recon", "warmup", "full"]
EVAL_CHUNK = 2048


@dataclass(frozen=True)
class Corpus:
    """What the indexer learns from.

    Attributes:
        x: frozen sentence embeddings. Shape: float32 [n, d_text].
        bags: vocabulary word ids per item, -1 padded. Shape: int64 [n, W].
        n_vocab: vocabulary size V.
    """

    x: np.ndarray
    bags: np.ndarray
    n_vocab: int

    def __len__(self) -> int:
        return len(self.x)


@dataclass
class TrainOutput:
    """The trained indexer and what it did.

    Attributes:
        model: the indexer (eval mode, every position frozen).
        codes: stored codes after capacity-aware assignment. Shape: int64 [n, L].
        argmax: each position's unconstrained argmax given the stored prefix. Shape: [n, L].
        history: one row per epoch of every phase (loss parts).
        levels: per position: reassigned fraction, reconstruction F1, losses.
        recon_f1_no_codes: Macro-F1 of the warmed-up reconstructor without codes or hints.
    """

    model: SemanticIndexer
    codes: np.ndarray
    argmax: np.ndarray
    history: list[dict[str, Any]]
    levels: list[dict[str, Any]]
    recon_f1_no_codes: float


def hint_split(bags: torch.Tensor, ratio: float, n_vocab: int, gen: torch.Generator
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Random hint words (floor(ratio * |d|) per item) and the words left to predict.

    Shape: bags int64 [B, W] (-1 padded) -> hints, targets float multi-hot [B, V].
    """
    valid = bags >= 0
    n_hint = (ratio * valid.sum(dim=1)).floor().long()
    noise = torch.rand(bags.shape, generator=gen).masked_fill(~valid, 2.0)
    rank = noise.argsort(dim=1).argsort(dim=1)  # random order of each row's words
    hint = valid & (rank < n_hint[:, None])
    idx = bags.clamp(min=0)
    hints = torch.zeros(len(bags), n_vocab).scatter_add_(1, idx, hint.float())
    target = torch.zeros(len(bags), n_vocab).scatter_add_(1, idx, (valid & ~hint).float())
    return hints, target


def batches(n: int, groups: np.ndarray, batch_size: int, chunk: int, rng: np.random.Generator
            ) -> list[np.ndarray]:
    """One epoch of item batches in which same-prefix items come in runs of ``chunk``.

    Items are sorted by prefix (random order within a prefix), cut into runs of
    ``chunk`` and the runs shuffled, so a batch mixes ~batch_size/chunk prefixes and
    still holds same-prefix pairs for the contrastive loss at every depth.
    Shape: groups int [n] -> list of int64 index arrays.
    """
    order = np.lexsort((rng.random(n), groups))
    runs = [order[i: i + chunk] for i in range(0, n, chunk)]
    perm = np.concatenate([runs[j] for j in rng.permutation(len(runs))])
    return [perm[i: i + batch_size] for i in range(0, n, batch_size)]


def _hint_ratio(s: ScheduleParams, t: int) -> float:
    ratios = s.hint_ratios or (0.0,)
    return float(ratios[min(t, len(ratios) - 1)])


def _phase_parameters(model: SemanticIndexer, phase: Phase, t: int) -> list[torch.nn.Parameter]:
    params = list(model.recon.parameters())
    if phase != "recon":
        params += list(model.heads[t].parameters())
    if phase == "full":
        params.append(model.codebooks[t])
    return params


def run_phase(model: SemanticIndexer, corpus: Corpus, codes: np.ndarray, t: int, phase: Phase,
              epochs: int, s: ScheduleParams, rng: np.random.Generator, gen: torch.Generator,
              progress: bool) -> list[dict[str, Any]]:
    """Train one phase for ``epochs``; returns per-epoch mean loss parts.

    Shape: codes int64 [n, >= t] (positions < t are fixed and read, never written).
    """
    if epochs <= 0:
        return []
    opt = torch.optim.Adam(_phase_parameters(model, phase, t), lr=s.lr)
    x_all = torch.from_numpy(corpus.x)
    bags_all = torch.from_numpy(corpus.bags)
    prev_all = torch.from_numpy(codes[:, :t].astype(np.int64))
    groups = group_ids(codes[:, :t])
    group_t = torch.from_numpy(groups)
    ratio = _hint_ratio(s, 0 if phase == "recon" else t)
    n_batches = -(-len(corpus) // s.batch_size)
    bar = tqdm(total=epochs * n_batches, desc=f"{phase} level {t + 1}" if phase != "recon"
               else "recon warm-up", disable=not progress, leave=False)
    rows = []
    model.train()
    for epoch in range(epochs):
        sums: dict[str, float] = {}
        used = torch.zeros(model.p.k)
        last_h = None
        for idx_np in batches(len(corpus), groups, s.batch_size, s.group_chunk, rng):
            idx = torch.from_numpy(idx_np)
            hints, target = hint_split(bags_all[idx], ratio, corpus.n_vocab, gen)
            parts: dict[str, torch.Tensor] = {}
            if phase == "recon":
                parts["recon"] = reconstruction_loss(model.recon([], hints), target)
            else:
                prev = prev_all[idx]
                h = model.encode(x_all[idx], prev)  # (B, D)
                parts["contrastive"] = prefix_contrastive_loss(h, group_t[idx], s.tau_contrastive)
                if phase == "warmup":
                    current = h
                else:
                    qz = model.quantize(h, t)
                    current = qz.q
                    chosen = model.codebook(t)[qz.codes]
                    parts["commitment"] = commitment_loss(h, chosen, s.beta)
                    used += torch.bincount(qz.codes, minlength=model.p.k).float()
                    last_h = h.detach()
                parts["recon"] = reconstruction_loss(
                    model.reconstruct(prev, current, hints), target)
            loss = (parts["recon"] + s.lambda_contrastive * parts.get("contrastive", 0.0)
                    + s.lambda_commitment * parts.get("commitment", 0.0))
            opt.zero_grad()
            loss.backward()
            opt.step()
            for name, v in parts.items():
                sums[name] = sums.get(name, 0.0) + float(v.detach()) * len(idx)
            bar.update()
        row = {"phase": phase, "level": t + 1 if phase != "recon" else 0, "epoch": epoch + 1,
               **{k: round(v / len(corpus), 5) for k, v in sums.items()}}
        if phase == "full":
            dead = torch.nonzero(used == 0).flatten()
            row["dead_codes"] = int(len(dead))
            if s.reinit_dead and len(dead) and last_h is not None:
                pick = torch.randint(len(last_h), (len(dead),), generator=gen)
                with torch.no_grad():
                    model.codebooks[t][dead] = last_h[pick]
        rows.append(row)
        log.debug("%s", row)
    bar.close()
    model.eval()
    return rows


@torch.no_grad()
def all_h(model: SemanticIndexer, x: np.ndarray, prev: np.ndarray) -> np.ndarray:
    """h_t of every item in eval mode. Shape: x [n, d_text], prev [n, t] -> [n, D]."""
    model.eval()
    out = [model.encode(torch.from_numpy(x[i: i + EVAL_CHUNK]),
                        torch.from_numpy(prev[i: i + EVAL_CHUNK].astype(np.int64)))
           for i in range(0, len(x), EVAL_CHUNK)]
    return torch.cat(out).numpy()


def kmeans_init(model: SemanticIndexer, h: np.ndarray, t: int, rng: np.random.Generator) -> None:
    """E^t <- unit-norm k-means centres of {h_t}; empty clusters take random h_t."""
    k = model.p.k
    labels = kmeans(h, k, rng)
    centres = h[rng.integers(len(h), size=k)].copy()
    for j in range(k):
        members = h[labels == j]
        if len(members):
            centres[j] = members.mean(axis=0)
    with torch.no_grad():
        model.codebooks[t].copy_(torch.nn.functional.normalize(torch.from_numpy(centres), dim=-1))


@torch.no_grad()
def reconstruction_f1(model: SemanticIndexer, corpus: Corpus, codes: np.ndarray
                      ) -> tuple[float, float]:
    """Macro/micro-F1 of rebuilding each item's words from ``codes`` alone (no hints).

    Shape: codes [n, t] (t = 0: the reconstructor's prior alone).
    """
    model.eval()
    logits, targets = [], []
    for i in range(0, len(corpus), EVAL_CHUNK):
        prev = torch.from_numpy(codes[i: i + EVAL_CHUNK].astype(np.int64))
        zeros = torch.zeros(len(prev), corpus.n_vocab)
        logits.append(model.reconstruct(prev, None, zeros))
        targets.append(bag_matrix(corpus.bags[i: i + EVAL_CHUNK], corpus.n_vocab))
    return macro_f1(torch.cat(logits), torch.cat(targets))


def assign_level(model: SemanticIndexer, x: np.ndarray, codes: np.ndarray, t: int,
                 a: AssignParams) -> tuple[np.ndarray, np.ndarray]:
    """Capacity-aware codes of position t given the stored prefix (see assign.py).

    Shape: codes [n, >= t] -> (assigned, argmax) int64 [n].
    """
    h = all_h(model, x, codes[:, :t])
    scores = h @ model.codebook(t).detach().numpy().T  # (n, k)
    groups = group_ids(codes[:, :t])
    cap = hard_capacity(model.p.k, model.levels, t, a.max_collision)
    caps = group_caps(np.bincount(groups), model.p.k, cap, a.slack)
    return capacity_assign(scores, groups, caps), scores.argmax(axis=1)


@torch.no_grad()
def prefix_argmax(model: SemanticIndexer, x: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Each position's unconstrained argmax given the stored codes before it (what the
    capacity-aware assignment started from). Shape: x [n, d_text], codes [n, L] -> [n, L]."""
    out = np.zeros_like(codes)
    for t in range(model.levels):
        h = all_h(model, x, codes[:, :t])
        out[:, t] = (h @ model.codebook(t).numpy().T).argmax(axis=1)
    return out


def train_indexer(corpus: Corpus, p: IndexerParams, s: ScheduleParams, a: AssignParams,
                  progress: bool | None = None) -> TrainOutput:
    """Algorithm 1 end to end; ``p.levels`` must be resolved (>= 1)."""
    progress = s.progress if progress is None else progress
    torch.manual_seed(s.seed)
    rng = np.random.default_rng(s.seed)
    gen = torch.Generator().manual_seed(s.seed)
    n = len(corpus)
    if n > p.k ** p.levels * a.max_collision:
        raise ValueError(f"{n} items do not fit k**levels * max_collision = {p.k}**{p.levels}"
                         f" * {a.max_collision}: raise model.levels or assign.max_collision")
    model = SemanticIndexer(p, corpus.n_vocab)
    codes = np.zeros((n, p.levels), np.int64)
    argmax = np.zeros((n, p.levels), np.int64)
    history = run_phase(model, corpus, codes, 0, "recon", s.recon_warmup_epochs, s, rng, gen,
                        progress)
    f1_prior, _ = reconstruction_f1(model, corpus, codes[:, :0])
    log.info("reconstructor warm-up: Macro-F1 without codes %.4f", f1_prior)
    levels = []
    for t in range(p.levels):
        history += run_phase(model, corpus, codes, t, "warmup", s.encoder_warmup_epochs, s,
                             rng, gen, progress)
        kmeans_init(model, all_h(model, corpus.x, codes[:, :t]), t, rng)
        full = run_phase(model, corpus, codes, t, "full", s.epochs, s, rng, gen, progress)
        history += full
        codes[:, t], argmax[:, t] = assign_level(model, corpus.x, codes, t, a)
        model.freeze_level(t)
        f1, micro = reconstruction_f1(model, corpus, codes[:, : t + 1])
        last = full[-1] if full else {}
        levels.append({
            "level": t + 1,
            "reassigned": round(float((codes[:, t] != argmax[:, t]).mean()), 4),
            "recon_macro_f1": round(f1, 4),
            "recon_micro_f1": round(micro, 4),
            **{f"final_{k}": v for k, v in last.items()
               if k in ("recon", "contrastive", "commitment", "dead_codes")},
        })
        log.info("level %d: %s", t + 1, levels[-1])
    model.eval()
    return TrainOutput(model, codes, argmax, history, levels, round(f1_prior, 4))
