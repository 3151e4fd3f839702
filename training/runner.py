"""Fit with early stopping, optionally refit on train+validation, test; one report entry each.

Shared by every model pipeline so that "what was trained on what, and tested how" is
decided in one place.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from training.data import InteractionData, Sequences
from training.evaluate import EvalResult, evaluate
from training.protocols import Split, make_split
from training.reports import git_commit, machine_info, now
from training.trainer import Task, TrainConfig, TrainResult, seed_everything, train


@dataclass
class Outcome:
    """What a fit produced. ``task`` is the final model (the refit one when refitting)."""

    task: Task
    split: Split
    fit: TrainResult
    valid: EvalResult
    test: EvalResult
    refit: TrainResult | None = None
    refit_split: Split | None = None
    refit_test: EvalResult | None = None
    commit: str = ""  # the code the run started from (HEAD may move during hours of training)


def fit_and_test(
    build_task: Callable[[Sequences], Task],
    data: InteractionData,
    protocol: str,
    cfg: TrainConfig,
    run_dir: Path,
    refit: bool,
    exclude_seen: bool,
    resume: bool,
    extra_state: dict[str, Any],
    on_fit: Callable[[Task], None] | None = None,
) -> Outcome:
    """``build_task(train_sequences)`` must return a fresh, seeded model's task.

    ``on_fit`` runs after early stopping, before any refit (e.g. to export the fit's
    embeddings, which saw no validation targets).
    """
    commit = git_commit()
    split = make_split(data, protocol, seed=cfg.seed)
    seed_everything(cfg.seed)
    task = build_task(split.train)
    fit = train(task, split.valid, cfg, run_dir / "fit", resume=resume,
                exclude_seen=exclude_seen, extra_state=extra_state)
    kw = {"exclude_seen": exclude_seen, "progress": cfg.progress, "seed": cfg.seed,
          "batch_size": cfg.eval_batch_size, "max_users": cfg.final_eval_users}
    out = Outcome(task=task, split=split, fit=fit,
                  valid=evaluate(task, split.valid, desc="valid", **kw),
                  test=evaluate(task, split.test, desc="test", **kw), commit=commit)
    if on_fit:
        on_fit(task)
    if refit:
        # Same seed and epoch count as the early-stopped fit, one more item per user.
        out.refit_split = make_split(data, protocol, seed=cfg.seed, refit=True)
        seed_everything(cfg.seed)
        out.task = build_task(out.refit_split.train)
        out.refit = train(out.task, out.refit_split.valid, cfg, run_dir / "refit",
                          resume=resume, extra_state=extra_state, fixed_epochs=fit.best_epoch)
        out.refit_test = evaluate(out.task, out.refit_split.test, desc="test", **kw)
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
    """One entry for the early-stopped fit, and one for the refit when there is one."""

    def entry(split: Split, test: EvalResult, train_seconds: float, name: str) -> dict[str, Any]:
        return {
            "key": f"{model}/{split.protocol}/{name}",
            "model": model,
            "variant": name,
            "dataset": data.name,
            "protocol": {**split.describe(), "exclude_seen": exclude_seen,
                         "max_history": max_history},
            "metrics": {"valid": out.valid.metrics, "test": test.metrics},
            "eval_users": {"valid": out.valid.n_users, "test": test.n_users},
            "seed": split.seed if split.protocol == "seater" else config["train"]["seed"],
            "epochs_run": out.fit.epochs_run,
            "best_epoch": out.fit.best_epoch,
            "train_seconds": round(train_seconds, 1),
            "throughput": {
                "train_examples_per_s": round(out.fit.examples_per_s, 1),
                # per second of process CPU (all its threads): unaffected by other jobs
                "train_examples_per_cpu_s": round(out.fit.examples_per_cpu_s, 1),
                "eval_users_per_s": round(test.users_per_s, 1),
            },
            "command": "seater " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
            "config": config,
            "commit": out.commit,
            "machine": {**machine_info(), "device": str(device)},
            "date": now(),
            "run_dir": str(run_dir),
            **(extra or {}),
        }

    entries = [entry(out.split, out.test, out.fit.train_seconds, variant)]
    if out.refit is not None and out.refit_split is not None and out.refit_test is not None:
        entries.append(entry(out.refit_split, out.refit_test,
                             out.fit.train_seconds + out.refit.train_seconds, variant + "-refit"))
    return entries
