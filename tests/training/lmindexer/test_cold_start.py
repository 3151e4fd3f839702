"""Cold start without retraining: code -> place at the semantic path -> embed new nodes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from indexer import from_codes
from indexer.insert import extend_node_table, insert_by_code
from tests.training.lmindexer.helpers import FAST, TINY, tiny_corpus
from training.lmindexer.cold_start import cold_start, extend_items
from training.lmindexer.config import AssignParams
from training.lmindexer.train import train_indexer
from training.seater.model import Seater, SeaterParams


def always(order):
    return lambda j, taken: np.asarray(order)


def test_new_item_takes_its_code_where_free_and_the_next_best_where_full():
    tree, _ = from_codes(np.array([[0, 0], [0, 1], [1, 0]]))  # k=2, depth 2, capacity 4
    new, codes = insert_by_code(tree, always([0, 1]), 1, semantic_levels=2, code_k=2)
    # code 0 at level 1 is full (2 of 2 leaves), so level 1 takes code 1, then the free slot
    assert codes.tolist() == [[1, 1]]
    assert new.version == tree.version + 1 and new.n_items == 4
    assert np.array_equal(new.codes[:3], tree.codes)
    new.validate("balanced")
    with pytest.raises(ValueError, match="holds at most 4"):
        insert_by_code(new, always([0, 1]), 1, semantic_levels=2, code_k=2)


def test_a_new_branch_opens_at_an_unused_code():
    tree, _ = from_codes(np.array([[0, 0], [0, 1]]), k=3)
    new, codes = insert_by_code(tree, always([2, 0, 1]), 2, semantic_levels=2, code_k=3)
    assert codes.tolist() == [[2, 2], [2, 0]]
    assert new.n_nodes == tree.n_nodes + 3  # one branch node, two leaves
    new.validate("balanced")


def test_disambiguation_level_takes_the_first_free_slot():
    tree, report = from_codes(np.array([[0], [0], [1]]))  # collision: extra level, k=2
    assert report.added_level and tree.max_depth == 2
    new, codes = insert_by_code(tree, always([0, 1]), 1, semantic_levels=1, code_k=2)
    assert codes.tolist() == [[1, 1]]  # code 0's group is full (2 = k), code 1 has room
    new.validate("balanced")


def test_new_leaf_embedding_is_its_siblings_mean():
    tree, _ = from_codes(np.array([[0, 0], [0, 1], [1, 0]]), k=3)
    table = np.arange(tree.n_nodes * 2, dtype=np.float32).reshape(-1, 2)
    new, codes = insert_by_code(tree, always([0, 1, 2]), 1, semantic_levels=2, code_k=3)
    assert codes.tolist() == [[0, 2]]
    out = extend_node_table(tree, new, table)
    assert out.shape == (new.n_nodes, 2)
    np.testing.assert_array_equal(out[: tree.n_nodes], table)
    np.testing.assert_allclose(out[new.item_leaf[3]], table[[0, 1]].mean(axis=0))


def test_a_grown_model_keeps_weights_and_appends_rows():
    model = Seater(10, 2, 3, SeaterParams(d_model=8, max_len=4, n_heads=2, dropout=0.0))
    table = np.concatenate([model.node_emb.weight.detach().numpy(),
                            np.ones((2, 8), np.float32)])
    grown = model.with_node_table(table)
    assert grown.node_emb.weight.shape == (12, 8) and model.node_emb.weight.shape == (10, 8)
    assert torch.equal(grown.layers[0].cross_q.weight, model.layers[0].cross_q.weight)


def test_cold_start_codes_new_items_like_their_topic():
    corpus = tiny_corpus(n=40)
    out = train_indexer(corpus, TINY, FAST, AssignParams(max_collision=3, slack=math.inf))
    tree, _ = from_codes(out.codes)
    table = np.random.default_rng(0).normal(size=(tree.n_nodes, 4)).astype(np.float32)
    x_new = corpus.x[[0, 1]] + 1e-3  # near-copies of items 0 and 1 (topics 0 and 1)
    res = cold_start(tree, out.model, x_new, table)
    assert res.items.tolist() == [40, 41] and res.tree.n_items == 42
    assert res.node_emb.shape == (res.tree.n_nodes, 4)
    assert np.array_equal(res.tree.codes[:40], tree.codes)
    # the twin of item i starts where the indexer codes item i
    assert res.preferred[:, 0].tolist() == out.model.greedy_codes(
        torch.from_numpy(corpus.x[[0, 1]]))[:, 0].tolist()
    assert res.codes[:, 0].tolist() == res.preferred[:, 0].tolist()
    res.tree.validate("balanced")


def test_extend_items_appends_ids_and_titles():
    items = {"ids": ["1", "2"], "titles": ["a", "b"]}
    out = extend_items(items, ["new-1"], ["brand new"])
    assert out == {"ids": ["1", "2", "new-1"], "titles": ["a", "b", "brand new"]}
    with pytest.raises(ValueError, match="already present"):
        extend_items(items, ["2"])
