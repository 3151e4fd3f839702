import numpy as np
import pytest

from training.data.sequences import Sequences


@pytest.fixture
def seqs():
    return Sequences.from_lists([[1, 2, 3], [4], [], [5, 6]])


def test_basic_views(seqs):
    assert len(seqs) == 4
    assert seqs.lengths.tolist() == [3, 1, 0, 2]
    assert seqs[0].tolist() == [1, 2, 3] and seqs[2].tolist() == []
    assert seqs.row_ids().tolist() == [0, 0, 0, 1, 3, 3]


def test_take_head_tail(seqs):
    assert [r.tolist() for r in seqs.take(np.array([3, 0]))] == [[5, 6], [1, 2, 3]]
    assert [r.tolist() for r in seqs.head(-1)] == [[1, 2], [], [], [5]]
    assert [r.tolist() for r in seqs.head(2)] == [[1, 2], [4], [], [5, 6]]
    assert [r.tolist() for r in seqs.tail(2)] == [[2, 3], [4], [], [5, 6]]
    assert [r.tolist() for r in seqs.slice_rows([1, 0, 0, 1], [3, 1, 0, 2])] == [
        [2, 3], [4], [], [6]]


def test_padding_left_and_right(seqs):
    left = seqs.to_padded(2, pad=-1)
    assert left.tolist() == [[2, 3], [-1, 4], [-1, -1], [5, 6]]
    right = seqs.to_padded(pad=0, left=False)
    assert right.tolist() == [[1, 2, 3], [4, 0, 0], [0, 0, 0], [5, 6, 0]]


def test_last_requires_nonempty(seqs):
    with pytest.raises(ValueError):
        seqs.last()
    assert seqs.take(np.array([0, 3])).last().tolist() == [3, 6]


def test_invalid_offsets_rejected():
    with pytest.raises(ValueError):
        Sequences(np.array([0, 3]), np.array([1, 2]))
    with pytest.raises(ValueError):
        Sequences(np.array([1, 2]), np.array([1]))
