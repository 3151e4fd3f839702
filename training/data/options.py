"""How to read a dataset a team brings: column names, the item metadata file, the core.

Part of every run config (section ``data``), so that ``seater evaluate``, ``seater export``
and a resumed run read the log exactly as the training run did.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DataOptions:
    """``user_col`` / ``item_col`` / ``time_col`` name the columns of a CSV/TSV/Parquet log;
    ``items`` is an optional item metadata file (CSV/TSV/Parquet: the item id column, then
    ``title``, ``categories`` and any attribute columns) that gives answers their titles
    and the service its filters. ``min_interactions`` is the shortest user history a log
    keeps (S3Rec-style folders are already 5-core and are read as they are)."""

    user_col: str = "user"
    item_col: str = "item"
    time_col: str = "timestamp"
    items: str = ""
    min_interactions: int = 2
