"""Filters as constraints on a REAL bundle (the tiny model exported with item metadata):
the filtered top-n is the brute-force top-n among allowed items, a filter never leaves a
request short while allowed items remain, and micro-batches mixing filters answer what
solo requests answer, over HTTP through the app."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest

from indexer import exhaustive_search
from service.model.filters import ItemFilter
from service.model.load import load_engine
from service.model.seater import SeaterEngine
from service.settings import Settings
from tests.service.bundles import copy_bundle, user_histories
from tests.service.conftest import metric, running

FILTERS = [
    {"categories": ["group 0"]},
    {"categories": ["group 1 > cluster 1"]},
    {"categories": ["Sale", "group 2"]},
    {"attributes": {"brand": ["Zed"]}},
    {"categories": ["group 0"], "attributes": {"brand": ["Acme", "Nova"]}},
]


@pytest.fixture(scope="module")
def items(meta_bundle) -> dict:
    return json.loads((meta_bundle / "items.json").read_text())


@pytest.fixture(scope="module")
def engine(meta_bundle) -> SeaterEngine:
    engine = load_engine(meta_bundle, Settings(providers="cpu", intra_op_threads=1))
    assert isinstance(engine, SeaterEngine)
    return engine


def passes(items: dict, index: int, f: dict) -> bool:
    """The filter rule written out directly, item by item (the oracle for the masks)."""
    paths = [p.split(" > ") for p in items["categories"][index]]
    wanted = [c.split(" > ") for c in f.get("categories", [])]
    ok = not wanted or any(p[: len(w)] == w for p in paths for w in wanted)
    attrs = items["attributes"]
    return ok and all(attrs[name][index] in values
                      for name, values in f.get("attributes", {}).items())


def allowed_ids(items: dict, f: dict) -> set[str]:
    return {items["ids"][i] for i in range(len(items["ids"])) if passes(items, i, f)}


def mask_of(engine, f: dict) -> np.ndarray:
    return engine.catalog.filters.mask(ItemFilter.of(f.get("categories", []),
                                                     f.get("attributes")))


def decoder_scorer(engine: SeaterEngine, state):
    """The exported decoder called directly on one request's memory (no IOBinding)."""
    feeds = {"memory_k": state.memory_k[:, None], "memory_v": state.memory_v[:, None],
             "memory_bias": state.memory_bias[None],
             "children": engine.tree.children.astype(np.int64),
             "node_emb": engine.bundle.embeddings}
    return lambda prefix: engine.decoder.run(None, {"prefix": prefix, **feeds})[0]


def test_masks_are_the_filter_rule_item_by_item(engine, items):
    for f in FILTERS:
        got = {items["ids"][i] for i in np.flatnonzero(mask_of(engine, f))}
        assert got == allowed_ids(items, f) and 0 < len(got) < len(items["ids"]), f


@pytest.mark.parametrize("f", FILTERS, ids=range(len(FILTERS)))
def test_the_filtered_top_n_is_the_exhaustive_top_n_among_allowed_items(engine, tiny_bundle,
                                                                        items, f):
    """Beam = the catalogue: the filtered search is exact, so it must equal ranking every
    item by its full path score, dropping the history and the filtered-out items, and
    cutting at n."""
    n, n_items = 8, len(items["ids"])
    mask = mask_of(engine, f)
    for h in user_histories(tiny_bundle, 4, seed=21):
        state = engine.encode([np.array(h)])[0]
        hit = engine.search([state], np.array([n]), np.array([n_items]), [np.array(h)],
                            allowed=mask[None], allowed_of=np.array([0]))[0]
        ranking = exhaustive_search(engine.tree, decoder_scorer(engine, state), 1, n_items)
        want = [i for i in ranking.items[0].tolist() if i not in h and passes(items, i, f)][:n]
        assert hit.items.tolist() == want
        assert len(want) == min(n, int(mask.sum()) - len(set(h) & set(np.flatnonzero(mask))))


