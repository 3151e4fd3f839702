"""Export parity: ONNX Runtime vs torch, and the service's engine vs the offline search."""

import json

import numpy as np
import pytest
import torch

from training.data import Sequences
from training.publish import sha256
from training.seater.export import export_bundle
from training.seater.task import LossConfig, SeaterTask


def test_manifest_lists_every_file_with_its_checksum(tiny_bundle):
    manifest = json.loads((tiny_bundle.path / "manifest.json").read_text())
    assert set(manifest["files"]) == {"encoder.onnx", "decoder.onnx", "tree.npz",
                                      "items.json", "embeddings.npy"}
    for name, meta in manifest["files"].items():
        assert meta["sha256"] == sha256(tiny_bundle.path / name)
    assert manifest["tree"]["n_items"] == tiny_bundle.tree.n_items
    assert manifest["config"]["pad_id"] == -1
    assert max(manifest["parity_max_abs_diff"].values()) <= 1e-4


def test_onnx_matches_torch_on_logits(tiny_bundle):
    import onnxruntime as ort

    model, tree = tiny_bundle.model, tiny_bundle.tree
    enc = ort.InferenceSession(str(tiny_bundle.path / "encoder.onnx"))
    dec = ort.InferenceSession(str(tiny_bundle.path / "decoder.onnx"))
    node_emb = np.load(tiny_bundle.path / "embeddings.npy")
    history = np.array([[-1, -1, 4, 7, 9], [1, 2, 3, 4, 5]], dtype=np.int64)  # leaf ids
    k, v, bias = enc.run(None, {"history": history, "node_emb": node_emb})
    prefix = np.concatenate([np.full((2, 6, 1), tree.root),
                             tree.node_paths[np.arange(12).reshape(2, 6)][..., :2]], axis=-1)
    got = dec.run(None, {"prefix": prefix, "memory_k": k, "memory_v": v, "memory_bias": bias,
                         "children": tree.children.astype(np.int64), "node_emb": node_emb})[0]
    with torch.no_grad():
        mem = model.memory(*model.encode(torch.from_numpy(history)))
        want = model.step(torch.from_numpy(prefix), *mem,
                          torch.from_numpy(tree.children.astype(np.int64))).numpy()
    assert got.shape == (2, 6, tree.k)
    valid = tree.children[prefix[..., -1]] >= 0
    assert np.abs(got - want)[valid].max() <= 1e-4


def test_service_engine_returns_the_offline_top_n(tiny_bundle):
    from service.model.load import load_engine
    from service.settings import Settings

    engine = load_engine(tiny_bundle.path, Settings())
    data = tiny_bundle.data
    histories = [data.sequences[u][:-1] for u in range(40)]
    states = engine.encode(histories)
    n = np.full(40, 10)
    hits = engine.search(states, n, np.full(40, 20), histories)
    task = SeaterTask(tiny_bundle.model, tiny_bundle.tree, Sequences.from_lists([[0, 1]]),
                      torch.device("cpu"), LossConfig(), beam_size=20)
    hist = Sequences.from_lists(histories)
    offline = task.search(hist, 10, hist)
    for b in range(40):
        assert hits[b].items.tolist() == offline.items[b].tolist()
        assert np.allclose(hits[b].scores, offline.scores[b], atol=1e-4)


def test_bundles_are_immutable(tiny_bundle):
    with pytest.raises(FileExistsError, match="immutable"):
        export_bundle(tiny_bundle.model, tiny_bundle.tree, {"ids": []},
                      tiny_bundle.path.parent, tiny_bundle.path.name, "x")
