"""Readers for the formats a user brings: S3Rec-style files and raw interaction logs."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np

from training.data.dataset import InteractionData, ItemText
from training.data.sequences import Sequences

log = logging.getLogger(__name__)


class DataError(ValueError):
    """A data file is missing or malformed; the message names the file and the fix."""


def load_s3rec(folder: Path, name: str | None = None) -> InteractionData:
    """Read ``interactions.txt`` (+ ``items.tsv`` when present) from an S3Rec-style folder.

    Each line is ``user_id item_id item_id ...`` in chronological order. External item
    ids are kept as strings; indices follow the numeric order of the ids, so for the
    S3Rec files index ``i`` is item id ``i + 1``.
    """
    folder = Path(folder)
    path = folder / "interactions.txt"
    if not path.is_file():
        raise DataError(
            f"{path} not found: an S3Rec-style dataset folder needs interactions.txt "
            "(one line per user: 'user_id item_id item_id ...')"
        )
    users: list[str] = []
    rows: list[list[str]] = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) < 2:
                raise DataError(f"{path}:{lineno}: a user line needs at least one item")
            users.append(parts[0])
            rows.append(parts[1:])
    flat = np.array([x for r in rows for x in r])
    item_ids, values = _index_ids(flat)
    lengths = np.array([len(r) for r in rows], dtype=np.int64)
    seqs = Sequences.from_lengths(lengths, values)
    text = None
    items_path = folder / "items.tsv"
    if items_path.is_file():
        text = read_items_tsv(items_path, item_ids)
    return InteractionData(
        name=name or folder.name,
        sequences=seqs,
        item_ids=item_ids,
        user_ids=np.array(users),
        item_text=text,
        source=str(path),
    )


def _index_ids(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dense indices for external ids: numeric order when all ids are integers."""
    uniq = np.unique(flat)
    if all(s.isdigit() for s in uniq[: min(len(uniq), 1000)]):
        try:
            order = np.argsort(uniq.astype(np.int64), kind="stable")
            uniq = uniq[order]
        except ValueError:
            pass
    lookup = {s: i for i, s in enumerate(uniq)}
    values = np.fromiter((lookup[s] for s in flat), dtype=np.int64, count=flat.size)
    return uniq.astype(str), values


def read_items_tsv(path: Path, item_ids: np.ndarray) -> ItemText:
    """Item text keyed by the same ids as the interactions (header row, no quoting).

    The third column is the title (or keywords where no title exists); ``categories``
    joins paths with ``" | "`` and levels with ``" > "``.
    """
    index = {str(x): i for i, x in enumerate(item_ids)}
    titles = [""] * len(item_ids)
    cats: list[list[list[str]]] = [[] for _ in item_ids]
    with Path(path).open(encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        if not header or header[0] != "item_id" or len(header) < 3:
            raise DataError(f"{path}: expected a header 'item_id <id> <title> [categories]'")
        seen = 0
        for row in reader:
            i = index.get(row[0])
            if i is None:
                continue
            seen += 1
            titles[i] = row[2].strip()
            if len(row) > 3 and row[3].strip():
                cats[i] = [
                    [lvl.strip() for lvl in p.split(" > ") if lvl.strip()]
                    for p in row[3].split(" | ")
                ]
    if seen < len(item_ids):
        log.warning("%s covers %d of %d items", path, seen, len(item_ids))
    return ItemText(title=titles, categories=cats)


def load_interaction_log(
    path: Path,
    user_col: str = "user",
    item_col: str = "item",
    time_col: str = "timestamp",
    min_user_len: int = 2,
    min_item_freq: int = 1,
    name: str | None = None,
) -> InteractionData:
    """A team's own log (CSV or Parquet, one row per interaction) as sequences.

    Rows are ordered by (user, time) with a stable sort, so same-time events keep file
    order; then users and items are filtered iteratively to the k-core given by
    ``min_user_len`` / ``min_item_freq`` (the S3Rec preprocessing uses 5 and 5).
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} not found: pass a CSV or Parquet file with columns "
                        f"{user_col},{item_col},{time_col}")
    if path.suffix.lower() in {".parquet", ".pq"}:
        df = pd.read_parquet(path)
    else:
        df = pd.read_csv(path, dtype={user_col: str, item_col: str})
    missing = [c for c in (user_col, item_col, time_col) if c not in df.columns]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {missing}; found {list(df.columns)}. "
            "Name the columns with --user-col/--item-col/--time-col."
        )
    df = df[[user_col, item_col, time_col]].dropna()
    df[user_col] = df[user_col].astype(str)
    df[item_col] = df[item_col].astype(str)
    while True:
        n = len(df)
        freq = df[item_col].map(df[item_col].value_counts())
        df = df[freq >= min_item_freq]
        ulen = df[user_col].map(df[user_col].value_counts())
        df = df[ulen >= min_user_len]
        if len(df) == n:
            break
    if df.empty:
        raise DataError(f"{path}: no interactions left after the "
                        f"{min_user_len}/{min_item_freq} core filter")
    df = df.sort_values([user_col, time_col], kind="stable")
    users, user_idx = np.unique(df[user_col].to_numpy(), return_inverse=True)
    item_ids, values = _index_ids(df[item_col].to_numpy().astype(str))
    order = np.argsort(user_idx, kind="stable")
    lengths = np.bincount(user_idx, minlength=len(users))
    seqs = Sequences.from_lengths(lengths, values[order])
    log.info("loaded %s: %d users, %d items, %d interactions",
             path, len(users), len(item_ids), len(df))
    return InteractionData(
        name=name or path.stem,
        sequences=seqs,
        item_ids=item_ids,
        user_ids=users.astype(str),
        source=str(path),
    )
