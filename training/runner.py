"""The fit-refit-test sequence every model pipeline runs, and the run around it.

``trainer`` is the epoch loop; this module decides what is trained on what and tested
how (fit with early stopping, optionally refit on train+validation, test), opens and
closes the run (checks, data, device, folder, result, curves, report), so that each
model's ``pipeline`` holds only its own wiring.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from training.curves import plot_curves
from training.data import DataOptions, InteractionData, Sequences, load_dataset
from training.evaluate import EvalResult, evaluate
from training.preflight import check_run
from training.protocols import Split, make_split
from training.reports import git_commit, provenance, update_quality_report
from training.run_folder import open_run_dir
from training.trainer import (
    Task,
    TrainConfig,
    TrainResult,
    is_main_process,
    resolve_device,
    seed_everything,
    train,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunSettings:
    """What every training run names, whatever the model: its data and how it is read,
    the protocol, where its folder and (optionally) its report go, its preset."""

    dataset: str = "beauty"
    protocol: Literal["loo", "seater"] = "loo"
    refit: bool = False
    # > 0 (with refit): skip the early-stopped fit and refit for this many epochs, the best
    # epoch of an earlier fit of the same settings (a refit then costs one training, not two)
    refit_epochs: int = 0
    exclude_seen: Literal["auto", "yes", "no"] = "auto"
    out_dir: str = "runs"
    name: str = ""
    reports_dir: str = ""  # also write results into <reports_dir>/quality/ (benchmarks do)
    preset: str = "default"
    # the `seater` protocol's user split. Not the training seed: seeds of one configuration
    # then differ in the model only, on the same test users, and a SEATER built on (or
    # distilled from) a SASRec of the same split never meets that SASRec's training users
    # among its test users
    split_seed: int = 0
    data: DataOptions = field(default_factory=DataOptions)

    def stages(self) -> tuple[str, ...]:
        """What this run trains: the early-stopped fit, its refit on train+validation, or
        (``refit_epochs``) the refit alone."""
        if self.refit_epochs:
            return ("refit",)
        return ("fit", "refit") if self.refit else ("fit",)

    def excludes_seen(self) -> bool:
        """``auto``: exclude history items under loo (Amazon has no repeats; the standard
        full-ranking setting), keep them under ``seater`` (ComiRec's framework, and Yelp
        users do revisit businesses)."""
        if self.exclude_seen == "auto":
            return self.protocol == "loo"
        return self.exclude_seen == "yes"


@dataclass(frozen=True)
class Run:
    """An opened run: its data, device and folder; ``main`` is rank 0 under torchrun,
    the one process that writes files and reports."""

    data: InteractionData
    device: torch.device
    dir: Path
    main: bool


def start_run(cfg: Any, resume: bool, data: InteractionData | None = None) -> Run:
    """Check the settings, load the data, open the folder (refusing a mismatched resume).

    ``cfg`` is a model's run config: ``RunSettings`` plus ``run_name`` and ``train``."""
    check_run(cfg)
    data = data or load_dataset(cfg.dataset, cfg.data)
    device = resolve_device(cfg.train.device)
    run = Run(data, device, Path(cfg.out_dir) / data.name / cfg.run_name, is_main_process())
    open_run_dir(run.dir, asdict(cfg), data, resume, run.main)
    if run.main:
        write_items(run.dir, data)
    return run


def write_items(folder: Path, data: InteractionData) -> None:
    """``items.json``: external ids per item index, and titles, categories and
    attributes when the data has them (the bundle ships it; the service filters on it)."""
    items: dict[str, Any] = {"ids": [str(x) for x in data.item_ids]}
    text = data.item_text
    if text is not None:
        items["titles"] = text.title
        if any(text.categories):
            items["categories"] = [[" > ".join(p) for p in paths] for paths in text.categories]
        if text.attributes:
            items["attributes"] = text.attributes
    (folder / "items.json").write_text(json.dumps(items))


def read_results(run_dir: Path) -> list[dict[str, Any]]:
    """The report entries ``finish_run`` left in a run folder (fit, then refit); none when
    the run never finished or its ``result.json`` cannot be read."""
    try:
        entries = json.loads((Path(run_dir) / "result.json").read_text())
    except (OSError, ValueError):
        return []
    return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []


def finish_run(run: Run, entries: list[dict[str, Any]], reports_dir: str = "") -> None:
    """``result.json`` and a curve per fit/refit in the run folder; the entries go into
    ``<reports_dir>/quality/<dataset>.json`` only when a reports folder is named."""
    if not run.main:
        return
    (run.dir / "result.json").write_text(json.dumps(entries, indent=2))
    for part in ("fit", "refit"):
        plot_curves(run.dir / part / "metrics.jsonl", title=f"{run.dir} ({part})")
    if reports_dir:
        for entry in entries:
            log.info("report updated: %s",
                     update_quality_report(run.data.name, entry, Path(reports_dir)))


@dataclass
class Outcome:
    """What a run produced. ``task`` is the final model (the refit one when refitting);
    ``fit``, ``valid`` and ``test`` are None when the fit was skipped (``refit_epochs``)."""

    task: Task
    split: Split
    fit: TrainResult | None = None
    valid: EvalResult | None = None
    test: EvalResult | None = None
    refit: TrainResult | None = None
    refit_split: Split | None = None
    refit_test: EvalResult | None = None
    commit: str = ""  # the code the run started from (HEAD may move during hours of training)


