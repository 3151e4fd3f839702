"""Include filters over item metadata: hand-built catalogues with known answers, the
canonical form, the errors that name what exists, the mask LRU, and items.json reading."""

from __future__ import annotations

import json

import numpy as np
import pytest

from service.model.catalog import Catalog, CatalogError
from service.model.filters import FilterError, FilterIndex, ItemFilter, category_path

CATEGORIES = [
    ["Beauty > Makeup > Lips"],             # 0
    ["Beauty > Makeupx"],                   # 1: a longer level name, not a sub-category
    ["Beauty > Makeup"],                    # 2
    ["Beauty > Skin", "Sale > Beauty"],     # 3: two paths
    [],                                     # 4: no category
    ["Home > Makeup"],                      # 5: the same level name under another parent
]
BRAND = ["Acme", "Zed", "Acme", "Other", "Zed", "Acme"]
SIZE = ["S", "M", "L", "S", "", "M"]


@pytest.fixture
def index() -> FilterIndex:
    return FilterIndex(6, CATEGORIES, {"brand": BRAND, "size": SIZE})


def passing(index: FilterIndex, categories=(), attributes=None) -> list[int]:
    return np.flatnonzero(index.mask(ItemFilter.of(categories, attributes))).tolist()


def test_a_category_path_passes_its_sub_categories_level_by_level(index):
    assert passing(index, ["Beauty > Makeup"]) == [0, 2]  # not 1 (Makeupx), not 5 (Home)
    assert passing(index, ["Beauty"]) == [0, 1, 2, 3]
    assert passing(index, ["Beauty > Makeup > Lips"]) == [0]
    assert passing(index, ["Makeup"]) == []  # a path starts at the top level
    assert passing(index, ["Sale"]) == [3]  # any of an item's paths may match


def test_listed_paths_and_values_are_ors_and_the_parts_are_anded(index):
    assert passing(index, ["Beauty > Makeup", "Home"]) == [0, 2, 5]
    assert passing(index, attributes={"brand": ["Acme", "Zed"]}) == [0, 1, 2, 4, 5]
    assert passing(index, attributes={"brand": ["Acme"], "size": ["M", "L"]}) == [2, 5]
    assert passing(index, ["Beauty"], {"brand": ["Acme", "Zed"]}) == [0, 1, 2]
    assert passing(index, ["Beauty"], {"brand": ["Acme"], "size": ["S"]}) == [0]
    assert passing(index, attributes={"size": [""]}) == [4]  # '' = unknown, selectable
    assert passing(index, attributes={"brand": ["acme"]}) == []  # exact values


def test_the_canonical_form_ignores_order_duplicates_and_spacing():
    assert category_path("  Beauty>Makeup >  Lips ") == "Beauty > Makeup > Lips"
    a = ItemFilter.of(["B > x", "A"], {"size": ["M", "S", "M"], "brand": ["Z"]})
    b = ItemFilter.of(["A", "B>x", "A"], {"brand": ["Z"], "size": ["S", "M"]})
    assert a == b and hash(a) == hash(b)
    assert ItemFilter.of().empty and not a.empty


def test_equal_filters_share_one_read_only_mask_and_the_lru_is_bounded(index):
    first = index.mask(ItemFilter.of(["Beauty"]))
    assert index.mask(ItemFilter.of([" Beauty "])) is first
    with pytest.raises(ValueError, match="read-only"):
        first[0] = False
    small = FilterIndex(6, CATEGORIES, {"brand": BRAND}, cache_bytes=12)  # 2 masks of 6 items
    masks = [small.mask(ItemFilter.of([p])) for p in ("Beauty", "Home", "Sale")]
    assert small.mask(ItemFilter.of(["Sale"])) is masks[2]
    assert small.mask(ItemFilter.of(["Beauty"])) is not masks[0]  # evicted, rebuilt equal
    np.testing.assert_array_equal(small.mask(ItemFilter.of(["Beauty"])), masks[0])


def test_unknown_names_are_refused_with_the_names_that_exist(index):
    with pytest.raises(FilterError, match=r"no attribute\(s\) 'colour'.*'brand', 'size'") as e:
        index.mask(ItemFilter.of(attributes={"colour": ["red"], "brand": ["Zed"]}))
    assert e.value.field == "attributes.colour"
    bare = FilterIndex(6)
    with pytest.raises(FilterError, match="no categories.*--items.*no attributes either") as e:
        bare.mask(ItemFilter.of(["Beauty"]))
    assert e.value.field == "categories"
    with pytest.raises(FilterError, match=r"no attributes \(.*--items.*\)$"):
        bare.mask(ItemFilter.of(attributes={"brand": ["Zed"]}))
    with pytest.raises(FilterError, match="no attributes .*; they also have categories"):
        FilterIndex(6, CATEGORIES).mask(ItemFilter.of(attributes={"brand": ["Zed"]}))
    only_attrs = FilterIndex(6, None, {"brand": BRAND})
    with pytest.raises(FilterError, match="the attributes they have: 'brand'"):
        only_attrs.mask(ItemFilter.of(["Beauty"]))
    with pytest.raises(FilterError, match="names no level"):
        ItemFilter.of([" > "])
    with pytest.raises(FilterError, match="lists no value"):
        ItemFilter.of(attributes={"brand": []})


def test_the_catalog_reads_metadata_from_items_json(tmp_path):
    path = tmp_path / "items.json"
    path.write_text(json.dumps({"ids": ["a", "b"], "titles": ["A", "B"],
                                "categories": [["X > Y"], []],
                                "attributes": {"brand": ["Acme", None]}}))
    catalog = Catalog.load(path)
    index = catalog.filters
    assert index.has_categories and index.attribute_names == ["brand"]
    assert np.flatnonzero(index.mask(ItemFilter.of(["X"]))).tolist() == [0]
    assert np.flatnonzero(index.mask(ItemFilter.of(attributes={"brand": [""]}))).tolist() == [1]
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps({"ids": ["a", "b"]}))
    assert not Catalog.load(plain).filters.has_categories
    for bad, needle in (({"categories": [["X"]]}, "one list of path strings per id"),
                        ({"categories": ["X", "Y"]}, "one list of path strings"),
                        ({"attributes": {"brand": ["Acme"]}}, "'brand' must hold one value"),
                        ({"attributes": ["brand"]}, "must map names")):
        path.write_text(json.dumps({"ids": ["a", "b"], **bad}))
        with pytest.raises(CatalogError, match=needle):
            Catalog.load(path)
