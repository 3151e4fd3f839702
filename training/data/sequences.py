"""Variable-length integer sequences in CSR form.

Every user history, training sequence, evaluation context and ground-truth set in the
project is one of these: two flat arrays instead of a list of Python lists, so that
slicing, padding and metric computation stay vectorised for 30k+ users.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Sequences:
    """Ragged int sequences: row ``i`` is ``values[offsets[i]:offsets[i + 1]]``.

    Shape: offsets int64 [n + 1] (offsets[0] == 0, non-decreasing); values int64 [offsets[-1]].
    """

    offsets: np.ndarray
    values: np.ndarray

    def __post_init__(self) -> None:
        offsets = np.asarray(self.offsets, dtype=np.int64)
        values = np.asarray(self.values, dtype=np.int64)
        if offsets.ndim != 1 or offsets.size == 0 or offsets[0] != 0:
            raise ValueError("offsets must be a 1-D array starting at 0")
        if offsets[-1] != values.size or np.any(np.diff(offsets) < 0):
            raise ValueError("offsets must be non-decreasing and end at len(values)")
        object.__setattr__(self, "offsets", offsets)
        object.__setattr__(self, "values", values)

    @classmethod
    def from_lists(cls, rows: Iterable[Iterable[int]]) -> Sequences:
        arrays = [np.asarray(list(r), dtype=np.int64) for r in rows]
        lengths = np.array([a.size for a in arrays], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        values = np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.int64)
        return cls(offsets, values)

    @classmethod
    def from_lengths(cls, lengths: np.ndarray, values: np.ndarray) -> Sequences:
        return cls(np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]), values)

    def __len__(self) -> int:
        return self.offsets.size - 1

    def __getitem__(self, i: int) -> np.ndarray:
        return self.values[self.offsets[i] : self.offsets[i + 1]]

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self)):
            yield self[i]

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def row_ids(self) -> np.ndarray:
        """Row index of every value. Shape: [len(values)]."""
        return np.repeat(np.arange(len(self), dtype=np.int64), self.lengths)

    def take(self, rows: np.ndarray) -> Sequences:
        """Rows in the given order (a new, compact CSR)."""
        rows = np.asarray(rows, dtype=np.int64)
        lengths = self.lengths[rows]
        starts = self.offsets[rows]
        values = self.values[_ranges(starts, lengths)]
        return Sequences.from_lengths(lengths, values)

    def slice_rows(self, start: np.ndarray, stop: np.ndarray) -> Sequences:
        """Per-row sub-sequences ``row[start[i]:stop[i]]`` (Python slice semantics, >= 0).

        Shape: start, stop int [n].
        """
        lengths = self.lengths
        start = np.clip(np.asarray(start, dtype=np.int64), 0, lengths)
        stop = np.clip(np.asarray(stop, dtype=np.int64), start, lengths)
        values = self.values[_ranges(self.offsets[:-1] + start, stop - start)]
        return Sequences.from_lengths(stop - start, values)

    def head(self, n: np.ndarray | int) -> Sequences:
        """The first ``n`` items of each row (``n`` may be negative: all but the last -n)."""
        n = np.broadcast_to(np.asarray(n, dtype=np.int64), (len(self),))
        stop = np.where(n >= 0, n, self.lengths + n)
        return self.slice_rows(np.zeros(len(self), dtype=np.int64), stop)

    def tail(self, n: int) -> Sequences:
        """The last ``n`` items of each row (all of it when shorter)."""
        lengths = self.lengths
        return self.slice_rows(np.maximum(lengths - n, 0), lengths)

    def last(self) -> np.ndarray:
        """The last item of every row (rows must be non-empty). Shape: [n]."""
        if np.any(self.lengths == 0):
            raise ValueError("last() needs non-empty rows")
        return self.values[self.offsets[1:] - 1]

    def to_padded(self, width: int | None = None, pad: int = 0, left: bool = True) -> np.ndarray:
        """Dense ``[n, width]`` matrix keeping the most recent ``width`` items per row.

        Left padding (the default) puts every row's most recent item in the last column,
        which is what causal encoders with right-aligned positions expect.
        """
        src = self.tail(width) if width is not None else self
        lengths = src.lengths
        width = int(width if width is not None else (lengths.max() if lengths.size else 0))
        out = np.full((len(src), width), pad, dtype=np.int64)
        rows = src.row_ids()
        pos = np.arange(src.values.size) - np.repeat(src.offsets[:-1], lengths)
        cols = pos + (width - lengths)[rows] if left else pos
        out[rows, cols] = src.values
        return out


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s + l)`` for every (s, l), without a Python loop."""
    lengths = np.asarray(lengths, dtype=np.int64)
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    ends = np.cumsum(lengths)
    row_start = np.repeat(np.asarray(starts, dtype=np.int64) - (ends - lengths), lengths)
    return row_start + np.arange(total, dtype=np.int64)
