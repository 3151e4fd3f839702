"""``seater train sasrec``: split -> train with early stopping -> (refit) -> test -> export.

The run folder holds everything later stages need: ``fit/item_emb.npy`` (embeddings of
the early-stopped model, which saw no validation targets: the tree builder clusters
these), ``items.json``, ``model.pt`` (the final model, refit if asked),
``fit/metrics.jsonl`` (per epoch) and ``result.json``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from training.data import InteractionData, Sequences, load_dataset
from training.reports import update_quality_report
from training.runner import fit_and_test, report_entries
from training.sasrec.model import SASRec, SASRecParams
from training.sasrec.task import SASRecTask
from training.trainer import TrainConfig, is_main_process, resolve_device

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SASRecRun:
    dataset: str = "beauty"
    protocol: Literal["loo", "seater"] = "loo"
    refit: bool = False
    exclude_seen: Literal["auto", "yes", "no"] = "auto"
    bucket: bool = False
    out_dir: str = "runs"
    name: str = ""
    report: bool = True
    model: SASRecParams = field(default_factory=SASRecParams)
    train: TrainConfig = field(default_factory=TrainConfig)

    @property
    def run_name(self) -> str:
        return self.name or f"sasrec-{self.protocol}"

    def excludes_seen(self) -> bool:
        return exclude_seen_for(self.exclude_seen, self.protocol)


def exclude_seen_for(choice: str, protocol: str) -> bool:
    """``auto``: exclude history items under loo (Amazon has no repeats; the standard
    full-ranking setting), keep them under ``seater`` (ComiRec's framework, and Yelp
    users do revisit businesses)."""
    return protocol == "loo" if choice == "auto" else choice == "yes"


def write_items(folder: Path, data: InteractionData) -> None:
    items: dict[str, Any] = {"ids": [str(x) for x in data.item_ids]}
    if data.item_text is not None:
        items["titles"] = data.item_text.title
    (folder / "items.json").write_text(json.dumps(items))


def save_sasrec(folder: Path, model: SASRec, data: InteractionData, extra: dict[str, Any]
                ) -> None:
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
    return "-".join(parts)


def run_sasrec(cfg: SASRecRun, resume: bool = True, data: InteractionData | None = None
               ) -> list[dict[str, Any]]:
    """Train, test and export; one report entry, plus a second one when refitting."""
    data = data or load_dataset(cfg.dataset)
    device = resolve_device(cfg.train.device)
    run_dir = Path(cfg.out_dir) / data.name / cfg.run_name
    main = is_main_process()  # under torchrun, rank 0 alone writes files and reports
    run_dir.mkdir(parents=True, exist_ok=True)
    if main:
        (run_dir / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
    extra = {"config": asdict(cfg), "n_items": data.n_items}
    log.info("SASRec on %s (%s), %d items, device %s", data.name, cfg.protocol,
             data.n_items, device)

    def build(train_seqs: Sequences) -> SASRecTask:
        model = SASRec(data.n_items, cfg.model).to(device)
        return SASRecTask(model, train_seqs, device, bucket=cfg.bucket)

    out = fit_and_test(
        build, data, cfg.protocol, cfg.train, run_dir, cfg.refit, cfg.excludes_seen(), resume,
        extra, on_fit=lambda task: main and save_sasrec(run_dir / "fit", task.model, data, extra),
    )
    entries = report_entries(out, "sasrec", variant_name(cfg), data, cfg.excludes_seen(),
                             cfg.model.max_len, asdict(cfg), run_dir, device)
    if not main:
        return entries
    save_sasrec(run_dir, out.task.model, data, extra)
    (run_dir / "result.json").write_text(json.dumps(entries, indent=2))
    if cfg.report:
        for entry in entries:
            log.info("report updated: %s", update_quality_report(data.name, entry))
    return entries
