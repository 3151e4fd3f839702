"""One rank of the DDP test (``tests/training/test_ddp.py`` launches two with torchrun).

Trains SASRec, then SEATER with the ranking loss off (a parameter without gradients)
and a refit, on a small synthetic set; each rank writes its final SEATER weights so the
test can check that the ranks stayed in sync.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

import training.seater.pipeline as seater_pipeline
from training.sasrec.model import SASRecParams
from training.sasrec.pipeline import SASRecRun, run_sasrec
from training.seater.model import SeaterParams
from training.seater.pipeline import SeaterRun, TreeParams, run_seater
from training.seater.task import LossConfig
from training.trainer import TrainConfig, dist_info


def main(out: Path) -> None:
    rank, world = dist_info()
    assert world == 2, f"run under torchrun --nproc_per_node 2 (WORLD_SIZE={world})"
    data = "synthetic:n_users=300,n_items=60,seed=1"
    train = TrainConfig(epochs=20, patience=1, lr=0.03, batch_size=32, eval_batch_size=64,
                        progress=False, threads=1)
    run_sasrec(SASRecRun(dataset=data, out_dir=str(out),
                         model=replace(SASRecParams(), d_model=16, max_len=10),
                         train=train))
    final = {}
    fit_and_test = seater_pipeline.fit_and_test

    def keep_model(*args, **kwargs):
        outcome = fit_and_test(*args, **kwargs)
        final["model"] = outcome.task.model  # this rank's own copy (the refit one)
        return outcome

    seater_pipeline.fit_and_test = keep_model
    entries = run_seater(SeaterRun(
        dataset=data, out_dir=str(out), refit=True, init_from_sasrec=False,
        beam_size=8, tree=TreeParams(ids="random", k=4),
        model=replace(SeaterParams(), d_model=16, max_len=10, dropout=0.0),
        losses=LossConfig(lambda_rank=0.0), train=train,
    ))
    weights = np.concatenate([p.detach().cpu().numpy().ravel()
                              for p in final["model"].parameters()])
    np.save(out / f"rank{rank}.npy", weights)
    (out / f"rank{rank}.json").write_text(json.dumps(
        [{"key": e["key"], "epochs_run": e["epochs_run"],
          "test": e["metrics"]["test"]["recall@10"]} for e in entries]))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