def test_n_items_come_back_while_n_allowed_items_exist_even_with_a_small_beam(engine, items,
                                                                               tiny_bundle):
    """Beam = n = 5 on a filter that allows a handful of items: pruning keeps the beam on
    allowed subtrees, where filtering the unfiltered beam afterwards would come back short."""
    narrow = {"categories": ["group 1 > cluster 1"], "attributes": {"brand": ["Zed"]}}
    mask = mask_of(engine, narrow)
    allowed = np.flatnonzero(mask)
    assert 5 <= len(allowed) <= 12
    shorts = 0
    for h in user_histories(tiny_bundle, 6, seed=4):
        h = [i for i in h if not mask[i]]  # nothing allowed is excluded as seen
        if not h:
            continue
        state = engine.encode([np.array(h)])[0]
        five = np.array([5])
        hit = engine.search([state], five, five, [np.array(h)], allowed=mask[None],
                            allowed_of=np.array([0]))[0]
        assert len(hit.items) == 5 and set(hit.items.tolist()) <= set(allowed.tolist())
        plain = engine.search([state], five, five, [np.array(h)])[0]
        shorts += int(mask[plain.items].sum() < 5)
        # fewer allowed than n: every allowed item, no padding
        everything = engine.search([state], np.array([20]), np.array([20]), [np.array(h)],
                                   allowed=mask[None], allowed_of=np.array([0]))[0]
        assert sorted(everything.items.tolist()) == allowed.tolist()
    assert shorts > 0  # post-filtering the plain beam would have come back short


def real_settings(root: Path, **overrides) -> Settings:
    values = {"artifacts": root, "providers": "cpu", "intra_op_threads": 1, "redis_url": None,
              "max_wait_ms": 30.0, "log_json": False}
    return Settings(**{**values, **overrides})


@pytest.mark.anyio
async def test_mixed_filter_micro_batches_answer_what_solo_requests_answer_over_http(
    meta_bundle, items, tiny_bundle, tmp_path
):
    path = copy_bundle(meta_bundle, tmp_path / "tiny-meta")
    ids = items["ids"]
    histories = user_histories(tiny_bundle, 4, seed=8)
    bodies = [{"history": [ids[i] for i in h], "n": 6, "beam_size": 12,
               **({"filters": f} if f is not None else {})}
              for h in histories for f in [None, *FILTERS]]
    async with running(real_settings(path, cache_enabled=False), load_engine) as client:
        solo = [await client.post("/retrieve", json=b) for b in bodies]
        before = metric(client, "seater_batch_size_count")
        together = await asyncio.gather(*(client.post("/retrieve", json=b) for b in bodies))
        batches = metric(client, "seater_batch_size_count") - before
    assert [r.status_code for r in solo + list(together)] == [200] * (2 * len(bodies))
    assert batches < len(bodies) / 2  # the concurrent round really mixed filters in batches
    for a, b, body in zip(solo, together, bodies, strict=True):
        got = [i["id"] for i in a.json()["items"]]
        assert [i["id"] for i in b.json()["items"]] == got  # scores: batch float rounding
        np.testing.assert_allclose([i["score"] for i in b.json()["items"]],
                                   [i["score"] for i in a.json()["items"]], atol=1e-5)
        keep = allowed_ids(items, body.get("filters", {}))
        assert set(got) <= keep and not set(got) & set(body["history"])
        assert len(got) == min(6, len(keep - set(body["history"])))
        assert all(i["title"] for i in a.json()["items"])


@pytest.mark.anyio
async def test_filters_naming_missing_metadata_are_422s_that_say_what_exists(
    meta_bundle, tiny_bundle, tmp_path
):
    meta = copy_bundle(meta_bundle, tmp_path / "tiny-meta")
    plain = copy_bundle(tiny_bundle.path, tmp_path / "tiny-v1")  # titles, no categories
    history = ["1", "2", "3"]
    async with running(real_settings(meta), load_engine) as client:
        colour = await client.post("/retrieve", json={
            "history": history, "filters": {"attributes": {"colour": ["red"]}}})
        model = (await client.get("/v1/model")).json()
    async with running(real_settings(plain), load_engine) as client:
        cats = await client.post("/retrieve", json={
            "history": history, "filters": {"categories": ["group 0"]}})
        plain_model = (await client.get("/v1/model")).json()
    assert colour.status_code == 422 and colour.json()["code"] == "invalid_input"
    message = colour.json()["message"]
    assert "'colour'" in message and "'brand'" in message and "tiny-meta" in message
    assert colour.json()["details"][0]["loc"] == "body.filters.attributes.colour"
    assert cats.status_code == 422 and "no categories" in cats.json()["message"]
    assert "no attributes either" in cats.json()["message"]
    assert model["filters"] == {"categories": True, "attributes": ["brand"]}
    assert plain_model["filters"] == {"categories": False, "attributes": []}
