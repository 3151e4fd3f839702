"""One training loop for every model: epochs, early stopping, checkpoints, metrics log.

A model plugs in through ``Task`` (its batches, its loss, its ``recommend``), so SASRec
and SEATER share early stopping on the same validation metric computed by the same
evaluator, the same resumable checkpoint format and the same per-epoch JSON log.

Multi-GPU: launched under ``torchrun`` (``WORLD_SIZE`` > 1) the module is wrapped in
DistributedDataParallel, each rank takes every ``world``-th batch, and rank 0 alone
evaluates, logs and writes checkpoints.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from training.checkpoint import load_checkpoint
from training.evaluate import Recommender, evaluate
from training.protocols import EvalSet

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 200
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    adam_beta2: float = 0.999  # RecTools' transformers use 0.98
    patience: int = 10
    metric: str = "ndcg@10"
    eval_batch_size: int = 512
    max_eval_users: int = 0  # per-epoch validation on a fixed random subset (0 = all)
    final_eval_users: int = 0  # final valid/test evaluation subset (demo presets; 0 = all)
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    threads: int = 0
    grad_clip: float = 0.0
    max_batches: int = 0  # cap on batches per epoch (quick presets, smoke runs); 0 = all
    progress: bool = True


class Task(Recommender, Protocol):
    """A model's side of the loop. ``model`` is the bare module (its parameters, state
    dict and ranking); the loop passes ``loss`` the module to run the training pass
    through, which under torchrun is the DistributedDataParallel wrapper of ``model``."""

    model: nn.Module

    def batches(self, rng: np.random.Generator, batch_size: int) -> Iterator[Any]:
        """One epoch of training batches (already shuffled by ``rng``)."""
        ...

    def n_batches(self, batch_size: int) -> int: ...

    def loss(self, batch: Any, module: nn.Module | None = None
             ) -> tuple[torch.Tensor, dict[str, float]]:
        """Total loss and its parts (floats) for logging, computed through ``module``
        (default: ``model``)."""
        ...

    def examples_in(self, batch: Any) -> int: ...


@dataclass
class TrainState:
    epoch: int = 0
    best_epoch: int = 0
    best_metric: float = float("-inf")
    bad_epochs: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    train_seconds: float = 0.0


@dataclass(frozen=True)
class TrainResult:
    best_epoch: int
    best_metric: float
    epochs_run: int
    train_seconds: float
    examples_per_s: float
    history: list[dict[str, Any]]
    best_path: Path
    examples_per_cpu_s: float = 0.0


def resolve_device(name: str) -> torch.device:
    """``auto``: CUDA when present. Under ``torchrun`` each process takes the GPU of its
    ``LOCAL_RANK`` (the process group is started here, before any model is placed)."""
    _, world = dist_info()
    device = torch.device("cuda" if name == "auto" and torch.cuda.is_available()
                          else "cpu" if name == "auto" else name)
    if device.type == "cuda" and device.index is None and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def dist_info() -> tuple[int, int]:
    """(rank, world size); under ``torchrun`` (``WORLD_SIZE`` > 1) the first call starts
    the process group (NCCL on GPUs, gloo on CPUs)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        torch.distributed.init_process_group(backend)
    return rank, world


def barrier() -> None:
    """Wait for every process (no-op when there is one): rank 0 wrote what comes next."""
    if dist_info()[1] > 1:
        torch.distributed.barrier()


def is_main_process() -> bool:
    """Rank 0 (or the only process): the one that evaluates per epoch and writes files."""
    return dist_info()[0] == 0


def seed_everything(seed: int) -> None:
    np.random.seed(seed)
    torch.manual_seed(seed)


