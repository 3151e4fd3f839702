"""Fixtures shared across packages: a tiny SEATER bundle made by the real export code."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

REDIS_ADDR = ("127.0.0.1", 6379)


def _redis_answers() -> bool:
    try:
        with socket.create_connection(REDIS_ADDR, timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@pytest.fixture(scope="session", autouse=True)
def _redis_running() -> None:
    """Start the local Redis the way CI does when it is not answering (tests that use it
    work under their own key prefix and never flush or stop it)."""
    if _redis_answers() or shutil.which("redis-server") is None:
        return
    subprocess.run(["redis-server", "--daemonize", "yes", "--bind", REDIS_ADDR[0], "--port",
                    str(REDIS_ADDR[1]), "--save", "", "--appendonly", "no"], check=False)
    for _ in range(40):
        if _redis_answers():
            return
        time.sleep(0.25)


@dataclass(frozen=True)
class TinyBundle:
    path: Path
    model: object  # training.seater.model.Seater
    tree: object  # indexer.IdTree
    data: object  # training.data.InteractionData


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory) -> TinyBundle:
    """Synthetic data -> balanced tree -> a briefly trained SEATER -> exported bundle.

    Trained a few steps so scores are not uniform (ties would make top-n comparisons
    meaningless); small enough to build in ~30 s.
    """
    import torch

    from indexer import BuildConfig, build_tree
    from tests.helpers import fit_briefly
    from training.data import SyntheticConfig, make_synthetic
    from training.seater.export import export_bundle
    from training.seater.model import Seater, SeaterParams
    from training.seater.task import LossConfig, SeaterTask

    data = make_synthetic(SyntheticConfig(n_users=300, n_items=90, n_clusters=5, seed=3))
    rng = np.random.default_rng(0)
    tree, _ = build_tree(rng.normal(size=(data.n_items, 8)).astype(np.float32),
                         BuildConfig(k=4, progress=False))
    torch.manual_seed(0)
    model = Seater(tree.n_nodes, tree.max_depth, tree.root,
                   SeaterParams(d_model=16, max_len=12, n_heads=2, dropout=0.0))
    task = SeaterTask(model, tree, data.sequences, torch.device("cpu"), LossConfig())
    fit_briefly(task, model, batch_size=128, steps=15, rng=rng)
    items = {"ids": [str(x) for x in data.item_ids], "titles": data.item_text.title}
    root = tmp_path_factory.mktemp("bundles")
    path = export_bundle(model, tree, items, root, "tiny-v1", data.name,
                         metrics={"test": {"recall@10": 0.0}})
    return TinyBundle(path, model, tree, data)
