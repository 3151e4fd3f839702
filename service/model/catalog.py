"""The item catalog of one bundle (``items.json``): external id <-> dense item index.

Requests speak external ids (strings); models speak indices ``0..n_items-1``. The map
is built once per model version and is read-only afterwards, so it is safe to share
between the event loop and the executor threads.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np


class CatalogError(ValueError):
    """``items.json`` is missing fields, has duplicates, or disagrees with the model."""


class Catalog:
    """External ids (and optional titles) per item index, with the reverse lookup."""

    def __init__(self, ids: Sequence[str], titles: Sequence[str | None] | None = None) -> None:
        self.ids: list[str] = [str(i) for i in ids]
        if titles is not None and len(titles) != len(self.ids):
            raise CatalogError(f"items.json: {len(titles)} titles for {len(self.ids)} ids")
        self.titles: list[str | None] | None = list(titles) if titles is not None else None
        self._index = {item_id: i for i, item_id in enumerate(self.ids)}
        if len(self._index) != len(self.ids):
            raise CatalogError("items.json: duplicate external ids")

    @classmethod
    def load(cls, path: Path) -> Catalog:
        """Read ``{"ids": [...], "titles": [...]?}``."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CatalogError(f"items.json: cannot read: {exc}") from exc
        if not isinstance(data, dict) or not isinstance(data.get("ids"), list):
            raise CatalogError('items.json: expected an object with an "ids" list')
        return cls(data["ids"], data.get("titles"))

    def __len__(self) -> int:
        return len(self.ids)

    def lookup(self, external_ids: Sequence[str]) -> np.ndarray:
        """Item index per id, ``-1`` where the id is unknown.

        Shape: ``[len(external_ids)]`` int64.
        """
        get = self._index.get
        return np.fromiter(
            (get(i, -1) for i in external_ids), dtype=np.int64, count=len(external_ids)
        )

    def external_id(self, index: int) -> str:
        return self.ids[index]

    def title(self, index: int) -> str | None:
        return self.titles[index] if self.titles is not None else None
