"""Hand-computed metric cases: every expected number below was worked out on paper."""

import math

import numpy as np
import pytest

from training.data.sequences import Sequences
from training.metrics import compute_metrics, hit_matrix, n_relevant, topk_indices


def m(ranked, targets, ks=(1, 2, 3, 4)):
    return compute_metrics(np.array(ranked), Sequences.from_lists(targets), ks)


def test_single_target_loo():
    out = m([[3, 1, 2]], [[1]], ks=(1, 2, 3))
    assert out["recall@1"] == 0.0 and out["hr@1"] == 0.0 and out["ndcg@1"] == 0.0
    assert out["recall@2"] == 1.0 and out["hr@2"] == 1.0
    assert out["ndcg@2"] == pytest.approx(1 / math.log2(3))
    assert out["ndcg@3"] == pytest.approx(1 / math.log2(3))


def test_target_set_recall_hr_ndcg():
    # hits at ranks 2 and 4 (1-based); three relevant items, one never retrieved
    out = m([[5, 2, 7, 1]], [[2, 1, 9]])
    assert out["recall@4"] == pytest.approx(2 / 3)
    assert out["hr@1"] == 0.0 and out["hr@2"] == 1.0
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    idcg = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert out["ndcg@4"] == pytest.approx(dcg / idcg)


def test_fewer_relevant_than_k_uses_min_ideal():
    out = m([[4, 2, 0, 1]], [[2]])
    assert out["ndcg@4"] == pytest.approx(1 / math.log2(3))  # ideal is one hit at rank 1
    assert out["recall@4"] == 1.0


def test_duplicates_in_ranked_list_count_once():
    hits = hit_matrix(np.array([[2, 2, 3]]), Sequences.from_lists([[2, 3]]))
    assert hits.tolist() == [[True, False, True]]
    assert m([[2, 2, 3]], [[2, 3]], ks=(3,))["recall@3"] == 1.0


def test_duplicate_targets_are_a_set():
    assert n_relevant(Sequences.from_lists([[2, 2, 5], [7]])).tolist() == [2, 1]
    assert m([[2, 9]], [[2, 2]], ks=(2,))["recall@2"] == 1.0


def test_empty_slots_never_hit_and_users_average():
    out = m([[-1, 0], [1, -1]], [[0], [0]], ks=(2,))
    assert out["recall@2"] == 0.5  # user 0 hits at rank 2, user 1 misses
    assert out["ndcg@2"] == pytest.approx((1 / math.log2(3)) / 2)


def test_k_beyond_list_length_uses_available_columns():
    out = m([[1, 2]], [[2]], ks=(5,))
    assert out["recall@5"] == 1.0


def test_topk_ties_go_to_lower_index_without_a_seed():
    scores = np.array([[1.0, 3.0, 3.0, 0.0, 3.0], [0.0, 0.0, 0.0, 0.0, 0.0]])
    assert topk_indices(scores, 2, tie_seed=None).tolist() == [[1, 2], [0, 1]]
    assert topk_indices(scores, 4, tie_seed=None).tolist() == [[1, 2, 4, 0], [0, 1, 2, 3]]


def test_topk_with_masked_items_and_k_larger_than_n():
    scores = np.array([[-np.inf, 2.0, -np.inf]])
    assert topk_indices(scores, 5, tie_seed=None).tolist() == [[1, 0, 2]]
    got = topk_indices(scores, 5)[0].tolist()
    assert got[0] == 1 and sorted(got[1:]) == [0, 2]


def test_topk_matches_full_sort_on_random_scores():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, size=(50, 40)).astype(np.float32)  # many ties
    expected = np.lexsort((np.arange(40)[None, :].repeat(50, 0), -scores), axis=1)[:, :7]
    assert np.array_equal(topk_indices(scores, 7, tie_seed=None), expected)
    # random ties: still a top-7 (same values, best first, no repeats), reproducible
    got = topk_indices(scores, 7)
    vals = np.take_along_axis(scores, got, axis=1)
    assert np.array_equal(vals, np.take_along_axis(scores, expected, axis=1))
    assert all(len(set(r)) == 7 for r in got.tolist())
    assert np.array_equal(got, topk_indices(scores, 7))
    assert not np.array_equal(got, expected)


def test_a_constant_score_model_gets_chance_level_recall():
    # 10 items scored equally, every target is item 0 (the lowest index): the
    # lower-index rule puts it first for everyone (recall@2 = 1); random ties must give
    # chance, |top-2| / |items| = 2/10 (4000 users: standard error 0.006)
    users, items = 4000, 10
    ranked = topk_indices(np.zeros((users, items)), 2)
    targets = Sequences.from_lists([[0]] * users)
    got = compute_metrics(ranked, targets, ks=(1, 2))
    assert got["recall@2"] == pytest.approx(2 / 10, abs=0.03)
    assert got["recall@1"] == pytest.approx(1 / 10, abs=0.03)  # order inside the list too
    lower = compute_metrics(topk_indices(np.zeros((users, items)), 2, tie_seed=None),
                            targets, ks=(2,))
    assert lower["recall@2"] == 1.0


def test_mismatched_users_raise():
    with pytest.raises(ValueError, match="target sets"):
        hit_matrix(np.zeros((2, 3), dtype=int), Sequences.from_lists([[1]]))
