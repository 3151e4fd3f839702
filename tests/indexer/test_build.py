"""Builders: hand-checked codes, balance properties, determinism, from_codes collisions."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from indexer import (
    BuildConfig,
    build_balanced,
    build_kmeans,
    build_random,
    build_tree,
    ceil_log,
    from_codes,
    level_sse,
)
from indexer.build import assemble
from indexer.cluster import (
    _cancel_cycles,
    balanced_assign,
    balanced_caps,
    balanced_kmeans_fast,
)
from tests.indexer.conftest import TINY_CODES, TINY_X, clustered

QUIET = {"progress": False}


@pytest.mark.parametrize("splitter", ["exact", "fast"])
def test_hand_checked_tiny_tree(splitter: str) -> None:
    # x = [0, 1, 3, 10, 11], k = 2, L = ceil(log2 5) = 3.
    # root: sizes {2, 3}: {0, 1, 3} | {10, 11}  (SSE 4.67 + 0.5, any other split is worse)
    # {0, 1, 3}: sizes {1, 2}: {0, 1} | {3}      (SSE 0.5 vs 2 for {0} | {1, 3})
    # {10, 11} at depth 1 < L-1: kept splitting into the chains {10} and {11}.
    # Children are ordered by smallest item index, positions 0, 1.
    tree, report = build_balanced(TINY_X, BuildConfig(k=2, splitter=splitter, **QUIET))
    assert tree.codes.tolist() == TINY_CODES.tolist()
    assert tree.node_paths.tolist() == [[6, 8, 0], [6, 8, 1], [6, 9, 2], [7, 10, 3], [7, 11, 4]]
    assert tree.problems("strict") == []
    assert report.splitter == splitter and report.depth == 3 and len(report.level_seconds) == 3
    sse = level_sse(tree, TINY_X)
    assert sse[0] == pytest.approx(42 / 9 + 0.5) and sse[1] == pytest.approx(0.5)
    assert sse[2] == pytest.approx(0.0)


def test_uniform_depth_where_algorithm_1_would_be_ragged() -> None:
    # n = 257, k = 16: the plain recursion leaves a 1-item group at depth 2.
    x = np.random.default_rng(0).standard_normal((257, 4))
    tree, _ = build_balanced(x, BuildConfig(k=16, splitter="fast", **QUIET))
    assert tree.is_uniform and tree.max_depth == 3
    assert tree.problems("strict") == []
    assert (tree.n_children[tree.leaf_item < 0] == 1).any()  # chains exist


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 400), k=st.integers(2, 20), seed=st.integers(0, 2**16),
       method=st.sampled_from(["balanced", "random"]))
def test_balanced_and_random_trees_are_strictly_balanced(n, k, seed, method) -> None:
    x = np.random.default_rng(seed).standard_normal((n, 3))
    tree, report = build_tree(x, BuildConfig(k=k, method=method, splitter="fast", seed=seed,
                                             max_iter=8, **QUIET))
    assert tree.problems("strict") == []
    assert tree.max_depth == ceil_log(n, k) == report.depth
    assert len({tuple(c) for c in tree.codes.tolist()}) == n  # every leaf reachable, once
    assert np.array_equal(tree.leaf_item[tree.item_leaf], np.arange(n))


@pytest.mark.parametrize(("n", "k"), [(17, 16), (40, 3), (130, 4)])
def test_exact_splitter_is_strictly_balanced(n: int, k: int) -> None:
    x = np.random.default_rng(n).standard_normal((n, 3))
    tree, _ = build_balanced(x, BuildConfig(k=k, splitter="exact", max_iter=10, **QUIET))
    assert tree.problems("strict") == []


def test_fast_split_matches_exact_sse() -> None:
    x = np.random.default_rng(1).standard_normal((1200, 8))
    config = BuildConfig(k=8, max_iter=20, **QUIET)
    exact, _ = build_balanced(x, BuildConfig(**{**config.__dict__, "splitter": "exact"}))
    fast, _ = build_balanced(x, BuildConfig(**{**config.__dict__, "splitter": "fast"}))
    random, _ = build_random(len(x), config)
    e, f, r = (level_sse(t, x)[0] for t in (exact, fast, random))
    assert f <= 1.03 * e < r


@settings(max_examples=30, deadline=None)
@given(m=st.integers(2, 300), k=st.integers(2, 12), seed=st.integers(0, 2**16))
def test_balanced_assign_sizes_are_exact(m, k, seed) -> None:
    rng = np.random.default_rng(seed)
    cost = rng.standard_normal((k, m)).astype(np.float32)
    cost[:, : m // 2] = 0.0  # many exact ties
    caps = balanced_caps(m, k)
    labels, _ = balanced_assign(cost, caps, max_sweeps=2)
    assert np.array_equal(np.bincount(labels, minlength=k), caps)
    x = rng.standard_normal((m, 2)).astype(np.float32)
    sizes = np.bincount(balanced_kmeans_fast(x, k, rng, max_iter=5), minlength=k)
    assert sorted(sizes.tolist()) == sorted(balanced_caps(m, k).tolist())


def _brute_force(cost: np.ndarray, sizes_ok) -> float:
    """Cheapest assignment over all label vectors whose cluster sizes pass `sizes_ok`."""
    k, m = cost.shape
    best = np.inf
    for labels in itertools.product(range(k), repeat=m):
        if sizes_ok(np.bincount(labels, minlength=k)):
            best = min(best, float(cost[list(labels), np.arange(m)].sum()))
    return best


@settings(max_examples=40, deadline=None)
@given(m=st.integers(3, 7), k=st.integers(2, 3), seed=st.integers(0, 2**16))
def test_assignment_is_optimal_against_brute_force(m, k, seed) -> None:
    rng = np.random.default_rng(seed)
    cost = rng.integers(0, 4, size=(k, m)).astype(np.float32)  # integer costs: many ties
    caps = balanced_caps(m, k)
    labels, _ = balanced_assign(cost, caps)
    fixed = _brute_force(cost, lambda sizes: np.array_equal(sizes, caps))
    assert float(cost[labels, np.arange(m)].sum()) == pytest.approx(fixed)
    flexible = _cancel_cycles(cost, labels, flexible=True)
    q = m // k
    sizes = np.bincount(flexible, minlength=k)
    assert ((sizes == q) | (sizes == q + 1)).all()
    best = _brute_force(cost, lambda s: bool(((s == q) | (s == q + 1)).all()))
    assert float(cost[flexible, np.arange(m)].sum()) == pytest.approx(best)


def test_builders_are_deterministic_given_a_seed() -> None:
    x = clustered(500)
    for method in ("balanced", "kmeans", "random"):
        config = BuildConfig(k=4, method=method, splitter="fast", seed=3, **QUIET)
        a, _ = build_tree(x, config)
        b, _ = build_tree(x, config)
        assert np.array_equal(a.children, b.children), method
    a, _ = build_random(500, BuildConfig(k=4, seed=1))
    b, _ = build_random(500, BuildConfig(k=4, seed=2))
    assert not np.array_equal(a.codes, b.codes)


def test_kmeans_tree_is_ragged_and_respects_max_depth() -> None:
    x = clustered(600)
    tree, report = build_kmeans(x, BuildConfig(k=4, method="kmeans", **QUIET))
    assert tree.problems("structure") == []
    assert not tree.is_uniform
    assert report.depth == tree.max_depth <= ceil_log(600, 4) + 2
    capped, _ = build_kmeans(x, BuildConfig(k=4, max_depth=ceil_log(600, 4), **QUIET))
    assert capped.problems("structure") == [] and capped.max_depth <= ceil_log(600, 4)
    with pytest.raises(ValueError, match="cannot hold"):
        build_kmeans(x, BuildConfig(k=4, max_depth=2, **QUIET))


def test_kmeans_tree_survives_identical_points() -> None:
    x = np.zeros((100, 3))
    tree, _ = build_kmeans(x, BuildConfig(k=4, **QUIET))
    assert tree.problems("structure") == [] and tree.n_items == 100


def test_from_codes_without_collisions_keeps_codes() -> None:
    codes = np.array([[0, 1], [2, 0], [2, 1], [1, 1]])
    tree, report = from_codes(codes, k=3)
    assert tree.codes.tolist() == codes.tolist()
    assert not report.added_level and report.collision_rate == 0.0 and report.k == 3
    assert tree.problems("balanced") == []


def test_from_codes_resolves_collisions_with_one_level() -> None:
    codes = np.array([[0, 1], [0, 1], [2, 0], [0, 1], [1, 1]])
    tree, report = from_codes(codes, k=3)
    assert report.added_level and report.n_unique_codes == 3 and report.max_collision == 3
    assert report.collision_rate == pytest.approx(3 / 5)
    assert tree.max_depth == 3 and tree.problems("balanced") == []
    assert tree.codes[:, :2].tolist() == codes.tolist()
    assert tree.codes[:, 2].tolist() == [0, 1, 0, 2, 0]


def test_from_codes_grows_k_for_big_collision_groups() -> None:
    codes = np.zeros((5, 2), np.int64)
    tree, report = from_codes(codes, k=2)
    assert tree.k == 5 == report.k and tree.codes[:, 2].tolist() == [0, 1, 2, 3, 4]


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="prefix-free"):
        assemble(np.array([[0, 1], [0, 1]]), k=2)
    with pytest.raises(ValueError, match="prefix-free"):
        assemble(np.array([[0, -1], [0, 1]]), k=2)
    with pytest.raises(ValueError, match="NaN"):
        build_balanced(np.array([[np.nan], [1.0]]), BuildConfig(k=2, **QUIET))
    with pytest.raises(ValueError, match="k must be"):
        build_balanced(np.zeros((3, 2)), BuildConfig(k=1, **QUIET))
    with pytest.raises(ValueError, match="unknown"):
        build_tree(np.zeros((3, 2)), BuildConfig(method="dsi", **QUIET))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-negative"):
        from_codes(np.array([[-1, 0]]))
