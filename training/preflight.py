"""Checks of a run's settings that must fail before any work starts, not an epoch in.

Each failure is a ConfigError whose message names the setting, the value and the fix.
"""

from __future__ import annotations

import re
from typing import Any

from training.config import ConfigError
from training.metrics import DEFAULT_KS, METRICS

DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?|mps)$")


def check_device(name: str) -> None:
    """``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``, and present on this machine."""
    import torch

    if not DEVICE.match(name):
        raise ConfigError(f"device {name!r} is not one of auto, cpu, cuda, cuda:N, mps "
                          "(--device / train.device)")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r}: no CUDA device on this machine; use "
                              "--device cpu or auto")
        index = int(name.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise ConfigError(f"device {name!r}: this machine has {torch.cuda.device_count()} "
                              "CUDA device(s)")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device 'mps' is not available here; use --device cpu or auto")


def metric_names() -> list[str]:
    return [f"{m}@{k}" for m in METRICS for k in DEFAULT_KS]


def check_train(train: Any) -> None:
    """A ``TrainConfig``: positive sizes, a metric the evaluator computes, a real device."""
    positive = {"epochs": train.epochs, "batch_size": train.batch_size,
                "eval_batch_size": train.eval_batch_size, "lr": train.lr}
    for key, value in positive.items():
        if not value > 0:
            flag = {"epochs": "--epochs", "batch_size": "--batch-size", "lr": "--lr"}.get(
                key, f"--set train.{key}")
            raise ConfigError(f"train.{key} must be > 0, got {value!r} ({flag})")
    for key in ("patience", "threads", "max_batches", "max_eval_users", "final_eval_users",
                "weight_decay", "grad_clip"):
        if getattr(train, key, 0) < 0:
            raise ConfigError(f"train.{key} must be >= 0, got {getattr(train, key)!r}")
    if train.metric not in metric_names():
        raise ConfigError(f"train.metric {train.metric!r} is not computed; choose one of "
                          f"{', '.join(metric_names())}")
    check_device(train.device)


def check_run(cfg: Any) -> None:
    """Every check that applies to a SASRec or SEATER run config."""
    check_train(cfg.train)
    if cfg.refit and cfg.protocol != "loo":
        raise ConfigError("--refit applies to the loo protocol only (-p loo)")
    if cfg.refit_epochs < 0:
        raise ConfigError(f"refit_epochs must be >= 0, got {cfg.refit_epochs} (--refit-epochs)")
    if cfg.refit_epochs and not cfg.refit:
        raise ConfigError(f"--refit-epochs {cfg.refit_epochs} skips the fit and refits on "
                          "train+validation for that many epochs: add --refit")
    if cfg.data.min_interactions < 1:
        raise ConfigError(f"data.min_interactions must be >= 1, got {cfg.data.min_interactions}")
