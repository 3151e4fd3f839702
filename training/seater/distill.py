"""A trained SASRec as SEATER's teacher: its next-item distribution folded onto the tree.

SEATER's generation loss is a hierarchical softmax trained on one hard target path; the
SASRec it is built from scores every item with a full softmax. Folding the teacher's
item probabilities onto the tree gives, at each level of the target's path, a soft
target over the children of the path's node there: the share of the node's mass that
lies under each child. Training the decoder towards those (``losses.lambda_distill``)
hands it what the teacher knows about every other item, which one hard path cannot.

The teacher is the SASRec run SEATER's tree and initialisation come from, frozen, in eval
mode: its fit for SEATER's fit (it saw no validation targets, as SEATER's fit does not), and
for SEATER's refit its refit (both trained on train+validation).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from indexer import IdTree
from training.checkpoint import load_checkpoint
from training.config import ConfigError, from_saved
from training.data.sequences import Sequences
from training.sasrec.model import SASRec
from training.sasrec.pipeline import SASRecRun


class TreeTeacher:
    """Soft child targets along target paths, from a frozen SASRec."""

    def __init__(self, sasrec: SASRec, tree: IdTree, temperature: float,
                 device: torch.device) -> None:
        if sasrec.n_items != tree.n_items:
            raise ValueError(f"the teacher scores {sasrec.n_items} items, the tree has "
                             f"{tree.n_items}")
        self.sasrec = sasrec.to(device).eval().requires_grad_(False)
        self.temperature = temperature
        self.device = device
        self.order = torch.from_numpy(tree.leaf_order).to(device)  # depth-first items
        self.lo = torch.from_numpy(tree.leaf_lo).to(device)
        self.hi = torch.from_numpy(tree.leaf_hi).to(device)
        self.children = torch.from_numpy(tree.children.astype(np.int64)).to(device)
        self.paths = tree.node_paths  # [N, L]
        self.root = tree.root

    @torch.no_grad()
    def item_probs(self, histories: Sequences) -> torch.Tensor:
        """The teacher's next-item distribution. Shape: B histories -> [B, n_items]."""
        seq = histories.tail(self.sasrec.p.max_len).to_padded(pad=self.sasrec.pad_id)
        scores = self.sasrec.scores(torch.from_numpy(seq).to(self.device)).float()
        return torch.softmax(scores / self.temperature, dim=-1)

    @torch.no_grad()
    def child_targets(self, probs: torch.Tensor, targets: np.ndarray) -> torch.Tensor:
        """At each level of each target's path, the teacher's distribution over the
        children of the path's node one level up (zeros beyond a shorter path and on
        empty child slots).

        Several targets per row (``distill_top``) share the row's one prefix sum.
        Shape: probs [B, n_items], targets int64 [B] or [B, R] item indices -> [B, L, k]
        or [B, R, L, k].
        """
        cum = F.pad(probs[:, self.order].cumsum(dim=1), (1, 0))  # [B, N + 1]
        paths = torch.from_numpy(self.paths[targets]).to(self.device)  # [B, (R,) L]
        parents = torch.cat([paths.new_full((*paths.shape[:-1], 1), self.root),
                             paths[..., :-1]], -1)
        kids = self.children[parents.clamp(min=0)]  # [B, (R,) L, k]
        ok = (kids >= 0) & (paths >= 0)[..., None]
        safe = kids.clamp(min=0)
        rows = torch.arange(len(targets), device=self.device).view(-1, *[1] * (kids.dim() - 1))
        mass = (cum[rows, self.hi[safe]] - cum[rows, self.lo[safe]]).clamp(min=0) * ok
        total = mass.sum(-1, keepdim=True)
        return torch.where(total > 0, mass / total.clamp(min=1e-30), torch.zeros_like(mass))

    @torch.no_grad()
    def top_items(self, probs: torch.Tensor, targets: np.ndarray, m: int,
                  seen: Sequences | None = None) -> np.ndarray:
        """The teacher's ``m`` most likely next items other than the target and, where the
        search excludes them, the ``seen`` ones: the leaves a beam that follows the teacher
        ends in. Shape: probs [B, n_items], targets [B], seen B histories -> int64 [B, m]."""
        masked = probs.clone()
        dev = probs.device
        if seen is not None:
            masked[torch.from_numpy(seen.row_ids()).to(dev),
                   torch.from_numpy(seen.values.astype(np.int64)).to(dev)] = -1
        masked[torch.arange(len(targets), device=dev),
               torch.from_numpy(targets.astype(np.int64)).to(dev)] = -1
        return masked.topk(m, dim=1).indices.cpu().numpy().astype(np.int64)


def distillation_loss(logits: torch.Tensor, soft: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the decoder's child distributions against the teacher's, summed
    over the path's levels and averaged over everything before them (examples, and rows
    where there are several): the ``levels`` reduction of the generation loss, so the
    weight compares with it. Shape: logits, soft [..., L, k]."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    per_level = -(soft * torch.where(soft > 0, logp, torch.zeros_like(logp))).sum(-1)
    return per_level.sum(-1).mean()


def sasrec_run_config(sasrec_folder: Path) -> SASRecRun:
    """The saved settings of a ``seater train sasrec`` run folder."""
    conf = Path(sasrec_folder) / "config.json"
    return from_saved(SASRecRun, json.loads(conf.read_text()), str(conf))


def teacher_checkpoint(sasrec_folder: Path, stage: str, cfg: SASRecRun | None = None
                       ) -> Path:
    """The SASRec weights that teach SEATER's ``stage``: its fit for SEATER's fit, its refit
    (trained on train+validation, as SEATER's refit is) for SEATER's refit. ``cfg`` is the
    run's saved config when the caller has read it already.

    Raises ConfigError, before any training, when the SASRec run has no refit.
    """
    folder = Path(sasrec_folder)
    if stage == "fit":
        return folder / "fit" / "model.pt"
    if not (cfg or sasrec_run_config(folder)).refit:
        raise ConfigError(
            f"--refit with losses.lambda_distill > 0 distils the SASRec's refit, but {folder} "
            "was trained without --refit: retrain it with --refit, or drop --refit here")
    return folder / "model.pt"  # the run's final model: its refit


def load_teacher(sasrec_folder: Path, tree: IdTree, temperature: float,
                 device: torch.device, stage: str = "fit") -> TreeTeacher:
    """A SASRec run's fit or refit (``teacher_checkpoint``) as a teacher (``weights_only``
    read)."""
    cfg = sasrec_run_config(sasrec_folder)
    with torch.random.fork_rng(devices=[]):  # built after seeding: leave the stream as is
        model = SASRec(tree.n_items, cfg.model)
    checkpoint = teacher_checkpoint(sasrec_folder, stage, cfg)
    model.load_state_dict(load_checkpoint(checkpoint)["model"])
    return TreeTeacher(model, tree, temperature, device)