def train(
    task: Task,
    valid: EvalSet,
    cfg: TrainConfig,
    run_dir: Path,
    resume: bool = True,
    exclude_seen: bool = True,
    extra_state: dict[str, Any] | None = None,
    fixed_epochs: int = 0,
) -> TrainResult:
    """Train until ``patience`` epochs pass without a better validation ``cfg.metric``.

    With ``fixed_epochs`` > 0 (refitting on train+validation), train exactly that many
    epochs, skip validation and keep the last weights as the best.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    rank, world = dist_info()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    module = task.model
    device = next(module.parameters()).device
    opt = torch.optim.Adam(module.parameters(), lr=cfg.lr, betas=(0.9, cfg.adam_beta2),
                           weight_decay=cfg.weight_decay)
    state = TrainState()
    # One shuffle for all ranks (same seed); each rank takes every world-th batch of it.
    rng = np.random.default_rng(cfg.seed)
    last_path, best_path = run_dir / "last.pt", run_dir / "best.pt"
    metrics_path = run_dir / "metrics.jsonl"
    if resume and last_path.is_file():
        ckpt = load_checkpoint(last_path, device)
        module.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        state = TrainState(**ckpt["state"])
        rng.bit_generator.state = ckpt["numpy_rng"]
        torch.set_rng_state(ckpt["torch_rng"])
        log.info("resumed %s at epoch %d (best %s=%.4f at epoch %d)", run_dir, state.epoch,
                 cfg.metric, state.best_metric, state.best_epoch)
    elif metrics_path.exists() and rank == 0:
        metrics_path.unlink()
    model: nn.Module = module  # what the training pass runs through
    if world > 1:
        # static_graph: a loss switched off for an ablation leaves parameters without
        # gradients (SEATER's W_s), which DDP's reducer would otherwise wait for.
        model = nn.parallel.DistributedDataParallel(
            module, device_ids=[device.index] if device.type == "cuda" else None,
            static_graph=True,
        )
    use_amp = cfg.amp and device.type == "cuda"
    max_epochs = fixed_epochs or cfg.epochs

    while state.epoch < max_epochs and (fixed_epochs or state.bad_epochs < cfg.patience):
        epoch = state.epoch + 1
        module.train()
        t0, cpu0 = time.perf_counter(), time.process_time()
        totals: dict[str, float] = {}
        n_batches = n_examples = 0
        total = task.n_batches(cfg.batch_size)
        if cfg.max_batches:
            total = min(total, cfg.max_batches)
        if world > 1:  # every rank must run as many backward passes (gradient all-reduce)
            total -= total % world
            if total == 0:
                raise ValueError(f"{task.n_batches(cfg.batch_size)} batches per epoch cannot "
                                 f"be shared by {world} processes: lower --batch-size")
        bar = tqdm(task.batches(rng, cfg.batch_size), total=total,
                   desc=f"epoch {epoch}", disable=not cfg.progress or rank != 0, leave=False)
        for i, batch in enumerate(bar):
            if i >= total:
                break
            if i % world != rank:
                continue
            amp = torch.autocast("cuda", dtype=torch.bfloat16) if use_amp else nullcontext()
            with amp:
                loss, parts = task.loss(batch, model)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                nn.utils.clip_grad_norm_(module.parameters(), cfg.grad_clip)
            opt.step()
            for k, v in parts.items():
                totals[k] = totals.get(k, 0.0) + v
            n_batches += 1
            n_examples += task.examples_in(batch)
            if i % 20 == 0:
                bar.set_postfix(loss=f"{loss.item():.4f}")
        seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        state.train_seconds += seconds
        state.epoch = epoch
        row: dict[str, Any] = {
            "epoch": epoch,
            "train_seconds": round(seconds, 3),
            "examples_per_s": round(n_examples * world / max(seconds, 1e-9), 1),
            "train_cpu_seconds": round(cpu, 3),
            **{f"loss_{k}": v / max(n_batches, 1) for k, v in totals.items()},
        }
        if rank == 0:
            if fixed_epochs:
                improved = True
            else:
                module.eval()
                res = evaluate(task, valid, batch_size=cfg.eval_batch_size,
                               exclude_seen=exclude_seen, max_users=cfg.max_eval_users,
                               seed=cfg.seed, progress=cfg.progress, desc="valid")
                row.update({f"valid_{k}": v for k, v in res.metrics.items()})
                row["valid_seconds"] = round(res.seconds, 3)
                value = res.metrics[cfg.metric]
                improved = value > state.best_metric
                if improved:
                    state.best_metric, state.best_epoch, state.bad_epochs = value, epoch, 0
                else:
                    state.bad_epochs += 1
            if improved:
                if fixed_epochs:
                    state.best_epoch = epoch
                torch.save({"model": module.state_dict(), "epoch": epoch,
                            **(extra_state or {})}, best_path)
            state.history.append(row)
            with metrics_path.open("a") as f:
                f.write(json.dumps(row) + "\n")
            torch.save({
                "model": module.state_dict(),
                "optimizer": opt.state_dict(),
                "state": asdict(state),
                "numpy_rng": rng.bit_generator.state,
                "torch_rng": torch.get_rng_state(),
                **(extra_state or {}),
            }, last_path)
            log.info("epoch %d: %s", epoch, _fmt(row, cfg.metric))
        if world > 1:  # rank 0 decided early stopping; every rank must stop with it
            shared = [state.best_metric, state.best_epoch, state.bad_epochs]
            torch.distributed.broadcast_object_list(shared, src=0)
            state.best_metric, state.best_epoch, state.bad_epochs = shared
    barrier()  # best.pt is written by rank 0
    best = load_checkpoint(best_path, device)
    module.load_state_dict(best["model"])
    module.eval()
    total_examples = sum(r["examples_per_s"] * r["train_seconds"] for r in state.history)
    return TrainResult(
        best_epoch=state.best_epoch,
        best_metric=state.best_metric,
        epochs_run=state.epoch,
        train_seconds=state.train_seconds,
        examples_per_s=total_examples / max(state.train_seconds, 1e-9),
        examples_per_cpu_s=_per_cpu_second(state.history),
        history=state.history,
        best_path=best_path,
    )


def _per_cpu_second(history: list[dict[str, Any]]) -> float:
    """Examples per CPU second over the epochs that logged their CPU time (a run resumed
    from an older checkpoint has earlier epochs without it)."""
    rows = [r for r in history if "train_cpu_seconds" in r]
    examples = sum(r["examples_per_s"] * r["train_seconds"] for r in rows)
    return examples / max(sum(r["train_cpu_seconds"] for r in rows), 1e-9)


def _fmt(row: dict[str, Any], metric: str) -> str:
    keys = [k for k in row if k.startswith("loss_")] + ["train_seconds", "examples_per_s"]
    if f"valid_{metric}" in row:
        keys.append(f"valid_{metric}")
    return ", ".join(f"{k}={row[k]:.4g}" if isinstance(row[k], float) else f"{k}={row[k]}"
                     for k in keys)
