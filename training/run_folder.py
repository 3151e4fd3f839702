"""A run's folder, and whether an existing one may be resumed by the run asked for.

Runs resume from their folder's checkpoint, and the folder is named by the run, not by
what it trains. Resuming with another model shape fails deep inside torch, and resuming
with another tree or other data silently trains the old one under the new label, so the
folder records the settings that define the run and a fingerprint of its data, and a
resume that differs in either is refused before any work starts.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from training.config import ConfigError, flat_keys
from training.data import InteractionData

log = logging.getLogger(__name__)

# Settings a resumed run may change: they decide how long to train, where and how loudly,
# and how the result is evaluated or reported, never what the checkpoint holds.
RESUMABLE = {
    "refit", "out_dir", "name", "reports_dir", "beam_size", "exclude_seen", "preset",
    "train.epochs", "train.patience", "train.threads", "train.device", "train.progress",
    "train.eval_batch_size", "train.max_eval_users", "train.final_eval_users", "train.amp",
}
FINGERPRINT = "data.json"


def data_fingerprint(data: InteractionData) -> dict[str, Any]:
    """Counts and a hash of the sequences and ids: the same file name with other
    content gets another fingerprint."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(data.sequences.lengths, dtype=np.int64).tobytes())
    h.update(np.ascontiguousarray(data.sequences.values, dtype=np.int64).tobytes())
    h.update("\n".join(map(str, data.item_ids)).encode())
    return {"name": data.name, "users": data.n_users, "items": data.n_items,
            "interactions": data.n_interactions, "sha256": h.hexdigest()}


def config_changes(old: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """``{"model.d_model": (64, 128), ...}`` for every setting both configs have and that
    differs (a key only one has was added or dropped by a code change, not by the user)."""
    a, b = flat_keys(old), flat_keys(new)
    return {k: (a[k], b[k]) for k in sorted(set(a) & set(b)) if a[k] != b[k]}


def open_run_dir(run_dir: Path, config: dict[str, Any], data: InteractionData, resume: bool,
                 main: bool = True) -> None:
    """Create ``run_dir`` (rank 0 writes ``config.json`` and the data fingerprint);
    refuse to resume a folder whose run was another one.

    Raises ConfigError naming the differing settings and the two ways out.
    """
    run_dir = Path(run_dir)
    fingerprint = data_fingerprint(data)
    old_cfg, old_data = run_dir / "config.json", run_dir / FINGERPRINT
    if resume and old_cfg.is_file() and has_state(run_dir):
        changes = config_changes(json.loads(old_cfg.read_text()), config)
        fixed = {k: v for k, v in changes.items() if k not in RESUMABLE}
        if old_data.is_file():
            before = json.loads(old_data.read_text())
            if before.get("sha256") != fingerprint["sha256"]:
                fixed["data"] = (_describe(before), _describe(fingerprint))
        if fixed:
            listed = "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in fixed.items())
            raise ConfigError(
                f"{run_dir} holds another run ({listed}). Resuming would continue that run: "
                "pass --no-resume to start this folder over, or --name to train beside it")
        if changes:
            log.info("resuming %s with changed settings: %s", run_dir,
                     "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in changes.items()))
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        _write_atomic(old_cfg, json.dumps(config, indent=2))  # other ranks may be reading
        _write_atomic(old_data, json.dumps(fingerprint, indent=2))


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def has_state(run_dir: Path) -> bool:
    """Whether a resume would pick anything up: a checkpoint or a built tree."""
    return any((Path(run_dir) / p).is_file() for p in ("fit/last.pt", "fit/best.pt",
                                                        "tree.npz", "model.pt"))


def _describe(fp: dict[str, Any]) -> str:
    return (f"{fp.get('users')} users, {fp.get('items')} items, {fp.get('interactions')} "
            f"interactions, sha256 {str(fp.get('sha256'))[:12]}")
