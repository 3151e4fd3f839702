"""The tree oracle: the SASRec's distribution folded onto the tree, searched like SEATER."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from benchmarks.tree_oracle import FoldedTeacher
from indexer import build_tree, from_codes
from indexer.build import BuildConfig
from training.data import Sequences
from training.seater.distill import TreeTeacher


class TableSASRec:
    """Scores from a table: a history's last item picks the row of log-probabilities."""

    def __init__(self, probs: np.ndarray) -> None:
        self.logp = torch.log(torch.as_tensor(probs, dtype=torch.float64))
        self.p = SimpleNamespace(max_len=4)
        self.n_items = self.pad_id = probs.shape[1]

    def to(self, device: torch.device) -> TableSASRec:
        return self

    def eval(self) -> TableSASRec:
        return self

    def requires_grad_(self, flag: bool) -> TableSASRec:
        return self

    def scores(self, seq: torch.Tensor) -> torch.Tensor:
        return self.logp[seq[:, -1]]


def oracle(probs: np.ndarray, tree, beam: int) -> FoldedTeacher:
    teacher = TreeTeacher(TableSASRec(probs), tree, 1.0, torch.device("cpu"))
    return FoldedTeacher(teacher, tree, beam)


def test_a_narrow_beam_loses_the_best_item_when_its_sibling_is_unlikely():
    # items 0, 1 under one root child (mass .6), items 2, 3 under the other (mass .4)
    tree, _ = from_codes(np.array([[0, 0], [0, 1], [1, 0], [1, 1]]), k=2)
    probs = np.array([[0.30, 0.25, 0.40, 0.05]] * 4)
    history = Sequences.from_lists([[0]])
    assert oracle(probs, tree, beam=0).recommend(history, 2, None).tolist() == [[2, 0]]
    # beam 1 keeps only the heavier subtree: item 2 (.40) is never reached
    assert oracle(probs, tree, beam=1).recommend(history, 2, None).tolist() == [[0, -1]]
    assert oracle(probs, tree, beam=2).recommend(history, 2, None).tolist() == [[2, 0]]
    # excluding item 2 moves its subtree's mass to .05 and the answer to the exhaustive one
    seen = Sequences.from_lists([[2]])
    assert oracle(probs, tree, beam=0).recommend(history, 2, seen).tolist() == [[0, 1]]
    assert oracle(probs, tree, beam=2).recommend(history, 2, seen).tolist() == [[0, 1]]


def test_a_beam_as_wide_as_the_catalogue_ranks_exactly_like_the_softmax():
    rng = np.random.default_rng(0)
    n_items = 40
    tree, _ = build_tree(rng.normal(size=(n_items, 4)).astype(np.float32), BuildConfig(k=3))
    probs = rng.dirichlet(np.full(n_items, 0.3), size=n_items)
    histories = Sequences.from_lists([[i] for i in range(n_items)])
    seen = Sequences.from_lists([[i, (i + 1) % n_items] for i in range(n_items)])
    exact = oracle(probs, tree, beam=0).recommend(histories, 10, seen)
    wide = oracle(probs, tree, beam=n_items).recommend(histories, 10, seen)
    np.testing.assert_array_equal(wide, exact)
    excluded = seen.to_padded(2, pad=-1)  # [users, 2]
    assert not (exact[:, :, None] == excluded[:, None, :]).any()
    # a narrow beam returns fewer items, never an excluded one
    narrow = oracle(probs, tree, beam=3).recommend(histories, 10, seen)
    assert (narrow[:, 3:] == -1).all() and (narrow[:, :3] >= 0).all()
    assert not (narrow[:, :, None] == excluded[:, None, :]).any()


def test_each_target_is_traced_to_the_depth_it_left_the_beam_at():
    from benchmarks.tree_oracle import traced_evaluate
    from training.protocols import EvalSet

    tree, _ = from_codes(np.array([[0, 0], [0, 1], [1, 0], [1, 1]]), k=2)
    probs = np.array([[0.30, 0.25, 0.40, 0.05]] * 4)
    narrow = oracle(probs, tree, beam=1)
    # three users with the same history; targets: item 0 (found first), item 1 (its
    # subtree kept, the leaf not in the top 1), item 2 (its subtree dropped at depth 1)
    evalset = EvalSet(np.arange(3), Sequences.from_lists([[3], [3], [3]]),
                      Sequences.from_lists([[0], [1], [2]]))
    out = traced_evaluate(lambda h, n, x, step: narrow.search(h, n, x, step), tree, evalset,
                          n=1, exclude_seen=False)
    assert out["where_targets_went"] == {"lost_at_depth_1": round(1 / 3, 4),
                                         "lost_at_depth_2": round(1 / 3, 4),
                                         "found_in_top10": round(1 / 3, 4),
                                         "found_below_top10": 0.0}
    assert out["metrics"]["recall@5"] == pytest.approx(1 / 3)