def fit_and_test(
    build_task: Callable[[Sequences, str], Task],
    data: InteractionData,
    protocol: str,
    cfg: TrainConfig,
    run_dir: Path,
    refit: bool,
    exclude_seen: bool,
    resume: bool,
    extra_state: dict[str, Any],
    on_fit: Callable[[Task], None] | None = None,
    split_seed: int = 0,
    refit_epochs: int = 0,
) -> Outcome:
    """``build_task(train_sequences, stage)`` must return a fresh, seeded model's task for
    ``stage`` ("fit", then "refit" when there is one).

    ``on_fit`` runs after early stopping, before any refit (e.g. to export the fit's
    embeddings, which saw no validation targets). ``refit_epochs`` > 0 (with ``refit``)
    skips the fit and refits for that many epochs: the refit is seeded afresh, so with
    an earlier fit's best epoch it is the refit that fit would have been followed by.
    """
    if refit_epochs and not refit:
        raise ValueError("refit_epochs skips the fit for a refit: it needs refit")
    commit = git_commit()
    split = make_split(data, protocol, seed=split_seed)
    kw = {"exclude_seen": exclude_seen, "progress": cfg.progress, "seed": cfg.seed,
          "batch_size": cfg.eval_batch_size, "max_users": cfg.final_eval_users}
    out: Outcome | None = None
    if not refit_epochs:
        seed_everything(cfg.seed)
        task = build_task(split.train, "fit")
        fit = train(task, split.valid, cfg, run_dir / "fit", resume=resume,
                    exclude_seen=exclude_seen, extra_state=extra_state)
        out = Outcome(task=task, split=split, fit=fit,
                      valid=evaluate(task, split.valid, desc="valid", **kw),
                      test=evaluate(task, split.test, desc="test", **kw), commit=commit)
        if on_fit:
            on_fit(task)
    if refit:
        # Same seed and epoch count as the early-stopped fit, one more item per user.
        refit_split = make_split(data, protocol, seed=split_seed, refit=True)
        seed_everything(cfg.seed)
        task = build_task(refit_split.train, "refit")
        epochs = refit_epochs or (out.fit.best_epoch if out and out.fit else 0)
        result = train(task, refit_split.valid, cfg, run_dir / "refit", resume=resume,
                       extra_state=extra_state, fixed_epochs=epochs)
        out = out or Outcome(task=task, split=split, commit=commit)
        out.task, out.refit, out.refit_split = task, result, refit_split
        out.refit_test = evaluate(task, refit_split.test, desc="test", **kw)
    assert out is not None
    return out


def report_entries(
    out: Outcome,
    model: str,
    variant: str,
    data: InteractionData,
    exclude_seen: bool,
    max_history: int,
    config: dict[str, Any],
    run_dir: Path,
    device: torch.device,
    extra: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """One entry for the early-stopped fit, and one for the refit when there is one. A
    refit whose epoch count was given (no fit ran) reports its own epochs and speed, and
    the count as ``refit_epochs``."""
    prov = provenance(out.commit)
    trained = out.fit or out.refit  # whose epochs and speed the entries report
    assert trained is not None
    valid = out.valid.metrics if out.valid else {}

    def entry(split: Split, test: EvalResult, train_seconds: float, name: str) -> dict[str, Any]:
        return {
            "key": f"{model}/{split.protocol}/{name}",
            "model": model,
            "variant": name,
            "dataset": data.name,
            "protocol": {**split.describe(), "exclude_seen": exclude_seen,
                         "max_history": max_history},
            "metrics": {"valid": valid, "test": test.metrics},
            "eval_users": {"valid": out.valid.n_users if out.valid else 0,
                           "test": test.n_users},
            "seed": split.seed if split.protocol == "seater" else config["train"]["seed"],
            "epochs_run": trained.epochs_run,
            "best_epoch": trained.best_epoch,
            # a refit alone: its epoch count was given, not found by a fit
            **({"refit_epochs": trained.epochs_run} if out.fit is None else {}),
            "train_seconds": round(train_seconds, 1),
            "throughput": {
                "train_examples_per_s": round(trained.examples_per_s, 1),
                # per second of process CPU (all its threads): unaffected by other jobs
                "train_examples_per_cpu_s": round(trained.examples_per_cpu_s, 1),
                "eval_users_per_s": round(test.users_per_s, 1),
            },
            "command": prov["command"],
            "config": config,
            "commit": prov["commit"],
            "machine": {**prov["machine"], "device": str(device)},
            "date": prov["date"],
            "run_dir": str(run_dir),
            **(extra or {}),
        }

    entries = []
    if out.fit is not None and out.test is not None:
        entries.append(entry(out.split, out.test, out.fit.train_seconds, variant))
    if out.refit is not None and out.refit_split is not None and out.refit_test is not None:
        fit_seconds = out.fit.train_seconds if out.fit else 0.0
        entries.append(entry(out.refit_split, out.refit_test,
                             fit_seconds + out.refit.train_seconds, variant + "-refit"))
    return entries
