"""``seater train sasrec``: split -> train with early stopping -> (refit) -> test -> export.

The run folder holds everything later stages need: ``best.pt`` (weights + config),
``item_emb.npy`` and ``items.json`` (the embeddings the tree builder clusters),
``metrics.jsonl`` (per epoch) and ``result.json``.
"""

from __future__ import annotations

import json
import logging
import shlex
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from training.data import InteractionData, load_dataset
from training.evaluate import evaluate
from training.protocols import Split, make_split
from training.reports import git_commit, machine_info, now, update_quality_report
from training.sasrec.model import SASRec, SASRecParams
from training.sasrec.task import SASRecTask
from training.trainer import (
    TrainConfig,
    TrainResult,
    resolve_device,
    seed_everything,
    train,
)

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
        return self.name or f"sasrec-{self.protocol}{'-refit' if self.refit else ''}"

    def excludes_seen(self) -> bool:
        if self.exclude_seen == "auto":
            return self.protocol == "loo"
        return self.exclude_seen == "yes"


def write_item_embeddings(run_dir: Path, emb: np.ndarray, data: InteractionData) -> None:
    np.save(run_dir / "item_emb.npy", emb.astype(np.float32))
    items: dict[str, Any] = {"ids": [str(x) for x in data.item_ids]}
    if data.item_text is not None:
        items["titles"] = data.item_text.title
    (run_dir / "items.json").write_text(json.dumps(items))


def run_sasrec(cfg: SASRecRun, resume: bool = True, data: InteractionData | None = None
               ) -> list[dict[str, Any]]:
    """Train, test and export; one report entry, plus a second one when refitting."""
    data = data or load_dataset(cfg.dataset)
    split = make_split(data, cfg.protocol, seed=cfg.train.seed)
    device = resolve_device(cfg.train.device)
    run_dir = Path(cfg.out_dir) / data.name / cfg.run_name
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
    log.info("SASRec on %s (%s): %d train sequences, %d items, device %s", data.name,
             cfg.protocol, len(split.train), data.n_items, device)

    seed_everything(cfg.train.seed)
    model = SASRec(data.n_items, cfg.model).to(device)
    task = SASRecTask(model, split.train, device, bucket=cfg.bucket)
    extra = {"config": asdict(cfg), "n_items": data.n_items}
    result = train(task, split.valid, cfg.train, run_dir / "fit", resume=resume,
                   exclude_seen=cfg.excludes_seen(), extra_state=extra)
    valid = evaluate(task, split.valid, exclude_seen=cfg.excludes_seen(),
                     progress=cfg.train.progress, desc="valid")
    test = evaluate(task, split.test, exclude_seen=cfg.excludes_seen(),
                    progress=cfg.train.progress, desc="test")
    base = replace(cfg, refit=False)
    entries = [_entry(base, data, split, {"valid": valid, "test": test}, result.train_seconds,
                      result, device, run_dir)]
    _export(run_dir / "fit", model, data, extra)
    if cfg.refit:
        # Same seed and epoch count as the early-stopped fit, one more item per user.
        refit_split = make_split(data, cfg.protocol, seed=cfg.train.seed, refit=True)
        seed_everything(cfg.train.seed)
        model = SASRec(data.n_items, cfg.model).to(device)
        task = SASRecTask(model, refit_split.train, device, bucket=cfg.bucket)
        refit = train(task, refit_split.valid, cfg.train, run_dir / "refit", resume=resume,
                      extra_state=extra, fixed_epochs=result.best_epoch)
        test = evaluate(task, refit_split.test, exclude_seen=cfg.excludes_seen(),
                        progress=cfg.train.progress, desc="test")
        entries.append(_entry(cfg, data, refit_split, {"valid": valid, "test": test},
                              result.train_seconds + refit.train_seconds, result, device,
                              run_dir))
        _export(run_dir / "refit", model, data, extra)
    # The run folder's top level holds the model later stages use: the refit one if any.
    _export(run_dir, model, data, extra)
    (run_dir / "result.json").write_text(json.dumps(entries, indent=2))
    if cfg.report:
        for entry in entries:
            path = update_quality_report(data.name, entry)
        log.info("report updated: %s", path)
    return entries


def _export(folder: Path, model: SASRec, data: InteractionData, extra: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict(), **extra}, folder / "model.pt")
    write_item_embeddings(folder, model.item_embeddings(), data)


def _entry(cfg: SASRecRun, data: InteractionData, split: Split, evaluated: dict[str, Any],
           train_seconds: float, result: TrainResult, device: torch.device, run_dir: Path
           ) -> dict[str, Any]:
    return {
        "key": f"sasrec/{cfg.protocol}/{variant_name(cfg)}",
        "model": "sasrec",
        "variant": variant_name(cfg),
        "dataset": data.name,
        "protocol": {**split.describe(), "exclude_seen": cfg.excludes_seen(),
                     "max_history": cfg.model.max_len},
        "metrics": {k: v.metrics for k, v in evaluated.items()},
        "seed": cfg.train.seed,
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "train_seconds": round(train_seconds, 1),
        "throughput": {
            "train_sequences_per_s": round(result.examples_per_s, 1),
            "eval_users_per_s": round(evaluated["test"].users_per_s, 1),
        },
        "command": "seater " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "config": asdict(cfg),
        "commit": git_commit(),
        "machine": {**machine_info(), "device": str(device)},
        "date": now(),
        "run_dir": str(run_dir),
    }


def variant_name(cfg: SASRecRun) -> str:
    p = cfg.model
    parts = [f"{p.loss}", f"d{p.d_model}", f"L{p.n_layers}", f"h{p.n_heads}", f"len{p.max_len}"]
    if p.loss == "ss":
        parts.append(f"neg{p.n_negatives}-{p.negatives}")
    if cfg.refit:
        parts.append("refit")
    return "-".join(parts)


def quick(cfg: SASRecRun) -> SASRecRun:
    """The demo preset: a few epochs, every validation user on a subsample."""
    return replace(cfg, train=replace(cfg.train, epochs=3, patience=3, max_eval_users=2000))
