"""Readers for the formats a user brings: S3Rec-style files and raw interaction logs."""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

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
    items_path = folder / "items.tsv"
    return _interactions(
        name or folder.name, path, np.array(users), np.array([len(r) for r in rows]),
        np.array([x for r in rows for x in r]),
        lambda ids: read_items_tsv(items_path, ids) if items_path.is_file() else None)


def _interactions(name: str, source: Path, user_ids: np.ndarray, lengths: np.ndarray,
                  items: np.ndarray, read_text: Callable[[np.ndarray], ItemText | None],
                  meta: dict[str, Any] | None = None) -> InteractionData:
    """A dataset from every user's item ids in time order, user after user (``lengths``
    items each): each format indexes its ids the same way (``_index_ids``), and
    ``read_text`` gets those ids to key the item text by."""
    item_ids, values = _index_ids(items)
    return InteractionData(name=name, sequences=Sequences.from_lengths(lengths, values),
                           item_ids=item_ids, user_ids=user_ids.astype(str),
                           item_text=read_text(item_ids), source=str(source),
                           meta=meta or {})


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
                cats[i] = parse_categories(row[3])
    if seen < len(item_ids):
        log.warning("%s covers %d of %d items", path, seen, len(item_ids))
    return ItemText(title=titles, categories=cats)


LOG_SUFFIXES = {".csv": ",", ".tsv": "\t", ".parquet": None, ".pq": None}


def read_table(path: Path, id_cols: tuple[str, ...] = ()) -> Any:
    """A CSV/TSV/Parquet file as a DataFrame; ``id_cols`` are read as exact strings.

    Parquet stores an integer column with a missing value as floats; those ids are
    turned back into integers before they become strings (``1``, not ``1.0``).
    """
    import pandas as pd

    path = Path(path)
    sep = LOG_SUFFIXES.get(path.suffix.lower(), ",")
    try:
        if sep is None:
            df = pd.read_parquet(path)
        else:
            df = pd.read_csv(path, sep=sep, dtype={c: str for c in id_cols},
                             keep_default_na=False, na_values=[""])
    except pd.errors.EmptyDataError:
        raise DataError(f"{path} is empty: it needs a header row and one row per "
                        "interaction") from None
    except (ValueError, OSError) as e:
        raise DataError(f"{path}: cannot read it as {path.suffix or 'CSV'}: {e}") from None
    for col in id_cols:
        if col in df.columns and sep is None:
            df[col] = _id_strings(df[col])
    return df


def _id_strings(col: Any) -> Any:
    import pandas as pd

    if pd.api.types.is_float_dtype(col):
        finite = col.dropna()
        if len(finite) and (finite == finite.round()).all():
            col = col.astype("Int64")
    return col.astype("string").astype(object).where(col.notna(), None)


def parse_times(values: Any, path: Path, col: str) -> tuple[np.ndarray, str]:
    """Sortable float timestamps from numbers or date/time strings, and which they were.

    Sorting the raw strings would put ``2021-10-01`` before ``2021-9-30`` and mix
    formats arbitrarily, so every value is parsed; any that cannot be are refused
    with their count and an example rather than guessed at.
    """
    import pandas as pd

    if pd.api.types.is_numeric_dtype(values):
        return values.to_numpy(dtype=np.float64), "number"
    if pd.api.types.is_datetime64_any_dtype(values):
        return _seconds(pd.to_datetime(values, utc=True)), "datetime"
    text = values.astype(str).str.strip()
    numbers = pd.to_numeric(text, errors="coerce")
    if numbers.notna().all():
        return numbers.to_numpy(dtype=np.float64), "number"
    if numbers.notna().any():
        num, other = text[numbers.notna()], text[numbers.isna()]
        raise DataError(f"{path}: column {col!r} mixes numbers and dates ({len(num)} numeric, "
                        f"e.g. {num.iloc[0]!r}; {len(other)} not, e.g. {other.iloc[0]!r}): "
                        "use one kind")
    stamps = pd.to_datetime(text, utc=True, errors="coerce", format="mixed")
    bad = stamps.isna()
    if bad.any():
        raise DataError(f"{path}: {int(bad.sum())} value(s) of column {col!r} are neither "
                        f"numbers nor dates, e.g. {text[bad].iloc[0]!r}: fix or drop those rows")
    return _seconds(stamps), "datetime"


def _seconds(stamps: Any) -> np.ndarray:
    return stamps.astype("int64").to_numpy(dtype=np.float64) / 1e9


