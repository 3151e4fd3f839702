"""Data-parallel training under torchrun: two CPU processes (gloo) train as one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def test_two_processes_train_in_sync_stop_together_and_rank0_alone_writes(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
         "2", str(ROOT / "tests" / "training" / "ddp_worker.py"), str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    w0, w1 = np.load(tmp_path / "rank0.npy"), np.load(tmp_path / "rank1.npy")
    assert np.array_equal(w0, w1)  # gradients were all-reduced: identical replicas
    r0 = json.loads((tmp_path / "rank0.json").read_text())
    r1 = json.loads((tmp_path / "rank1.json").read_text())
    assert r0 == r1  # same early-stopping epoch and the same test numbers on both ranks
    assert r0[0]["epochs_run"] < 20  # it did stop early: rank 0's decision reached rank 1
    assert [e["key"].rsplit("/", 1)[0] for e in r0] == ["seater/loo", "seater/loo"]
    run = next(tmp_path.glob("*/seater-loo-random-k4"))
    fit_rows = (run / "fit" / "metrics.jsonl").read_text().splitlines()
    assert len(fit_rows) == r0[0]["epochs_run"]  # one row per epoch, written once
    assert (run / "model.pt").is_file() and (run / "result.json").is_file()
    assert "valid_ndcg@10" in json.loads(fit_rows[0])  # rank 0 evaluated
