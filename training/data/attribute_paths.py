"""Category paths recovered from S3Rec's ``item2attributes.json``, for catalogues whose
items.tsv has no category text (Sports).

S3Rec's ``data_process.py`` writes, per item, its brand (when frequent enough) followed
by the levels of each category path, as integer ids whose names are not shipped. The ids
still carry the category tree, which is all an AMI needs: a label is a path of ids, not
a name. Two layouts occur in the shared files:

- the catalogue's root category kept (Sports: one id on every item): an item's path
  runs from the root's first occurrence to its next (a second path of the same root), so
  whatever precedes it (brand, a path under another root) is dropped;
- the root stripped (Beauty): the leading brand is dropped. A brand is an id that is
  only ever first in a list; category ids also appear after a brand.

On Beauty, where both sources exist, the labels recovered this way agree with the
category text almost exactly (``benchmarks.semantic_ids`` reports the AMI between the
two); rare levels cut by S3Rec's frequency filter are the known source of noise.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from training.data.loaders import DataError

FILE = "item2attributes.json"
PREFIX = "attr"  # label of an id: names are unknown, so "attr17 > attr28"


def read_item_attributes(path: Path) -> dict[str, list[int]]:
    """``{external item id: [attribute id, ...]}`` as S3Rec writes it."""
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable item2attributes JSON ({exc})") from exc
    if not isinstance(raw, dict) or not all(isinstance(v, list) for v in raw.values()):
        raise DataError(f"{path}: expected {{item id: [attribute ids]}}")
    return {str(k): [int(a) for a in v] for k, v in raw.items()}


def category_paths(attributes: Mapping[str, Sequence[int]], item_ids: np.ndarray
                   ) -> list[list[list[str]]]:
    """One category path per item index (``ItemText.categories`` layout; ``[]`` where the
    item has no attributes), read as the module docstring describes."""
    lists = [list(attributes.get(str(x), [])) for x in item_ids]
    known = [lst for lst in lists if lst]
    if not known:
        return [[] for _ in lists]
    root = _root(known)
    brands = set() if root is not None else _brands(known)
    paths: list[list[list[str]]] = []
    for lst in lists:
        if root is not None and root in lst:
            start = lst.index(root)
            again = lst.index(root, start + 1) if root in lst[start + 1:] else len(lst)
            ids = lst[start:again]
        elif root is None and lst:
            ids = lst[1:] if lst[0] in brands else lst
        else:
            ids = []
        paths.append([[f"{PREFIX}{a}" for a in ids]] if ids else [])
    return paths


def _root(lists: list[list[int]]) -> int | None:
    """The id every item carries (a root category S3Rec kept), if any; the first listed
    where several are."""
    common = set(lists[0]).intersection(*map(set, lists[1:]))
    return min(common, key=lists[0].index) if common else None


def _brands(lists: list[list[int]]) -> set[int]:
    """Ids seen first in some list and never later in any: S3Rec's leading brands."""
    first = {lst[0] for lst in lists}
    later = {a for lst in lists for a in lst[1:]}
    return first - later