def load_interaction_log(
    path: Path,
    user_col: str = "user",
    item_col: str = "item",
    time_col: str = "timestamp",
    min_user_len: int = 2,
    min_item_freq: int = 1,
    name: str | None = None,
    items: str | Path = "",
) -> InteractionData:
    """A team's own log (CSV, TSV or Parquet, one row per interaction) as sequences.

    Hygiene, every step counted in ``meta["hygiene"]`` (shown by ``seater data stats``
    and logged): rows with a missing user/item/time are dropped, timestamps are parsed
    (numbers or dates), exact duplicate rows (same user, item and time) are dropped
    because a repeated target hidden in the history can never be retrieved, then users
    and items are filtered iteratively to the ``min_user_len`` / ``min_item_freq`` core
    (the S3Rec preprocessing uses 5 and 5). Rows are ordered by (user, time) with a
    stable sort, so same-time events keep file order.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} not found: pass a CSV, TSV or Parquet file with columns "
                        f"{user_col},{item_col},{time_col}")
    df = read_table(path, id_cols=(user_col, item_col))
    missing = [c for c in (user_col, item_col, time_col) if c not in df.columns]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {missing}; found {list(df.columns)}. "
            "Name the columns with --user-col/--item-col/--time-col."
        )
    counts: dict[str, Any] = {"rows_read": len(df)}
    df = df[[user_col, item_col, time_col]].dropna()
    counts["rows_with_missing_values"] = counts["rows_read"] - len(df)
    if df.empty:
        raise DataError(f"{path}: no row has all of {user_col}, {item_col}, {time_col}")
    df[user_col] = df[user_col].astype(str)
    df[item_col] = df[item_col].astype(str)
    times, kind = parse_times(df[time_col], path, time_col)
    df = df.assign(**{time_col: times})
    counts["time_kind"] = kind
    dup = df.duplicated([user_col, item_col, time_col])
    counts["duplicate_rows"] = int(dup.sum())
    df = df[~dup]
    before_users = df[user_col].nunique()
    before_rows = len(df)
    while True:
        n = len(df)
        freq = df[item_col].map(df[item_col].value_counts())
        df = df[freq >= min_item_freq]
        ulen = df[user_col].map(df[user_col].value_counts())
        df = df[ulen >= min_user_len]
        if len(df) == n:
            break
    counts.update(core=f"users >= {min_user_len}, items >= {min_item_freq}",
                  core_dropped_rows=before_rows - len(df),
                  core_dropped_users=int(before_users - df[user_col].nunique()))
    if df.empty:
        raise DataError(f"{path}: no interactions left after keeping users with >= "
                        f"{min_user_len} and items with >= {min_item_freq} interactions")
    df = df.sort_values([user_col, time_col], kind="stable")
    users, user_idx = np.unique(df[user_col].to_numpy(), return_inverse=True)
    order = np.argsort(user_idx, kind="stable")
    data = _interactions(
        name or path.stem, path, users, np.bincount(user_idx, minlength=len(users)),
        df[item_col].to_numpy().astype(str)[order],
        lambda ids: read_item_metadata(Path(items), ids, item_col) if items else None,
        meta={"hygiene": counts})
    log.info("loaded %s: %d users, %d items, %d interactions; dropped %d rows with missing "
             "values, %d duplicate rows, %d rows / %d users below the core (%s)", path,
             data.n_users, data.n_items, len(df), counts["rows_with_missing_values"],
             counts["duplicate_rows"], counts["core_dropped_rows"],
             counts["core_dropped_users"], counts["core"])
    return data


def read_item_metadata(path: Path, item_ids: np.ndarray, item_col: str = "item") -> ItemText:
    """Item metadata for a log: titles, categories and any attribute columns by item id.

    The id column is ``item_col`` (as in the log), ``item_id`` or ``id``; ``categories``
    may join several paths with ``" | "`` and levels with ``" > "``, like items.tsv.
    Items of the log the file does not list get empty values (counted in the log).
    """
    if not path.is_file():
        raise DataError(f"{path} not found: --items takes a CSV, TSV or Parquet file with "
                        f"an id column ({item_col}, item_id or id) and title/categories/"
                        "attribute columns")
    df = read_table(path, id_cols=(item_col, "item_id", "id"))  # "007" stays "007"
    id_col = next((c for c in (item_col, "item_id", "id") if c in df.columns), None)
    if id_col is None:
        raise DataError(f"{path}: no item id column; expected one of {item_col!r}, 'item_id', "
                        f"'id' among {list(df.columns)}")
    df = df.assign(**{id_col: _id_strings(df[id_col])}).dropna(subset=[id_col])
    df = df.drop_duplicates(subset=[id_col], keep="first").set_index(id_col)
    ids = [str(x) for x in item_ids]
    known = df.index.intersection(ids)
    if len(known) < len(ids):
        log.warning("%s describes %d of the %d items in the log", path, len(known), len(ids))
    df = df.reindex(ids)

    def column(name: str) -> list[str]:
        return ["" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v).strip()
                for v in df[name].astype(object)]

    titles = column("title") if "title" in df.columns else [""] * len(ids)
    cats = ([parse_categories(c) for c in column("categories")] if "categories" in df.columns
            else [[] for _ in ids])
    attrs = {c: column(c) for c in df.columns if c not in ("title", "categories")}
    return ItemText(title=titles, categories=cats, attributes=attrs)


def parse_categories(text: str) -> list[list[str]]:
    """``"Beauty > Makeup | Sale"`` -> ``[["Beauty", "Makeup"], ["Sale"]]``."""
    return [[lvl.strip() for lvl in p.split(" > ") if lvl.strip()]
            for p in text.split(" | ") if p.strip()]
