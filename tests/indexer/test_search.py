"""Constrained beam search: oracle equality, validity, per-request beams, exclusion."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from indexer import (
    BuildConfig,
    DotProductScorer,
    IdTree,
    TableScorer,
    beam_search,
    build_kmeans,
    exhaustive_search,
)
from tests.indexer.conftest import clustered, make_tree, table_scorer

trees = st.tuples(st.integers(2, 150), st.integers(2, 6), st.sampled_from(["balanced", "random"]),
                  st.integers(0, 1000))


def assert_valid(result, n_want: np.ndarray, forbidden: list[set[int]] | None = None) -> None:
    """Sorted desc, unique, exactly n_want[b] items, nothing forbidden, padding at the end."""
    for b, (items, scores) in enumerate(zip(result.items, result.scores, strict=True)):
        got = items[items >= 0]
        assert len(got) == n_want[b]
        assert (items[: len(got)] >= 0).all()
        assert len(set(got.tolist())) == len(got)
        assert (np.diff(scores[: len(got)]) <= 0).all()
        assert np.isneginf(scores[len(got):]).all()
        if forbidden is not None:
            assert not set(got.tolist()) & forbidden[b]


def test_tiny_tree_matches_hand_scores(tiny: IdTree) -> None:
    # logits 0 everywhere except item 4's leaf: p(item 4) = 1/2 * 1 * 1 (chain under 7).
    logits = np.zeros((1, tiny.n_nodes), np.float32)
    logits[0, 7] = 1.0
    result = beam_search(tiny, TableScorer(tiny.children, logits), 1, 5, 5)
    p7 = np.exp(1) / (1 + np.exp(1))
    want = {3: np.log(p7 / 2), 4: np.log(p7 / 2), 0: np.log((1 - p7) / 4),
            1: np.log((1 - p7) / 4), 2: np.log((1 - p7) / 2)}
    assert sorted(result.items[0].tolist()) == [0, 1, 2, 3, 4]
    for item, score in zip(result.items[0], result.scores[0], strict=True):
        assert score == pytest.approx(want[int(item)], abs=1e-6)
    # ties (3 and 4; 0 and 1) are ordered by node id
    assert result.items[0].tolist() == [3, 4, 2, 0, 1]


@settings(max_examples=30, deadline=None)
@given(spec=trees, batch=st.integers(1, 4))
def test_full_beam_equals_exhaustive_oracle(spec, batch) -> None:
    n, k, method, seed = spec
    tree = make_tree(n, k, method, seed)
    scorer = table_scorer(tree, batch, seed)
    got = beam_search(tree, scorer, batch, beam_size=n, n=n)
    want = exhaustive_search(tree, scorer, batch, n=n)
    assert np.array_equal(got.items, want.items)
    assert np.array_equal(got.scores, want.scores)


@settings(max_examples=30, deadline=None)
@given(spec=trees, beam=st.integers(1, 20), data=st.data())
def test_results_are_valid_sorted_unique_and_exactly_n(spec, beam, data) -> None:
    n_items, k, method, seed = spec
    tree = make_tree(n_items, k, method, seed)
    n = data.draw(st.integers(0, beam))
    result = beam_search(tree, table_scorer(tree, 3, seed), 3, beam, n)
    assert result.items.shape == (3, n) and result.scores.dtype == np.float32
    assert_valid(result, np.full(3, min(n, n_items)))
    codes = tree.codes_of(result.items)
    assert np.array_equal(codes[result.items >= 0], tree.codes[result.items[result.items >= 0]])


@settings(max_examples=25, deadline=None)
@given(spec=trees, data=st.data())
def test_mixed_beams_equal_solo_runs(spec, data) -> None:
    n_items, k, method, seed = spec
    tree = make_tree(n_items, k, method, seed)
    batch = data.draw(st.integers(1, 4))
    beams = np.array(data.draw(st.lists(st.integers(1, 12), min_size=batch, max_size=batch)))
    ns = np.array([data.draw(st.integers(0, b)) for b in beams])
    scorer = table_scorer(tree, batch, seed)
    together = beam_search(tree, scorer, batch, beams, ns)
    for b in range(batch):
        solo = beam_search(tree, TableScorer(tree.children, scorer.logits[b: b + 1]), 1,
                           int(beams[b]), int(ns[b]))
        assert np.array_equal(together.items[b, : ns[b]], solo.items[0])
        assert np.array_equal(together.scores[b, : ns[b]], solo.scores[0])


def test_ties_are_broken_by_node_id_in_batch_and_alone() -> None:
    tree = make_tree(200, 4)
    flat = TableScorer(tree.children, np.zeros((3, tree.n_nodes), np.float32), normalise=False)
    together = beam_search(tree, flat, 3, [5, 9, 2], [5, 9, 2])
    solo = beam_search(tree, TableScorer(tree.children, np.zeros((1, tree.n_nodes), np.float32),
                                         normalise=False), 1, 9, 9)
    assert np.array_equal(together.items[1], solo.items[0])
    assert together.items[1].tolist() == sorted(together.items[1].tolist())  # leaf id == item


@settings(max_examples=30, deadline=None)
@given(spec=trees, data=st.data())
def test_exclusion_matches_oracle_and_is_exact(spec, data) -> None:
    n_items, k, method, seed = spec
    tree = make_tree(n_items, k, method, seed)
    rng = np.random.default_rng(seed)
    batch = 3
    exclude = [rng.choice(n_items, size=rng.integers(0, n_items + 1), replace=True)
               for _ in range(batch)]
    allowed = rng.random(n_items) < data.draw(st.floats(0.0, 1.0))
    scorer = table_scorer(tree, batch, seed)
    got = beam_search(tree, scorer, batch, n_items, n_items, exclude=exclude, allowed=allowed)
    want = exhaustive_search(tree, scorer, batch, n_items, exclude=exclude, allowed=allowed)
    assert np.array_equal(got.items, want.items)
    forbidden = [set(e.tolist()) | set(np.flatnonzero(~allowed).tolist()) for e in exclude]
    beam = data.draw(st.integers(1, 10))
    small = beam_search(tree, scorer, batch, beam, beam, exclude=exclude, allowed=allowed)
    left = np.array([n_items - len(f) for f in forbidden])
    assert_valid(small, np.minimum(beam, left), forbidden)


@settings(max_examples=30, deadline=None)
@given(spec=trees, data=st.data())
def test_per_request_masks_match_the_oracle_solo_runs_and_stay_exact(spec, data) -> None:
    """Filters as masks: requests share a few masks; each gets exactly
    min(n, #items its mask allows minus its exclusions), as if searched alone."""
    n_items, k, method, seed = spec
    tree = make_tree(n_items, k, method, seed)
    rng = np.random.default_rng(seed + 1)
    batch, n_masks = 4, data.draw(st.integers(1, 3))
    masks = rng.random((n_masks, n_items)) < data.draw(st.floats(0.0, 1.0))
    of = rng.integers(0, n_masks, size=batch)
    exclude = [rng.choice(n_items, size=rng.integers(0, n_items // 2 + 1)) for _ in range(batch)]
    scorer = table_scorer(tree, batch, seed)
    got = beam_search(tree, scorer, batch, n_items, n_items, exclude=exclude, allowed=masks,
                      allowed_of=of)
    want = exhaustive_search(tree, scorer, batch, n_items, exclude=exclude, allowed=masks,
                             allowed_of=of)
    assert np.array_equal(got.items, want.items)
    beam = data.draw(st.integers(1, 10))
    small = beam_search(tree, scorer, batch, beam, beam, exclude=exclude, allowed=masks,
                        allowed_of=of)
    forbidden = [set(exclude[b].tolist()) | set(np.flatnonzero(~masks[of[b]]).tolist())
                 for b in range(batch)]
    left = np.array([n_items - len(f) for f in forbidden])
    assert_valid(small, np.minimum(beam, left), forbidden)
    for b in range(batch):  # a request's answer does not depend on its batch-mates' masks
        alone = beam_search(tree, table_scorer(tree, batch, seed), batch, beam, beam,
                            exclude=[exclude[b]] * batch, allowed=masks[of[b]])
        assert np.array_equal(small.items[b], alone.items[b])


def test_a_mask_table_needs_its_row_per_request() -> None:
    tree = make_tree(50, 4)
    scorer = table_scorer(tree, 2)
    with pytest.raises(ValueError, match="allowed_of"):
        beam_search(tree, scorer, 2, 3, 3, allowed=np.ones((2, 50), bool))
    with pytest.raises(ValueError, match="index the 2 mask rows"):
        beam_search(tree, scorer, 2, 3, 3, allowed=np.ones((2, 50), bool), allowed_of=[0, 2])


def test_excluding_a_whole_subtree_prunes_it() -> None:
    tree = make_tree(256, 4, seed=1)
    favourite = int(tree.children[tree.root, 0])
    logits = np.zeros((1, tree.n_nodes), np.float32)
    logits[0, favourite] = 50.0  # beam 1 would walk into this subtree and find nothing
    scorer = TableScorer(tree.children, logits)
    lo, hi = tree.leaf_lo[favourite], tree.leaf_hi[favourite]
    banned = tree.leaf_order[lo:hi]
    result = beam_search(tree, scorer, 1, beam_size=1, n=1, exclude=[banned])
    assert result.items[0, 0] >= 0 and result.items[0, 0] not in set(banned.tolist())
    as_array = beam_search(tree, scorer, 1, 1, 1, exclude=banned[None, :])
    assert np.array_equal(result.items, as_array.items)


def test_excluding_all_but_m_items_returns_exactly_m() -> None:
    tree = make_tree(300, 5, seed=2)
    keep = np.array([7, 150, 299])
    exclude = np.setdiff1d(np.arange(300), keep)
    padded = np.full((2, 300), -1)
    padded[0, : len(exclude)] = exclude
    result = beam_search(tree, table_scorer(tree, 2), 2, beam_size=20, n=10,
                         exclude=[exclude, np.arange(300)])
    assert sorted(result.items[0][result.items[0] >= 0].tolist()) == keep.tolist()
    assert (result.items[1] == -1).all()
    padded_result = beam_search(tree, table_scorer(tree, 2), 2, 20, 10, exclude=padded,
                                allowed=np.isin(np.arange(300), keep))
    assert np.array_equal(np.sort(padded_result.items[0][:3]), keep)
    assert np.array_equal(np.sort(padded_result.items[1][:3]), keep)


@settings(max_examples=15, deadline=None)
@given(n=st.integers(20, 300), seed=st.integers(0, 1000), beam=st.integers(1, 30))
def test_variable_depth_tree(n, seed, beam) -> None:
    tree, _ = build_kmeans(clustered(n, seed), BuildConfig(k=3, seed=seed, progress=False))
    scorer = table_scorer(tree, 2, seed)
    got = beam_search(tree, scorer, 2, n, n)
    want = exhaustive_search(tree, scorer, 2, n)
    assert np.array_equal(got.items, want.items)
    assert_valid(beam_search(tree, scorer, 2, beam, beam), np.full(2, min(beam, n)))


def test_variable_depth_tree_is_really_ragged() -> None:
    tree, _ = build_kmeans(clustered(200), BuildConfig(k=3, progress=False))
    assert not tree.is_uniform


def test_scorer_sees_grouped_rows_starting_at_the_root() -> None:
    tree = make_tree(500, 4)
    seen = []
    inner = table_scorer(tree, 2)

    def scorer(prefix: np.ndarray) -> np.ndarray:
        seen.append(prefix.copy())
        return inner(prefix)

    beam_search(tree, scorer, 2, [3, 6], [3, 6])
    assert seen[0].shape == (2, 1, 1)
    assert [p.shape[2] for p in seen] == list(range(1, tree.max_depth + 1))
    assert all((p[..., 0] == tree.root).all() for p in seen)
    assert max(p.shape[1] for p in seen) == 6
    for p in seen:  # every row is a real path: each token is a child of the previous one
        for t in range(1, p.shape[2]):
            assert (tree.parent[p[..., t]] == p[..., t - 1]).all()


def test_dot_product_scorer_gives_log_probabilities() -> None:
    tree = make_tree(100, 4)
    rng = np.random.default_rng(0)
    scorer = DotProductScorer(tree.children, rng.standard_normal((tree.n_nodes, 8)),
                              rng.standard_normal((2, 8)))
    logp = scorer(np.full((2, 1, 1), tree.root))
    assert logp.shape == (2, 1, 4) and logp.dtype == np.float32
    assert np.exp(logp).sum(axis=-1) == pytest.approx(1.0, abs=1e-5)
    result = beam_search(tree, scorer, 2, 10, 5)
    assert_valid(result, np.full(2, 5))


class _FakeDeviceTensor:
    """Quacks like a CUDA tensor: np.asarray would fail, .detach().cpu().numpy() works."""

    def __init__(self, values: np.ndarray) -> None:
        self.values = values

    def __array__(self, *args, **kwargs):
        raise TypeError("can't convert a device tensor to numpy; use .cpu()")

    def detach(self) -> _FakeDeviceTensor:
        return self

    def cpu(self) -> _FakeDeviceTensor:
        return self

    def numpy(self) -> np.ndarray:
        return self.values


def test_device_tensor_outputs_are_copied_to_the_host() -> None:
    tree = make_tree(120, 4)
    scorer = table_scorer(tree, 2)
    on_host = beam_search(tree, scorer, 2, 8, 8)
    on_device = beam_search(tree, lambda p: _FakeDeviceTensor(scorer(p)), 2, 8, 8)
    assert np.array_equal(on_host.items, on_device.items)


def test_empty_batch() -> None:
    tree = make_tree(20, 4)
    result = beam_search(tree, table_scorer(tree, 1), 0, 5, 5)
    assert result.items.shape == (0, 0) and result.n_steps == 0


def test_bad_calls_are_refused() -> None:
    tree = make_tree(50, 4)
    scorer = table_scorer(tree, 1)
    with pytest.raises(ValueError, match="n <= beam_size"):
        beam_search(tree, scorer, 1, 3, 4)
    with pytest.raises(ValueError, match="outside"):
        beam_search(tree, scorer, 1, 3, 3, exclude=[[50]])
    with pytest.raises(ValueError, match="scorer returned shape"):
        beam_search(tree, lambda p: np.zeros((1, 1, 2), np.float32), 1, 3, 3)
    with pytest.raises(ValueError, match="NaN"):
        beam_search(tree, lambda p: np.full((1, p.shape[1], 4), np.nan, np.float32), 1, 3, 3)
    with pytest.raises(ValueError, match="allowed"):
        beam_search(tree, scorer, 1, 3, 3, allowed=np.ones(49, bool))
    with pytest.raises(ValueError, match="beam_size"):
        beam_search(tree, scorer, 1, [3, 3], 3)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), rows=st.integers(1, 5), c=st.integers(1, 40))
def test_top_k_selection_matches_a_full_sort_under_heavy_ties(data, rows, c) -> None:
    # Scores from a handful of values (and -inf) put ties at the partition bound, the
    # case where the fast path must hand over to the exact sort.
    from indexer.search import _top

    width = data.draw(st.integers(1, c))
    values = st.sampled_from([-np.inf, -3.0, -1.0, -1.0, 0.0])
    score = np.array(data.draw(st.lists(values, min_size=rows * c, max_size=rows * c)))
    score = score.reshape(rows, c)
    node = np.array(data.draw(st.permutations(range(rows * c)))).reshape(rows, c)
    want = np.lexsort((node, -score), axis=-1)[:, :width]
    assert np.array_equal(_top(score, node, width), want)
