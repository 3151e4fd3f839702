"""Insertion: invariants kept, existing codes untouched (or reported), ids appended."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from indexer import (
    BuildConfig,
    IdTree,
    InsertConfig,
    beam_search,
    build_balanced,
    build_kmeans,
    from_codes,
    insert_items,
    node_centroids,
)
from tests.indexer.conftest import clustered, table_scorer

QUIET = BuildConfig(k=4, splitter="fast", progress=False, max_iter=10)


def built(n: int, k: int = 4, seed: int = 0, d: int = 3) -> tuple[IdTree, np.ndarray]:
    x = np.random.default_rng(seed).standard_normal((n, d))
    tree, _ = build_balanced(x, BuildConfig(**{**QUIET.__dict__, "k": k, "seed": seed}))
    return tree, x


def assert_kept(before: IdTree, after: IdTree) -> None:
    """Old node ids keep their meaning: same parent, depth, item, and old child slots."""
    n = before.n_nodes
    assert np.array_equal(after.parent[:n], before.parent)
    assert np.array_equal(after.depth[:n], before.depth)
    assert np.array_equal(after.leaf_item[:n], before.leaf_item)
    old = before.children >= 0
    assert np.array_equal(after.children[:n][old], before.children[old])
    assert np.array_equal(after.codes[: before.n_items], before.codes)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 200), k=st.integers(2, 6), m=st.integers(1, 60),
       seed=st.integers(0, 1000))
def test_room_policy_keeps_invariants_and_codes(n, k, m, seed) -> None:
    tree, x = built(n, k, seed)
    m = min(m, k**tree.max_depth - n)
    if m == 0:
        return
    new = np.random.default_rng(seed + 1).standard_normal((m, x.shape[1]))
    after, report = insert_items(tree, new, item_embeddings=x)
    assert after.problems("balanced") == []
    assert after.max_depth == tree.max_depth and after.version == tree.version + 1
    assert_kept(tree, after)
    assert len(report.moved_items) == 0 and report.n_splits == 0
    assert report.items.tolist() == list(range(n, n + m))
    assert (report.leaves >= tree.n_nodes).all()  # appended, never reused
    assert np.array_equal(after.codes[report.items], report.codes)
    assert after.n_nodes == tree.n_nodes + report.n_new_nodes


def test_new_item_lands_next_to_its_twin() -> None:
    # 4 far-apart super-blobs x 4 blobs x 3 points, k = 4: the balanced tree recovers
    # the blobs, each leaf group has 3 of 4 slots used, so a twin joins its blob.
    # (On unstructured data a balanced split need not match nearest centroids.)
    rng = np.random.default_rng(0)
    centres = np.array([[100.0 * s, 10.0 * b] for s in range(4) for b in range(4)])
    x = np.repeat(centres, 3, axis=0) + 0.01 * rng.standard_normal((48, 2))
    tree, _ = build_balanced(x, QUIET)
    assert tree.max_depth == 3 and (tree.n_children[tree.depth == 2] == 3).all()
    after, report = insert_items(tree, x[[17]] + 0.001, item_embeddings=x)
    assert np.array_equal(report.codes[0, :-1], tree.codes[17, :-1])
    assert report.codes[0, -1] == 3
    again, _ = insert_items(tree, x[[17]] + 0.001, centroids=node_centroids(tree, x))
    assert np.array_equal(again.children, after.children)


def test_full_groups_are_skipped_or_branched_without_moving_anyone() -> None:
    # 16 items, k = 4: depth 2 and every group full except none: capacity 16 -> full.
    tree, x = built(16, 4)
    with pytest.raises(ValueError, match="tree is full"):
        insert_items(tree, x[:1], item_embeddings=x)
    # 13 items: root has 4 children with 4,3,3,3 leaves; a twin of an item in the full
    # group must go to a group with room.
    tree, x = built(13, 4)
    full = int(np.flatnonzero(tree.n_children == 4)[0])
    twin = int(tree.leaf_item[tree.children[full, 0]])
    after, report = insert_items(tree, x[[twin]], item_embeddings=x)
    assert int(after.parent[report.leaves[0]]) != full
    assert_kept(tree, after)


def test_room_policy_opens_a_new_branch_when_children_are_full() -> None:
    codes = np.array([[0, 0], [0, 1]])  # k = 2, depth 2: root has one full child
    tree, _ = from_codes(codes, k=2)
    after, report = insert_items(tree, np.zeros((2, 1)), item_embeddings=np.zeros((2, 1)))
    assert report.codes.tolist() == [[1, 0], [1, 1]] and report.n_new_nodes == 3
    assert after.problems("balanced") == []


def test_split_policy_reports_moved_items() -> None:
    codes = np.array([[0, 0], [0, 1], [0, 2], [0, 3], [1, 0]])
    tree, _ = from_codes(codes, k=4)
    x = np.array([[0.0, 0], [0.1, 0], [5, 5], [5.1, 5], [20, 20]])
    after, report = insert_items(tree, np.array([[0.05, 0.01]]), item_embeddings=x,
                                 config=InsertConfig(policy="split"))
    assert after.problems("balanced") == [] and report.n_splits == 1
    assert report.moved_items.tolist() == [0, 1]
    assert report.moved_old_codes.tolist() == [[0, 0], [0, 1]]
    assert report.moved_new_codes.tolist() == [[2, 0], [2, 1]]
    assert report.codes.tolist() == [[2, 2]]
    unmoved = np.setdiff1d(np.arange(5), report.moved_items)
    assert np.array_equal(after.codes[unmoved], tree.codes[unmoved])
    # the room policy on the same input moves nobody
    _, calm = insert_items(tree, np.array([[0.05, 0.01]]), item_embeddings=x)
    assert len(calm.moved_items) == 0 and calm.codes.tolist() == [[1, 1]]


@settings(max_examples=15, deadline=None)
@given(n=st.integers(2, 120), m=st.integers(1, 80), seed=st.integers(0, 1000))
def test_split_policy_keeps_invariants(n, m, seed) -> None:
    tree, x = built(n, 3, seed)
    m = min(m, 3**tree.max_depth - n)
    if m == 0:
        return
    new = np.random.default_rng(seed).standard_normal((m, 3))
    after, report = insert_items(tree, new, item_embeddings=x, config=InsertConfig("split"))
    assert after.problems("balanced") == []
    unmoved = np.setdiff1d(np.arange(n), report.moved_items)
    assert np.array_equal(after.codes[unmoved], tree.codes[unmoved])
    assert np.array_equal(after.codes[report.moved_items], report.moved_new_codes)


def test_inserted_tree_round_trips_and_searches(tmp_path) -> None:
    tree, x = built(200, 4)
    new = np.random.default_rng(9).standard_normal((20, 3))
    after, report = insert_items(tree, new, item_embeddings=x)
    back = IdTree.load(after.save(tmp_path / "tree.npz"), validate="balanced")
    assert back.version == 1 and np.array_equal(back.children, after.children)
    logits = np.zeros((2, after.n_nodes), np.float32)
    logits[:, after.paths_of(report.items).ravel()] = 5.0  # new items' paths are favourites
    scorer = table_scorer(after, 2)
    scorer.logits[:] = logits
    result = beam_search(after, scorer, 2, 30, 20, exclude=[report.items[:5], []])
    assert set(result.items[0].tolist()) >= set(report.items[5:].tolist())
    assert not set(result.items[0].tolist()) & set(report.items[:5].tolist())
    assert set(result.items[1].tolist()) == set(report.items.tolist())


def test_bad_insertions_are_refused() -> None:
    tree, x = built(50, 4)
    with pytest.raises(ValueError, match="exactly one"):
        insert_items(tree, x[:1])
    with pytest.raises(ValueError, match="new_embeddings"):
        insert_items(tree, np.zeros((1, 7)), item_embeddings=x)
    with pytest.raises(ValueError, match="policy"):
        insert_items(tree, x[:1], item_embeddings=x, config=InsertConfig("nope"))  # type: ignore[arg-type]
    ragged, _ = build_kmeans(clustered(200), BuildConfig(k=3, progress=False))
    assert not ragged.is_uniform
    with pytest.raises(ValueError, match="one depth"):
        insert_items(ragged, np.zeros((1, 3)), item_embeddings=clustered(200))
