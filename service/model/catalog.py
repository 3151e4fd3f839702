"""The item catalog of one bundle (``items.json``): external id <-> dense item index, and
the item metadata that titles answers and that filters select on.

Requests speak external ids (strings); models speak indices ``0..n_items-1``. The map
is built once per model version and is read-only afterwards, so it is safe to share
between the event loop and the executor threads (the filter index locks its own LRU).

``items.json`` (written by ``training/runner.py:write_items``)::

    {"ids": [...], "titles": [...]?, "categories": [[" > "-joined path, ...] per item]?,
     "attributes": {name: [value per item]}?}
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from service.model.filters import FilterIndex


class CatalogError(ValueError):
    """``items.json`` is missing fields, has duplicates, or disagrees with the model."""


class Catalog:
    """External ids (and optional titles, categories, attributes) per item index, with the
    reverse lookup and the filter index over the metadata."""

    def __init__(self, ids: Sequence[str], titles: Sequence[str | None] | None = None,
                 categories: Sequence[Sequence[str]] | None = None,
                 attributes: Mapping[str, Sequence[str]] | None = None) -> None:
        self.ids: list[str] = [str(i) for i in ids]
        n = len(self.ids)
        if titles is not None and len(titles) != n:
            raise CatalogError(f"items.json: {len(titles)} titles for {n} ids")
        self.titles: list[str | None] | None = list(titles) if titles is not None else None
        self._index = {item_id: i for i, item_id in enumerate(self.ids)}
        if len(self._index) != n:
            raise CatalogError("items.json: duplicate external ids")
        if categories is not None and (
            len(categories) != n
            or not all(isinstance(p, list | tuple) and all(isinstance(c, str) for c in p)
                       for p in categories)):
            raise CatalogError(f'items.json: "categories" must hold one list of path strings '
                               f"per id ({n})")
        for name, values in (attributes or {}).items():
            if not isinstance(values, list | tuple) or len(values) != n:
                raise CatalogError(f'items.json: attribute {name!r} must hold one value per '
                                   f"id ({n})")
        self.filters = FilterIndex(
            n, categories,
            {name: ["" if v is None else str(v) for v in values]
             for name, values in (attributes or {}).items()})

    @classmethod
    def load(cls, path: Path) -> Catalog:
        """Read ``items.json`` (see the module docstring)."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CatalogError(f"items.json: cannot read: {exc}") from exc
        if not isinstance(data, dict) or not isinstance(data.get("ids"), list):
            raise CatalogError('items.json: expected an object with an "ids" list')
        attributes = data.get("attributes")
        if attributes is not None and not isinstance(attributes, dict):
            raise CatalogError('items.json: "attributes" must map names to value lists')
        return cls(data["ids"], data.get("titles"), data.get("categories"), attributes)

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
