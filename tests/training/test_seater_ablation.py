"""Ablation arms differ only in the switched loss: same batches, negatives and dropout
masks whatever a loss weight is, so a gap between arms is the loss's, not the noise's."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from indexer import BuildConfig, build_tree
from training.data.synthetic import SyntheticConfig, make_synthetic
from training.protocols import make_split
from training.seater.model import Seater, SeaterParams
from training.seater.task import LossConfig, SeaterTask
from training.trainer import TrainConfig, seed_everything, train


class Recording(SeaterTask):
    """Keeps, per batch, what the arm saw: examples, negatives' seed, generation loss and
    the torch generator's state after the forward pass (the dropout stream)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.seen: list[tuple[np.ndarray, tuple[int, int], float, torch.Tensor]] = []

    def loss(self, batch, module=None):
        total, logs = super().loss(batch, module)
        self.seen.append((batch.idx.copy(), batch.seed, logs["gen"], torch.get_rng_state()))
        return total, logs


@pytest.fixture(scope="module")
def setup():
    data = make_synthetic(SyntheticConfig(n_users=160, n_items=64, seed=3))
    split = make_split(data, "loo")
    rng = np.random.default_rng(0)
    tree, _ = build_tree(rng.normal(size=(64, 4)).astype(np.float32),
                         BuildConfig(k=4, progress=False))
    return split, tree


def run_arm(setup, tmp_path, losses: LossConfig, lr: float, epochs: int) -> Recording:
    split, tree = setup
    seed_everything(0)
    model = Seater(tree.n_nodes, tree.max_depth, tree.root,
                   SeaterParams(d_model=16, max_len=8, dropout=0.3))
    task = Recording(model, tree, split.train, torch.device("cpu"), losses, beam_size=8)
    cfg = TrainConfig(epochs=epochs, patience=epochs, batch_size=32, lr=lr, progress=False,
                      max_eval_users=20, metric="recall@5", threads=1)
    train(task, split.valid, cfg, tmp_path, resume=False)
    return task


def test_arms_see_the_same_batches_and_dropout_masks(setup, tmp_path):
    # lr = 0: nothing moves, so an arm's generation loss depends only on what it was
    # fed and on its dropout masks; the ranking loss switched on must change neither
    off = run_arm(setup, tmp_path / "off", LossConfig(lambda_rank=0.0, lambda_align=0.0),
                  lr=0.0, epochs=2)
    on = run_arm(setup, tmp_path / "on", LossConfig(lambda_rank=0.5, lambda_align=0.5),
                 lr=0.0, epochs=2)
    assert len(off.seen) == len(on.seen) > 10
    for a, b in zip(off.seen, on.seen, strict=True):
        assert np.array_equal(a[0], b[0]) and a[1] == b[1]
        assert a[2] == b[2]  # bit-identical generation loss
        assert torch.equal(a[3], b[3])


def test_training_arms_keep_one_data_order(setup, tmp_path):
    # with real updates the arms' models part, but their batches stay the same
    off = run_arm(setup, tmp_path / "off", LossConfig(lambda_rank=0.0), lr=3e-3, epochs=3)
    on = run_arm(setup, tmp_path / "on", LossConfig(lambda_rank=0.5), lr=3e-3, epochs=3)
    assert [s[1] for s in off.seen] == [s[1] for s in on.seen]
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(off.seen, on.seen, strict=True))
    assert off.seen[-1][2] != on.seen[-1][2]  # the gradients did differ


def test_a_batch_draws_the_same_negatives_wherever_it_runs(setup):
    split, tree = setup
    model = Seater(tree.n_nodes, tree.max_depth, tree.root, SeaterParams(d_model=16, max_len=8))
    task = SeaterTask(model, tree, split.train, torch.device("cpu"), LossConfig())
    batches = list(task.batches(np.random.default_rng(0), 32))
    again = list(task.batches(np.random.default_rng(0), 32))
    assert [b.seed for b in batches] == [b.seed for b in again]
    assert len({b.seed for b in batches}) == len(batches)
    # a weight of 0 is the same computation, multiplied by 0
    torch.manual_seed(0)
    _, with_rank = task.loss(batches[1])
    task.losses = replace(task.losses, lambda_rank=0.0)
    torch.manual_seed(0)
    _, without = task.loss(batches[1])
    assert with_rank["rank"] == without["rank"] and with_rank["gen"] == without["gen"]
    assert without["total"] == pytest.approx(without["gen"] + 0.05 * without["align"])
