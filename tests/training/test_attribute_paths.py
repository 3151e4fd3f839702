"""Category paths read back from S3Rec's item2attributes.json, in both layouts the shared
files use, and checked against the category text they were written from."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from training.data.attribute_paths import category_paths, read_item_attributes
from training.data.dataset import ItemText
from training.data.loaders import DataError
from training.lmindexer.ami import source_agreement


def test_a_kept_root_starts_every_path_and_what_precedes_it_is_dropped():
    # 9 is on every item: the root. Brand 50 and a path under another root (70 > 71)
    # come before it and are not part of the item's Sports path.
    # Item 4's second path under the root is not read as deeper levels of its first.
    attrs = {"1": [50, 9, 1, 2], "2": [9, 3], "3": [50, 70, 71, 9, 1, 4], "4": [51, 9, 5, 9, 6]}
    paths = category_paths(attrs, np.array(["1", "2", "3", "4", "5"]))
    assert paths == [[["attr9", "attr1", "attr2"]], [["attr9", "attr3"]],
                     [["attr9", "attr1", "attr4"]], [["attr9", "attr5"]], []]  # 5: none


def test_a_stripped_root_drops_only_a_leading_brand():
    # no id on every item: a brand is an id only ever first (50, 51); 1 is first in
    # item 3 but also follows a brand elsewhere, so it is a category there too
    attrs = {"1": [50, 1, 2], "2": [51, 3, 4], "3": [1, 5], "4": [50]}
    paths = category_paths(attrs, np.array(["1", "2", "3", "4"]))
    assert paths == [[["attr1", "attr2"]], [["attr3", "attr4"]], [["attr1", "attr5"]], []]


def test_unreadable_files_name_the_file(tmp_path):
    bad = tmp_path / "item2attributes.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match="item2attributes.json"):
        read_item_attributes(bad)
    bad.write_text(json.dumps({"1": 3}))
    with pytest.raises(DataError, match=r"\{item id: \[attribute ids\]\}"):
        read_item_attributes(bad)
    bad.write_text(json.dumps({"1": [3, 4]}))
    assert read_item_attributes(bad) == {"1": [3, 4]}


def s3rec_attributes(text: ItemText, keep_root: bool, core: int = 5) -> dict[str, list[int]]:
    """What S3Rec's data_process writes from category text: the brand, then every path's
    levels (the root kept or stripped) with a count of at least ``core``, as ids."""
    brands = [f"brand{i % 7}" if i % 3 else "" for i in range(len(text.title))]
    names = [[lvl for p in paths for lvl in (p if keep_root else p[1:])]
             for paths in text.categories]
    counts = Counter(x for row in names for x in set(row)) + Counter(b for b in brands if b)
    ids: dict[str, int] = {}
    out = {}
    for i, (brand, row) in enumerate(zip(brands, names, strict=True)):
        kept = [x for x in ([brand] if brand else []) + row if counts[x] >= core]
        out[str(i + 1)] = [ids.setdefault(x, len(ids) + 1) for x in kept]
    return out


@pytest.mark.parametrize("keep_root", [True, False])
def test_paths_read_from_the_ids_reproduce_the_category_text(keep_root):
    rng = np.random.default_rng(0)
    n = 900
    top, sub = rng.integers(4, size=n), rng.integers(3, size=n)
    cats = [[["Sports", f"T{t}", f"T{t}S{s}"]] for t, s in zip(top, sub, strict=True)]
    cats[5].append(["Clothing", "Shoes"])  # a second path, after the first
    cats[7] = [["Sports", "T0", "Rare"]]  # a sub-category under the frequency core
    text = ItemText(title=[f"item {i}" for i in range(n)], categories=cats)
    paths = category_paths(s3rec_attributes(text, keep_root), np.arange(1, n + 1).astype(str))
    check = source_agreement(text, ItemText(title=text.title, categories=paths))
    assert check["top"] == {"ami": pytest.approx(1.0), "n_items": n}
    # the rare sub-category was cut by the core: that item has no sub label from the ids
    assert check["sub"]["n_items"] == n - 1 and check["sub"]["ami"] == pytest.approx(1.0)
