"""IdTree: derived views on a hand-checked tree, persistence, and validate() messages."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from indexer import (
    FORMAT_VERSION,
    IdTree,
    TreeFormatError,
    TreeValidationError,
    ceil_log,
    node_centroids,
)
from tests.indexer.conftest import TINY_CODES, TINY_X, make_tree


def rebuilt(tree: IdTree, **changes: np.ndarray | int) -> IdTree:
    """A copy of `tree` with some arrays replaced (writable copies to break on purpose)."""
    fields = {name: np.array(getattr(tree, name)) for name in
              ("children", "parent", "depth", "leaf_item", "item_leaf")}
    fields.update(root=tree.root, version=tree.version)
    fields.update(changes)
    return IdTree(**fields)


@pytest.mark.parametrize(("n", "k", "want"), [
    (1, 2, 1), (2, 2, 1), (3, 2, 2), (1000, 10, 3), (1001, 10, 4), (256, 16, 2),
    (257, 16, 3), (12101, 16, 4), (1_000_000, 16, 5),
])
def test_ceil_log_is_exact_at_powers(n: int, k: int, want: int) -> None:
    assert ceil_log(n, k) == want


def test_hand_tree_layout(tiny: IdTree) -> None:
    # leaves 0..4 are the items, root 5, depth-1 nodes 6 (code 0) and 7 (code 1),
    # depth-2 nodes 8 [0,0], 9 [0,1], 10 [1,0], 11 [1,1]: BFS order.
    assert tiny.root == 5 and tiny.n_nodes == 12 and tiny.k == 2 and tiny.max_depth == 3
    assert tiny.children[5].tolist() == [6, 7]
    assert tiny.children[6].tolist() == [8, 9] and tiny.children[7].tolist() == [10, 11]
    assert tiny.children[8].tolist() == [0, 1] and tiny.children[9].tolist() == [2, -1]
    assert tiny.children[10].tolist() == [3, -1] and tiny.children[11].tolist() == [4, -1]
    assert (tiny.children[:5] == -1).all()
    assert tiny.parent.tolist() == [8, 8, 9, 10, 11, -1, 5, 5, 6, 6, 7, 7]
    assert tiny.depth.tolist() == [3, 3, 3, 3, 3, 0, 1, 1, 2, 2, 2, 2]
    assert tiny.leaf_item.tolist() == [0, 1, 2, 3, 4] + [-1] * 7
    assert tiny.codes.tolist() == TINY_CODES.tolist()
    assert tiny.node_paths.tolist() == [[6, 8, 0], [6, 8, 1], [6, 9, 2], [7, 10, 3], [7, 11, 4]]
    assert tiny.leaf_count.tolist() == [1] * 5 + [5, 3, 2, 2, 1, 1, 1]
    assert tiny.leaf_lo[[5, 6, 7, 8, 9]].tolist() == [0, 0, 3, 0, 2]
    assert tiny.leaf_hi[[5, 6, 7, 8, 9]].tolist() == [5, 3, 5, 2, 3]
    assert tiny.leaf_order.tolist() == [0, 1, 2, 3, 4]
    assert tiny.slot[[6, 7, 9, 4]].tolist() == [0, 1, 1, 0]
    assert tiny.problems("strict") == []


def test_codes_of_handles_padding(tiny: IdTree) -> None:
    out = tiny.codes_of(np.array([[3, -1]]))
    assert out.tolist() == [[[1, 0, 0], [-1, -1, -1]]]
    assert tiny.paths_of(np.array([4])).tolist() == [[7, 11, 4]]


def test_node_centroids_are_subtree_means(tiny: IdTree) -> None:
    cent = node_centroids(tiny, TINY_X)
    assert cent[5, 0] == pytest.approx(5.0)
    assert cent[6, 0] == pytest.approx(4 / 3) and cent[7, 0] == pytest.approx(10.5)
    assert cent[8, 0] == pytest.approx(0.5) and cent[2, 0] == pytest.approx(3.0)


def test_precompute_fills_every_view(tiny: IdTree) -> None:
    assert tiny.precompute() is tiny
    assert {"leaf_lo", "node_paths", "codes", "levels"} <= set(vars(tiny))


def test_arrays_are_read_only(tiny: IdTree) -> None:
    with pytest.raises(ValueError):
        tiny.children[0, 0] = 3


def test_save_load_round_trip(tmp_path, tiny: IdTree) -> None:
    tree = make_tree(300, 4)
    path = tree.save(tmp_path / "tree.npz")
    back = IdTree.load(path)
    for name in ("children", "parent", "depth", "leaf_item", "item_leaf"):
        assert np.array_equal(getattr(back, name), getattr(tree, name))
    assert back.root == tree.root and back.version == tree.version
    assert back.summary() == tree.summary()
    with np.load(path, allow_pickle=False) as z:
        assert int(z["format_version"]) == FORMAT_VERSION and int(z["k"]) == 4
    assert not (tmp_path / "tree.npz.tmp").exists()


def test_load_rejects_garbage_and_truncated_files(tmp_path) -> None:
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"this is not a zip file")
    with pytest.raises(TreeFormatError, match="cannot read ID tree"):
        IdTree.load(junk)
    good = make_tree(200, 4).save(tmp_path / "good.npz")
    cut = tmp_path / "cut.npz"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(TreeFormatError):
        IdTree.load(cut)


def test_load_rejects_wrong_version_and_missing_arrays(tmp_path) -> None:
    tree = make_tree(50, 4)
    arrays = {n: getattr(tree, n) for n in ("children", "parent", "depth", "leaf_item",
                                           "item_leaf")}
    old = tmp_path / "old.npz"
    np.savez(old, format_version=FORMAT_VERSION + 1, root=tree.root, k=tree.k, version=0,
             **arrays)
    with pytest.raises(TreeFormatError, match="format version"):
        IdTree.load(old)
    partial = tmp_path / "partial.npz"
    np.savez(partial, format_version=FORMAT_VERSION, root=tree.root, k=tree.k, version=0,
             children=tree.children)
    with pytest.raises(TreeFormatError, match="missing"):
        IdTree.load(partial)
    assert zipfile.is_zipfile(partial)


def test_load_validates_content(tmp_path, tiny: IdTree) -> None:
    broken = rebuilt(tiny, parent=np.array([8, 8, 9, 10, 10, -1, 5, 5, 6, 6, 7, 7]))
    path = broken.save(tmp_path / "broken.npz")
    with pytest.raises(TreeValidationError, match="parent disagrees"):
        IdTree.load(path)
    assert IdTree.load(path, validate=None).n_items == 5


@pytest.mark.parametrize(("change", "level", "message"), [
    (lambda t: {"parent": np.where(np.arange(12) == 4, 10, t.parent)}, "structure",
     r"parent disagrees with children for nodes 1 \(e\.g\. \[4\]\)"),
    (lambda t: {"depth": np.where(np.arange(12) == 9, 3, t.depth)}, "structure",
     "depth != parent depth"),
    (lambda t: {"children": np.where(np.arange(12)[:, None] == 11, -1, t.children)},
     "structure", r"unreachable from the root.*\[4\]"),
    (lambda t: {"children": np.where((np.arange(12)[:, None] == 9) & (np.arange(2) == 1),
                                     99, t.children)}, "structure", "outside"),
    (lambda t: {"item_leaf": np.array([0, 1, 2, 3, 3])}, "structure",
     r"item_leaf and leaf_item disagree for items 1 \(e\.g\. \[4\]\)"),
    (lambda t: {"leaf_item": np.where(np.arange(12) == 8, 0, t.leaf_item)}, "structure",
     "carry an item"),
    (lambda t: {"root": 6}, "structure", "root"),
], ids=["parent", "depth", "orphan", "range", "item_leaf", "inner_item", "root"])
def test_validate_names_the_broken_invariant(tiny: IdTree, change, level, message) -> None:
    broken = rebuilt(tiny, **change(tiny))
    with pytest.raises(TreeValidationError, match=message):
        broken.validate(level)


def test_validate_levels_balanced_and_strict() -> None:
    # item 2 hangs one level higher: a valid tree, but not balanced.
    codes = np.array([[0, 0], [0, 1], [1, -1]])
    from indexer.build import assemble

    ragged = assemble(codes, k=2)
    assert ragged.problems("structure") == []
    assert "leaves at several depths" in ragged.problems("balanced")[0]

    # a 3/1 split of 4 items with k=2 is uniform but not the floor/ceil rule.
    lopsided = assemble(np.array([[0, 0, 0], [0, 0, 1], [0, 1, 0], [1, 0, 0]]), k=2)
    assert lopsided.problems("balanced") == []
    strict = " ".join(lopsided.problems("strict"))
    assert "unbalanced splits" in strict and "splits 4 leaves into [3, 1]" in strict

    # a gap before a valid slot breaks left-packing.
    tiny = assemble(np.array([[0], [1]]), k=3)
    gap = rebuilt(tiny, children=np.array([[-1] * 3, [-1] * 3, [0, -1, 1]]))
    assert gap.problems("structure") == []
    assert any("left-packed" in p for p in gap.problems("strict"))
