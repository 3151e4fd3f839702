"""SEATER's training examples, multi-task loss and beam-search ranking (a trainer Task)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from indexer import IdTree, beam_search
from training.batching import length_batches
from training.config import ConfigError
from training.data.sequences import Sequences
from training.seater.distill import TreeTeacher, distillation_loss
from training.seater.losses import (
    GenReduction,
    RankForm,
    RankNegatives,
    alignment_loss,
    generation_loss,
    ranking_loss,
    sample_negatives,
)
from training.seater.model import Seater

SOFT_CACHE_BYTES = 2 << 30  # the distillation targets kept per example, at most


@dataclass(frozen=True)
class LossConfig:
    """Weights of eq. 9 and the knobs of the two contrastive tasks.

    The paper searches λ_a, λ_r in [0.01, 0.09], β in {1e-2, 1e-3, 1e-4}, q = 4. A
    weight of 0 switches a loss off without changing anything else a run draws or
    computes: the negatives are still sampled and decoded (``n_rank_negatives`` = 0
    skips them, for a cheaper run that is no ablation arm).
    """

    lambda_align: float = 0.05
    lambda_rank: float = 0.05
    tau: float = 0.1
    beta: float = 0.01
    n_rank_negatives: int = 4
    rank_cosine_scale: float = 0.0  # 0: the paper's σ(pᵀW q); > 0: see ranking_loss
    gen_reduction: GenReduction = "levels"
    align_mask_children: bool = True
    rank_form: RankForm = "sum"
    rank_negatives: RankNegatives = "levels"
    # distillation from the SASRec the run is built on (training.seater.distill): 0 = off,
    # no teacher is loaded; its temperature softens the teacher's item softmax
    lambda_distill: float = 0.0
    distill_temperature: float = 1.0
    # the teacher's m most likely items besides the target, distilled along their paths as
    # well: for this history the target's path shows the decoder only the nodes on it,
    # while the beam ranks the leaves under many others; their mean loss is added at the
    # weight of the target path's
    distill_top: int = 0


def check_losses(losses: LossConfig) -> None:
    """Settings no run can use, refused before the data is read or a tree is built (the
    task checks them again, for callers that build it directly)."""
    for key in ("lambda_align", "lambda_rank", "lambda_distill", "n_rank_negatives",
                "distill_top"):
        if getattr(losses, key) < 0:
            raise ConfigError(f"losses.{key} must be >= 0, got {getattr(losses, key)!r}")
    for key in ("tau", "distill_temperature"):
        if not getattr(losses, key) > 0:
            raise ConfigError(f"losses.{key} must be > 0, got {getattr(losses, key)!r}")
    if losses.distill_top and losses.lambda_distill <= 0:
        raise ConfigError(f"losses.distill_top={losses.distill_top} distils more of the "
                          "teacher's paths: it needs losses.lambda_distill > 0 as well")


class SeaterBatch(NamedTuple):
    """Example indices, and the seed of the batch's own sampling stream (ranking
    negatives): derived from the epoch and the batch's position, so whether a loss
    draws from it, or which process takes the batch, changes no other batch."""

    idx: np.ndarray
    seed: tuple[int, int]


class SeaterTask:
    """Every prefix of every training sequence is one example (history -> next item).

    Examples are (row, position) pairs into the training sequences; a batch gathers the
    most recent ``max_len`` items before the position, as leaf node ids (-1 padded).
    """

    def __init__(self, model: Seater, tree: IdTree, train: Sequences, device: torch.device,
                 losses: LossConfig, beam_size: int = 50,
                 teacher: TreeTeacher | None = None, exclude_seen: bool = True) -> None:
        check_losses(losses)
        if losses.lambda_distill > 0 and teacher is None:
            raise ValueError("losses.lambda_distill > 0 needs a teacher (the SASRec run)")
        self.model = model
        self.teacher = teacher
        self.exclude_seen = exclude_seen  # as the evaluation's search: for distill_top
        self.tree = tree
        self.device = device
        self.losses = losses
        self.beam_size = beam_size
        self.train = train
        min_history = 1  # every prefix with at least one item predicts its next one
        counts = np.maximum(train.lengths - min_history, 0)
        self.ex_row = np.repeat(np.arange(len(train)), counts)
        first = np.cumsum(counts) - counts
        self.ex_pos = np.arange(self.ex_row.size) - np.repeat(first, counts) + min_history
        self.ex_target = train.values[train.offsets[self.ex_row] + self.ex_pos]
        self.ex_len = np.minimum(self.ex_pos, model.p.max_len)
        self.item_leaf = tree.item_leaf.astype(np.int64)
        self.children = torch.from_numpy(tree.children.astype(np.int64)).to(device)
        self.parent = torch.from_numpy(tree.parent.astype(np.int64)).to(device)
        self.paths = tree.node_paths  # (N, L)
        self.slots = np.where(self.paths >= 0, tree.slot[np.maximum(self.paths, 0)], -1).astype(
            np.int64)
        self._soft: torch.Tensor | None = None  # teacher targets per example, filled as seen
        self._soft_items = np.zeros((0, 1 + losses.distill_top), np.int64)
        self._soft_known = np.zeros(0, bool)

    @classmethod
    def for_search(cls, model: Seater, tree: IdTree, beam_size: int,
                   device: torch.device | None = None) -> SeaterTask:
        """A task that only searches (evaluation, parity checks, diagnostics): no training
        examples and no losses, so a distilled run is searched without its teacher."""
        return cls(model, tree, Sequences.from_lists([]), device or torch.device("cpu"),
                   LossConfig(), beam_size=beam_size)

    # ------------------------------------------------------------------ batches
    def n_batches(self, batch_size: int) -> int:
        return -(-self.ex_row.size // batch_size)

    def examples_in(self, batch: SeaterBatch) -> int:
        return len(batch.idx)

    def batches(self, rng: np.random.Generator, batch_size: int) -> Iterator[SeaterBatch]:
        """Shuffled and length-bucketed (``training.batching``): examples of similar
        history length share a batch, so a batch is padded to about its own length
        instead of the longest history, most prefixes being a few items long.

        ``rng`` is the shuffle's alone: one draw per epoch seeds the batches' sampling
        streams, and nothing else takes from it."""
        epoch_key = int(rng.integers(2**63))
        for i, g in enumerate(length_batches(rng, self.ex_len, batch_size, bucket=True)):
            yield SeaterBatch(g, (epoch_key, i))

    def history_tokens(self, histories: Sequences) -> np.ndarray:
        """Most recent ``max_len`` items as leaf node ids, left-padded with -1. [B, T]."""
        h = histories.tail(self.model.p.max_len)
        tokens = Sequences(h.offsets, self.item_leaf[h.values])
        return tokens.to_padded(pad=-1)

    def loss(self, batch: SeaterBatch, module: torch.nn.Module | None = None
             ) -> tuple[torch.Tensor, dict[str, float]]:
        """Eq. 9. Every part is computed whatever its weight, so arms of an ablation see
        the same batches, negatives and dropout masks and differ only in the gradient."""
        idx = batch.idx
        cfg = self.losses
        hist = self.train.take(self.ex_row[idx]).head(self.ex_pos[idx])
        targets = self.ex_target[idx]
        q = cfg.n_rank_negatives
        cand = targets[:, None]
        shared = (self.paths[targets] >= 0).sum(1, keepdims=True).astype(np.int64)
        if q:
            rng = np.random.default_rng(batch.seed)
            neg, neg_shared = sample_negatives(self.tree, targets, q, rng, cfg.rank_negatives)
            cand = np.concatenate([cand, np.maximum(neg, 0)], axis=1)
            shared = np.concatenate([shared, neg_shared], axis=1)
        if self.teacher is not None:  # rows: the target, then the teacher's top items
            soft_items, soft = self.soft_targets(idx, hist, targets)
            cand = np.concatenate([cand, soft_items[:, 1:]], axis=1)
        dev = self.device
        history = torch.from_numpy(self.history_tokens(hist)).to(dev)
        paths = torch.from_numpy(self.paths[cand]).to(dev)  # (B, W, L)
        logits, z_x, z_y = (module or self.model)(history, paths, self.children)
        z_y = z_y[:, :1 + q]  # the ranked rows: the target and its negatives
        slots = torch.from_numpy(self.slots[targets]).to(dev)
        parts: dict[str, torch.Tensor] = {
            "gen": generation_loss(logits[:, 0], slots, cfg.gen_reduction)}
        flat = paths[:, 0].flatten()
        root = torch.tensor([self.tree.root], device=dev)
        tokens = torch.unique(torch.cat([root, flat[flat >= 0]]))
        parts["align"] = alignment_loss(self.model.node_emb.weight, tokens, self.parent,
                                        cfg.tau, cfg.align_mask_children)
        total = parts["gen"] + cfg.lambda_align * parts["align"]
        if self.teacher is not None:
            parts["distill"] = distillation_loss(logits[:, 0], soft[:, 0])
            total = total + cfg.lambda_distill * parts["distill"]
            if cfg.distill_top:
                parts["distill_top"] = distillation_loss(logits[:, 1 + q:], soft[:, 1:])
                total = total + cfg.lambda_distill * parts["distill_top"]
        if q:
            parts["rank"] = ranking_loss(z_x, z_y, torch.from_numpy(shared).to(dev),
                                         self.model.rank_w, cfg.beta, cfg.rank_cosine_scale,
                                         cfg.rank_form)
            total = total + cfg.lambda_rank * parts["rank"]
        logs = {k: float(v.detach()) for k, v in parts.items()}
        if q:  # the ranking loss when all scores are equal: what an inert one stays at
            with torch.no_grad():
                logs["rank_equal"] = float(ranking_loss(
                    torch.zeros_like(z_x), z_y, torch.from_numpy(shared).to(dev),
                    self.model.rank_w, cfg.beta, cfg.rank_cosine_scale, cfg.rank_form))
        logs["total"] = float(total.detach())
        return total, logs

    def soft_targets(self, idx: np.ndarray, hist: Sequences, targets: np.ndarray
                     ) -> tuple[np.ndarray, torch.Tensor]:
        """The items whose paths are distilled (the target, then the teacher's
        ``distill_top`` most likely others) and the teacher's soft child targets along
        them, for examples ``idx``. Computed the first time an example is drawn and kept:
        the teacher is frozen and an example's history and target never change, so every
        later epoch would only repeat the teacher's forward pass over the whole catalogue.
        Beyond ``SOFT_CACHE_BYTES`` in all, recomputed every time instead.
        Shape: idx, targets [B]; hist B histories -> items [B, R], soft [B, R, L, k]
        with R = 1 + distill_top."""
        assert self.teacher is not None
        n, (depth, k) = self.ex_row.size, (self.paths.shape[1], self.tree.k)
        rows = 1 + self.losses.distill_top
        if n * rows * depth * k * 4 > SOFT_CACHE_BYTES:
            return self._teach(hist, targets)
        if self._soft is None:
            self._soft = torch.zeros((n, rows, depth, k), device=self.device)
            self._soft_items = np.zeros((n, rows), np.int64)
            self._soft_known = np.zeros(n, bool)
        new = np.flatnonzero(~self._soft_known[idx])
        if len(new):
            items, soft = self._teach(hist.take(new), targets[new])
            self._soft[torch.from_numpy(idx[new]).to(self.device)] = soft
            self._soft_items[idx[new]] = items
            self._soft_known[idx[new]] = True
        return self._soft_items[idx], self._soft[torch.from_numpy(idx).to(self.device)]

    def _teach(self, hist: Sequences, targets: np.ndarray) -> tuple[np.ndarray, torch.Tensor]:
        """``soft_targets`` without the cache."""
        assert self.teacher is not None
        probs = self.teacher.item_probs(hist)
        items = targets[:, None].astype(np.int64)
        if self.losses.distill_top:
            top = self.teacher.top_items(probs, targets, self.losses.distill_top,
                                         hist if self.exclude_seen else None)
            items = np.concatenate([items, top], axis=1)
        return items, self.teacher.child_targets(probs, items)

    # ------------------------------------------------------------------ ranking
    @torch.no_grad()
    def recommend(self, histories: Sequences, k: int, exclude: Sequences | None,
                  beam_size: int | None = None) -> np.ndarray:
        """Top-k items by constrained beam search; a beam narrower than k returns only
        ``beam`` items, so the columns beyond it are -1 (they never count as hits)."""
        items = self.search(histories, k, exclude, beam_size).items
        if items.shape[1] < k:
            items = np.pad(items, ((0, 0), (0, k - items.shape[1])), constant_values=-1)
        return items

    @torch.no_grad()
    def search(self, histories: Sequences, n: int, exclude: Sequences | None,
               beam_size: int | None = None,
               on_step: Callable[[np.ndarray], None] | None = None):
        """``on_step(prefix)`` sees the beam before each step's scoring (diagnostics:
        which depth a target's path leaves the beam at, benchmarks/tree_oracle.py)."""
        model = self.model
        model.eval()
        beam = beam_size or self.beam_size
        history = torch.from_numpy(self.history_tokens(histories)).to(self.device)
        mem_k, mem_v, bias = model.memory(*model.encode(history))
        children = self.children

        def scorer(prefix: np.ndarray) -> np.ndarray:
            if on_step is not None:
                on_step(prefix)
            p = torch.from_numpy(prefix).to(self.device)
            return model.step(p, mem_k, mem_v, bias, children).float().cpu().numpy()

        excl = [exclude[i] for i in range(len(exclude))] if exclude is not None else None
        return beam_search(self.tree, scorer, len(histories), beam, min(n, beam), exclude=excl)
