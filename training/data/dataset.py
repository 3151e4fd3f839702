"""The in-memory interaction dataset every model and protocol reads."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from training.data.sequences import Sequences


@dataclass(frozen=True)
class ItemText:
    """Text per item index (for semantic IDs, readable answers and filters).

    ``title`` is the main text (a product title, a business name, or keywords where no
    title exists); ``categories`` is a list of category paths, each a list of levels
    from coarse to fine (empty where unknown); ``attributes`` holds any other metadata
    column (name -> one string per item, '' where unknown), which the service can filter on.
    """

    title: list[str]
    categories: list[list[list[str]]]
    attributes: dict[str, list[str]] = field(default_factory=dict)

    def category_level(self, level: int) -> list[str]:
        """The category name at ``level`` of each item's first path ('' where unknown)."""
        out = []
        for paths in self.categories:
            path = paths[0] if paths else []
            out.append(path[level] if len(path) > level else "")
        return out

    def text(self, i: int) -> str:
        """One string per item: title plus its category paths, as a sentence encoder reads it."""
        cats = " | ".join(" > ".join(p) for p in self.categories[i])
        return f"{self.title[i]}. {cats}" if cats else self.title[i]


@dataclass(frozen=True)
class InteractionData:
    """Chronological item sequences per user with the external id maps.

    Item indices are dense ``0..n_items-1``; ``item_ids[i]`` is the external id of
    index ``i`` (a string), ``user_ids[u]`` the external id of user row ``u``.
    """

    name: str
    sequences: Sequences
    item_ids: np.ndarray
    user_ids: np.ndarray
    item_text: ItemText | None = None
    source: str = ""
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.sequences) != len(self.user_ids):
            raise ValueError("one sequence per user is required")
        if self.sequences.values.size and (
            self.sequences.values.min() < 0 or self.sequences.values.max() >= len(self.item_ids)
        ):
            raise ValueError("item indices must lie in 0..n_items-1")

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_interactions(self) -> int:
        return int(self.sequences.values.size)

    def item_index(self) -> dict[str, int]:
        """External item id -> index."""
        return {str(x): i for i, x in enumerate(self.item_ids)}

    def stats(self) -> dict[str, float | int | str]:
        lengths = self.sequences.lengths
        freq = np.bincount(self.sequences.values, minlength=self.n_items)
        repeats = sum(
            1 for s in self.sequences if s.size != np.unique(s).size
        ) if self.n_users <= 200_000 else -1
        return {
            "dataset": self.name,
            "users": self.n_users,
            "items": self.n_items,
            "interactions": self.n_interactions,
            "avg_len": round(float(lengths.mean()), 2) if lengths.size else 0.0,
            "min_len": int(lengths.min()) if lengths.size else 0,
            "median_len": float(np.median(lengths)) if lengths.size else 0.0,
            "max_len": int(lengths.max()) if lengths.size else 0,
            "min_item_freq": int(freq.min()) if freq.size else 0,
            "density": float(self.n_interactions / max(1, self.n_users * self.n_items)),
            "users_with_repeats": repeats,
            "has_text": self.item_text is not None,
            "source": self.source,
            **({"hygiene": self.meta["hygiene"]} if "hygiene" in self.meta else {}),
        }
