"""``seater evaluate``: re-evaluate a trained SEATER run, e.g. at several beam sizes.

Beam size trades quality for decoding time (paper Fig. 4 neighbourhood: the beam is the
knob a deployment turns), so each beam gets its own report entry with the measured
time per user of the same offline search the service runs.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training.data import load_dataset
from training.evaluate import evaluate
from training.protocols import make_split
from training.reports import provenance, update_quality_report
from training.seater.pipeline import load_run, variant_name
from training.seater.task import SeaterTask

log = logging.getLogger(__name__)


def evaluate_beams(run_dir: Path, beams: list[int], split_name: str = "test",
                   reports_dir: str = "", batch_size: int = 256, max_users: int = 0,
                   threads: int = 0) -> list[dict[str, Any]]:
    """Entries go to the run folder's ``beams.json``, and into
    ``<reports_dir>/quality/<dataset>.json`` when a reports folder is named."""
    if threads:
        torch.set_num_threads(threads)
    model, tree, cfg, _ = load_run(run_dir)
    data = load_dataset(cfg.dataset, cfg.data)
    split = make_split(data, cfg.protocol, seed=cfg.split_seed, refit=cfg.refit)
    evalset = getattr(split, split_name)
    entries = []
    # the run's model.pt is the refit model when the run refit: name it so
    variant = variant_name(cfg) + ("-refit" if cfg.refit else "")
    for beam in beams:
        task = SeaterTask.for_search(model, tree, beam)
        start = time.perf_counter()
        res = evaluate(task, evalset, ks=(5, 10, 20, 50), batch_size=batch_size,
                       exclude_seen=cfg.excludes_seen(), max_users=max_users,
                       seed=cfg.train.seed, desc=f"beam {beam}")
        seconds = time.perf_counter() - start
        entry = {
            "key": f"seater/{cfg.protocol}/{variant}@beam{beam}",
            "model": "seater",
            "variant": f"{variant} evaluated at beam {beam}",
            "dataset": data.name,
            "protocol": {**split.describe(), "exclude_seen": cfg.excludes_seen(),
                         "max_history": cfg.model.max_len},
            "metrics": {split_name: res.metrics},
            "beam_size": beam,
            "eval": {"users": res.n_users, "seconds": round(seconds, 2),
                     "ms_per_user": round(1000 * seconds / max(res.n_users, 1), 3),
                     "batch_size": batch_size, "torch_threads": torch.get_num_threads()},
            "seed": cfg.train.seed,
            **provenance(),
            "run_dir": str(run_dir),
        }
        log.info("beam %d: recall@10=%.4f ndcg@10=%.4f, %.2f ms/user", beam,
                 res.metrics.get("recall@10", np.nan), res.metrics.get("ndcg@10", np.nan),
                 entry["eval"]["ms_per_user"])
        entries.append(entry)
        if reports_dir:
            update_quality_report(data.name, entry, Path(reports_dir))
    (Path(run_dir) / "beams.json").write_text(json.dumps(entries, indent=2))
    return entries
