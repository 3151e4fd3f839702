"""Include filters over a bundle's item metadata, turned into the allowed-item masks that
the search applies as constraints.

The metadata is what ``items.json`` carries besides the ids: ``categories`` (per item, its
category paths, levels joined by ``" > "``) and ``attributes`` (name -> one string per
item). A filter lists category paths and attribute values; an item passes when one of its
paths starts with one of the listed paths, level by level ("Beauty > Makeup" passes
"Beauty > Makeup > Lips", not "Beauty > Makeupx"), AND, for every listed attribute, its
value is one of the listed values.

The index is inverted once per model version (prefix -> items, value -> items), so a
mask is a union of a few index arrays rather than a scan over the catalogue; masks of
recent filters are kept in a small LRU because a service sees the same few filters
again and again. Both die with the catalog, that is with the model version.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

SEPARATOR = " > "
MASK_CACHE_BYTES = 64 << 20  # bool masks kept per model version, all filters together
MASK_CACHE_ENTRIES = 256


class FilterError(ValueError):
    """A filter the model cannot apply; ``field`` is where it went wrong
    (``categories`` or ``attributes.<name>``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def category_path(text: str) -> str:
    """The canonical form of a category path: levels split on ``>``, stripped, empty ones
    dropped, joined by ``" > "`` (how the items file writes them), so ``"Beauty>Makeup"``
    and ``"Beauty > Makeup"`` are one path."""
    return SEPARATOR.join(_levels(text))


def _levels(path: str) -> list[str]:
    return [level.strip() for level in path.split(">") if level.strip()]


@dataclass(frozen=True)
class ItemFilter:
    """One include filter in canonical form (sorted, deduplicated), so equal filters are
    equal keys whatever order a request listed them in."""

    categories: tuple[str, ...] = ()
    attributes: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @classmethod
    def of(cls, categories: Iterable[str] = (),
           attributes: Mapping[str, Iterable[str]] | None = None) -> ItemFilter:
        paths = set()
        for path in categories:
            canonical = category_path(path)
            if not canonical:
                raise FilterError("categories", f"category path {path!r} names no level; "
                                  "write levels coarse to fine, joined by ' > '")
            paths.add(canonical)
        attrs = []
        for name, values in (attributes or {}).items():
            wanted = tuple(sorted(set(values)))
            if not wanted:
                raise FilterError(f"attributes.{name}", f"attribute {name!r} lists no value; "
                                  "list the values to keep, or leave the attribute out")
            attrs.append((name, wanted))
        return cls(tuple(sorted(paths)), tuple(sorted(attrs)))

    @property
    def empty(self) -> bool:
        return not self.categories and not self.attributes


class FilterIndex:
    """Items by category prefix and by attribute value, for one catalog.

    Thread-safe: the index is read-only after construction, the mask LRU is locked.

    Args:
        n_items: catalogue size.
        categories: per item, its category paths (``" > "``-joined); None when the
            bundle has none.
        attributes: name -> value per item; empty when the bundle has none.
    """

    def __init__(self, n_items: int, categories: Sequence[Sequence[str]] | None = None,
                 attributes: Mapping[str, Sequence[str]] | None = None,
                 cache_bytes: int = MASK_CACHE_BYTES) -> None:
        self.n_items = n_items
        self.has_categories = categories is not None
        self._by_prefix = _Inverted(
            (i, prefix) for i, paths in enumerate(categories or ()) for path in paths
            for prefix in _prefixes(path))
        self._by_value = {name: _Inverted(enumerate(values))
                          for name, values in (attributes or {}).items()}
        self._capacity = max(1, min(MASK_CACHE_ENTRIES, cache_bytes // max(1, n_items)))
        self._masks: OrderedDict[ItemFilter, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def attribute_names(self) -> list[str]:
        return sorted(self._by_value)

    def check(self, item_filter: ItemFilter) -> None:
        """Raise :class:`FilterError` when the filter names metadata this catalogue lacks."""
        if item_filter.categories and not self.has_categories:
            raise FilterError("categories", "this model's items have no categories (its "
                              "items.json carries none: train with --items FILE holding a "
                              f"categories column); {self._attributes_hint()}")
        unknown = [name for name, _ in item_filter.attributes if name not in self._by_value]
        if unknown:
            also = "; they also have categories" if self.has_categories else ""
            what = (f"no attribute(s) {', '.join(repr(u) for u in unknown)}; "
                    f"{self._attributes_hint()}" if self._by_value else
                    "no attributes (its items.json carries none: train with --items FILE "
                    "holding attribute columns)")
            raise FilterError(f"attributes.{unknown[0]}",
                              f"this model's items have {what}{also}")

    def _attributes_hint(self) -> str:
        names = self.attribute_names
        return (f"the attributes they have: {', '.join(repr(n) for n in names)}" if names
                else "they have no attributes either")

    def mask(self, item_filter: ItemFilter) -> np.ndarray:
        """Which items pass; read-only and shared, so equal filters get the same array.

        Shape: -> bool [n_items].
        """
        with self._lock:
            cached = self._masks.get(item_filter)
            if cached is not None:
                self._masks.move_to_end(item_filter)
                return cached
        self.check(item_filter)
        mask = self._build(item_filter)
        mask.flags.writeable = False
        with self._lock:
            mask = self._masks.setdefault(item_filter, mask)  # a racing thread's copy wins
            self._masks.move_to_end(item_filter)
            while len(self._masks) > self._capacity:
                self._masks.popitem(last=False)
        return mask

    def _build(self, item_filter: ItemFilter) -> np.ndarray:
        mask = np.ones(self.n_items, bool)
        if item_filter.categories:
            mask &= self._by_prefix.any_of(item_filter.categories, self.n_items)
        for name, values in item_filter.attributes:
            mask &= self._by_value[name].any_of(values, self.n_items)
        return mask


def _prefixes(path: str) -> list[str]:
    """``"A > B > C"`` -> ``["A", "A > B", "A > B > C"]``."""
    levels = _levels(path)
    return [SEPARATOR.join(levels[: d + 1]) for d in range(len(levels))]


class _Inverted:
    """key -> the items that have it, as one array of items sorted by key with the
    offsets of each key's run: a few bytes per (item, key) pair however many distinct
    keys there are, and a lookup is a slice.

    Shape: items int64 [pairs], bounds int64 [n_keys + 1].
    """

    def __init__(self, pairs: Iterable[tuple[int, str]]) -> None:
        self.codes: dict[str, int] = {}
        items, keys = [], []
        for item, key in pairs:
            items.append(item)
            keys.append(self.codes.setdefault(key, len(self.codes)))
        key_of = np.asarray(keys, np.int64)
        self.items = np.asarray(items, np.int64)[np.argsort(key_of, kind="stable")]
        self.bounds = np.concatenate(
            [[0], np.cumsum(np.bincount(key_of, minlength=len(self.codes)))]).astype(np.int64)

    def any_of(self, keys: Iterable[str], n_items: int) -> np.ndarray:
        """Items having at least one of ``keys``. Shape: -> bool [n_items]."""
        hit = np.zeros(n_items, bool)
        for key in keys:
            code = self.codes.get(key)
            if code is not None:
                hit[self.items[self.bounds[code] : self.bounds[code + 1]]] = True
        return hit
