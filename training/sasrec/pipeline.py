"""``seater train sasrec``: split -> train with early stopping -> (refit) -> test -> export.

The run folder holds everything later stages need: ``fit/item_emb.npy`` (embeddings of
the early-stopped model, which saw no validation targets: the tree builder clusters
these), ``items.json``, ``model.pt`` (the final model, refit if asked),
``fit/metrics.jsonl`` (per epoch) and ``result.json``.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training.data import InteractionData, Sequences
from training.runner import (
    RunSettings,
    finish_run,
    fit_and_test,
    report_entries,
    start_run,
    write_items,
)
from training.sasrec.model import SASRec, SASRecParams
from training.sasrec.task import SASRecTask
from training.trainer import TrainConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SASRecRun(RunSettings):
    model: SASRecParams = field(default_factory=SASRecParams)
    train: TrainConfig = field(default_factory=TrainConfig)

    @property
    def run_name(self) -> str:
        return self.name or f"sasrec-{self.protocol}"


def save_sasrec(folder: Path, model: SASRec, data: InteractionData, extra: dict[str, Any]
                ) -> None:
    """``model.pt`` (weights + plain-data config), ``item_emb.npy`` and ``items.json``."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict(), **extra}, folder / "model.pt")
    np.save(folder / "item_emb.npy", model.item_embeddings())
    write_items(folder, data)


def variant_name(cfg: SASRecRun) -> str:
    p = cfg.model
    parts = [f"{p.loss}", f"d{p.d_model}", f"L{p.n_layers}", f"h{p.n_heads}", f"len{p.max_len}"]
    if p.loss == "ss":
        parts.append(f"neg{p.n_negatives}-{p.negatives}")
    if p.init != "sasrec":
        parts.append(p.init)
    if p.item_dropout:
        parts.append(f"itemdrop{p.item_dropout:g}")
    if not p.mask_padded_keys:
        parts.append("padkeys")
    if cfg.train.adam_beta2 != TrainConfig.adam_beta2:
        parts.append(f"b2-{cfg.train.adam_beta2:g}")
    if cfg.train.epochs < TrainConfig.epochs:  # a budgeted run is not the converged one
        parts.append(f"ep{cfg.train.epochs}")
    if cfg.train.seed:  # seeds of one configuration are rows of their own
        parts.append(f"s{cfg.train.seed}")
    return "-".join(parts)


def run_sasrec(cfg: SASRecRun, resume: bool = True, data: InteractionData | None = None
               ) -> list[dict[str, Any]]:
    """Train, test and export; one report entry, plus a second one when refitting."""
    run = start_run(cfg, resume, data)
    data = run.data
    extra = {"kind": "sasrec", "config": asdict(cfg), "n_items": data.n_items}
    log.info("SASRec on %s (%s), %d items, device %s", data.name, cfg.protocol,
             data.n_items, run.device)

    def build(train_seqs: Sequences, stage: str) -> SASRecTask:
        return SASRecTask(SASRec(data.n_items, cfg.model).to(run.device), train_seqs,
                          run.device)

    out = fit_and_test(
        build, data, cfg.protocol, cfg.train, run.dir, cfg.refit, cfg.excludes_seen(), resume,
        extra, on_fit=lambda task: run.main and save_sasrec(run.dir / "fit", task.model, data,
                                                               extra),
        split_seed=cfg.split_seed, refit_epochs=cfg.refit_epochs,
    )
    entries = report_entries(out, "sasrec", variant_name(cfg), data, cfg.excludes_seen(),
                             cfg.model.max_len, asdict(cfg), run.dir, run.device)
    if run.main:
        save_sasrec(run.dir, out.task.model, data, extra)
    finish_run(run, entries, cfg.reports_dir)
    return entries
