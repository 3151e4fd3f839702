"""Cold start end to end: a new item with text and no interactions -> semantic code ->
leaf in the tree -> bundle v2 -> hot reload -> the service retrieves it.

Everything is real except the text encoder (a hashed bag-of-words stands in for MiniLM,
which takes ~15 s to load): the semantic indexer is trained (briefly) on the synthetic
catalogue, its codes make the tree, a tiny SEATER is trained on that tree and exported
with the real ONNX export, and the service runs with its ONNX Runtime engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import fit_briefly
from tests.service.conftest import TOKEN, running
from tests.training.lmindexer.helpers import hashing_encoder

pytestmark = pytest.mark.anyio
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NEW_ID = "new-item-1"


@dataclass(frozen=True)
class ColdStartWorld:
    root: Path
    v1: Path
    v2: Path
    ids: list[str]
    new_code: list[int]
    siblings: list[str]  # existing items under the new leaf's parent
    codes_before: np.ndarray
    codes_after: np.ndarray
    model: object  # the tiny SEATER (training.seater.model.Seater)
    result: object  # training.lmindexer.cold_start.ColdStartResult
    items: dict


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> ColdStartWorld:
    import torch

    from indexer import from_codes
    from training.data import SyntheticConfig, make_synthetic
    from training.lmindexer.cold_start import cold_start, extend_items, publish_tree_version
    from training.lmindexer.config import AssignParams, IndexerParams, ScheduleParams
    from training.lmindexer.text import Vocabulary, item_texts
    from training.lmindexer.train import Corpus, train_indexer
    from training.seater.export import export_bundle
    from training.seater.model import Seater, SeaterParams
    from training.seater.task import LossConfig, SeaterTask

    data = make_synthetic(SyntheticConfig(n_users=200, n_items=60, n_clusters=4, seed=5))
    encode = hashing_encoder()
    texts = item_texts(data.item_text)
    vocab = Vocabulary.build(texts, 200, 2, 0.5)
    out = train_indexer(
        Corpus(encode(texts), vocab.bags(texts), len(vocab)),
        IndexerParams(k=4, levels=4, d_text=48, d_code=8, hidden=16, d_recon=16, dropout=0.0),
        ScheduleParams(recon_warmup_epochs=1, encoder_warmup_epochs=1, epochs=2,
                       batch_size=16, progress=False, threads=0),
        AssignParams())
    tree, report = from_codes(out.codes, k=4)
    assert report.collision_rate == 0.0 and tree.max_depth == 4

    torch.manual_seed(0)
    model = Seater(tree.n_nodes, tree.max_depth, tree.root,
                   SeaterParams(d_model=16, max_len=8, n_heads=2, dropout=0.0))
    task = SeaterTask(model, tree, data.sequences, torch.device("cpu"), LossConfig())
    fit_briefly(task, model, batch_size=128, steps=10)
    items = {"ids": [str(x) for x in data.item_ids], "titles": data.item_text.title}
    root = tmp_path_factory.mktemp("bundles")
    v1 = export_bundle(model, tree, items, root, "semantic-v1", data.name)

    # A new listing: item 0's words, no interactions. Coded by the trained indexer, placed
    # at its semantic path, embedded from its neighbours, published as v2 (same graphs).
    title = data.item_text.title[0].rsplit(" model ", 1)[0] + " model 999"
    text = f"{title}. {' > '.join(data.item_text.categories[0][0])}"
    res = cold_start(tree, out.model, encode([text]), model.node_emb.weight.detach().numpy())
    new_items = extend_items(items, [NEW_ID], [title])
    v2 = publish_tree_version(v1, res.tree, res.node_emb, new_items, root, "semantic-v2")
    leaf = int(res.tree.item_leaf[res.items[0]])
    kids = res.tree.children[int(res.tree.parent[leaf])]
    siblings = [items["ids"][int(res.tree.leaf_item[c])] for c in kids if c >= 0 and c != leaf]
    return ColdStartWorld(root, v1, v2, items["ids"], res.codes[0].tolist(), siblings,
                          tree.codes, res.tree.codes, model, res, new_items)


def test_insertion_keeps_existing_codes_and_adds_one_leaf(world):
    assert world.codes_after.shape == (61, 4)
    np.testing.assert_array_equal(world.codes_after[:60], world.codes_before)
    assert world.codes_after[60].tolist() == world.new_code


async def test_new_item_is_retrieved_after_hot_reload(world):
    from service.app import onnx_loader
    from service.settings import Settings

    settings = Settings(artifacts=world.v1, reload_enabled=True, reload_token=TOKEN,
                        reload_root=world.root, redis_url=None, log_json=False, max_wait_ms=2.0)
    history = world.siblings or world.ids[:2]
    others = [i for i in world.ids if i not in history]
    async with running(settings, onnx_loader) as client:
        before = (await client.get("/v1/model")).json()
        r = await client.post("/v1/admin/reload", headers=AUTH, json={"path": str(world.v2)})
        assert r.status_code == 200, r.text
        after = (await client.get("/v1/model")).json()
        # every other item excluded: the only candidate left is the new one
        only = (await client.post("/retrieve", json={
            "history": history, "n": 1, "exclude": others})).json()
        # the whole catalogue, siblings as history: the new item is reachable among all
        full = (await client.post("/retrieve", json={
            "history": history, "n": 61 - len(history), "beam_size": 61})).json()
        # and it can be part of a history now
        as_history = await client.post("/retrieve", json={"history": [NEW_ID], "n": 3})

    assert (before["version"], before["n_items"]) == ("semantic-v1", 60)
    assert (after["version"], after["n_items"]) == ("semantic-v2", 61)
    assert r.json()["previous_version"] == "semantic-v1"
    assert only["model_version"] == "semantic-v2"
    assert [(x["id"], x["code"]) for x in only["items"]] == [(NEW_ID, world.new_code)]
    assert NEW_ID in [x["id"] for x in full["items"]]
    assert as_history.status_code == 200 and as_history.json()["unknown_ids"] == []


@pytest.mark.slow
def test_full_reexport_with_the_grown_table_serves_the_new_item_too(world, tmp_path):
    """The other way to publish v2: re-trace the graphs with ``export_bundle`` on a model
    whose table has the new rows (its ONNX-vs-torch parity check runs on the new tree)."""
    from service.model.load import load_engine
    from service.settings import Settings
    from training.seater.export import export_bundle

    res = world.result
    path = export_bundle(world.model.with_node_table(res.node_emb), res.tree, world.items, tmp_path,
                         "semantic-v2-full", "synthetic", node_emb=res.node_emb)
    engine = load_engine(path, Settings(redis_url=None))
    states = engine.encode([np.arange(3)])
    hits = engine.search(states, np.array([1]), np.array([8]), [np.arange(60)])
    assert hits[0].items.tolist() == [60]
