"""The dense brute-force baseline: a SASRec run exported by ``seater export`` (the CLI
dispatches SASRec run folders to ``training/sasrec/export.py``), loaded by the service's
dense engine, and served by the same HTTP stack as SEATER."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch

from service.model.bundle import (
    BundleError,
    load_dense_bundle,
    load_seater_bundle,
    sha256_file,
)
from service.model.dense import DenseEngine
from service.model.engine import smoke_check
from service.model.load import load_engine
from service.settings import Settings
from tests.helpers import fit_briefly
from tests.service.conftest import running

N = 10


@pytest.fixture(scope="module")
def sasrec_run(tiny_bundle, tmp_path_factory):
    """A briefly trained SASRec saved as ``seater train sasrec`` saves its run folder."""
    from training.sasrec.model import SASRec, SASRecParams
    from training.sasrec.pipeline import SASRecRun, save_sasrec
    from training.sasrec.task import SASRecTask

    data = tiny_bundle.data
    cfg = SASRecRun(dataset=data.name, model=SASRecParams(max_len=12, d_model=16, n_heads=2,
                                                          dropout=0.0, n_negatives=16))
    torch.manual_seed(0)
    model = SASRec(data.n_items, cfg.model)
    task = SASRecTask(model, data.sequences, torch.device("cpu"))
    fit_briefly(task, model, batch_size=64, steps=20)
    folder = tmp_path_factory.mktemp("runs") / "sasrec-loo"
    save_sasrec(folder, model, data, {"config": asdict(cfg), "n_items": data.n_items})
    return folder, task


@pytest.fixture(scope="module")
def dense_path(sasrec_run, tmp_path_factory) -> Path:
    from typer.testing import CliRunner

    from training.cli import app

    root = tmp_path_factory.mktemp("dense")
    result = CliRunner().invoke(app, ["export", "--run", str(sasrec_run[0]), "--out", str(root),
                                      "--version", "dense-v1"])
    assert result.exit_code == 0, result.output
    return root / "dense-v1"


@pytest.fixture(scope="module")
def engine(dense_path) -> DenseEngine:
    engine = load_engine(dense_path, Settings(providers="cpu", intra_op_threads=1))
    assert isinstance(engine, DenseEngine)
    return engine


def test_the_cli_exports_a_checksummed_dense_bundle_with_onnx_parity(dense_path, sasrec_run):
    manifest = json.loads((dense_path / "manifest.json").read_text())
    assert manifest["kind"] == "dense" and manifest["config"]["pad_id"] == 90
    assert set(manifest["files"]) == {"encoder.onnx", "item_emb.npy", "items.json"}
    for name, meta in manifest["files"].items():
        assert meta["sha256"] == sha256_file(dense_path / name)
    assert manifest["parity_max_abs_diff"]["user"] <= 1e-4
    model = sasrec_run[1].model
    np.testing.assert_array_equal(np.load(dense_path / "item_emb.npy"), model.item_embeddings())


def test_the_encoder_graph_matches_torch_with_and_without_padding(engine, sasrec_run):
    model = sasrec_run[1].model
    history = np.array([[4, 8, 15, 16, 23], [90, 90, 90, 42, 7]])  # row 1 left-padded
    got = engine.encoder.run(None, {"history": history, "item_emb": model.item_embeddings()})[0]
    want = model.user_states(torch.from_numpy(history)).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_the_item_table_is_an_encoder_input_not_a_weight(dense_path, sasrec_run):
    """Format 2: encoder.onnx holds no [n_items(+1), d] table, so its size does not grow
    with the catalogue (a 10M-item table would not fit in one ONNX protobuf), and the
    graph reads whatever table it is given: the user vector follows the input."""
    import onnx
    import onnxruntime as ort

    manifest = json.loads((dense_path / "manifest.json").read_text())
    assert manifest["format_version"] == 2
    graph = onnx.load(str(dense_path / "encoder.onnx")).graph
    assert [i.name for i in graph.input] == ["history", "item_emb"]
    assert all(90 not in init.dims[:1] and 91 not in init.dims[:1] for init in graph.initializer)
    # only row lookups read the table: a call costs B x T rows, never a pass over (or a
    # copy of) the catalogue, such as appending a padding row to it would be
    readers = [node.op_type for node in graph.node if "item_emb" in node.input]
    assert readers and set(readers) == {"Gather"}, readers
    model = sasrec_run[1].model
    session = ort.InferenceSession(str(dense_path / "encoder.onnx"))
    history = np.array([[4, 8, 15, 16, 23]])
    table = model.item_embeddings()
    moved = table.copy()
    moved[8] += 1.0  # an item in the history: the user vector must change
    a, b = (session.run(None, {"history": history, "item_emb": t})[0] for t in (table, moved))
    assert np.abs(a - b).max() > 1e-3
    moved = table.copy()
    moved[60] += 1.0  # an item outside it: the user vector must not
    c = session.run(None, {"history": history, "item_emb": moved})[0]
    np.testing.assert_array_equal(a, c)


def test_a_format_1_dense_bundle_still_loads_and_answers_the_same(dense_path, sasrec_run,
                                                                   engine, tmp_path):
    """Bundles exported before the table became an input (it sat inside encoder.onnx)
    are still served, with the same answers."""
    import shutil

    from torch import nn

    from training.sasrec.export import _histories
    from training.seater.export import OPSET, quiet_exporter

    model = sasrec_run[1].model

    class TableInside(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, history):
            return self.model.encode(history)[:, -1]

    old = tmp_path / "dense-old"
    shutil.copytree(dense_path, old)
    with quiet_exporter():
        torch.onnx.export(TableInside(), (_histories(model, 3, 5, seed=0),),
                          old / "encoder.onnx", dynamo=True, opset_version=OPSET,
                          input_names=["history"], output_names=["user"], external_data=False,
                          dynamic_shapes={"history": {0: torch.export.Dim("batch", max=1024),
                                                      1: torch.export.Dim("seq", max=12)}})
    manifest = json.loads((old / "manifest.json").read_text())
    manifest["format_version"] = 1
    manifest["files"]["encoder.onnx"]["sha256"] = sha256_file(old / "encoder.onnx")
    (old / "manifest.json").write_text(json.dumps(manifest))
    legacy = load_engine(old, Settings(providers="cpu", intra_op_threads=1))
    assert legacy.info.format_version == 1
    histories = [np.array([4, 8, 15, 16, 23]), np.array([42, 7]), np.array([1])]
    got = legacy.search(legacy.encode(histories), np.full(3, N), np.full(3, N), histories)
    want = engine.search(engine.encode(histories), np.full(3, N), np.full(3, N), histories)
    for g, w in zip(got, want, strict=True):
        assert g.items.tolist() == w.items.tolist()
        np.testing.assert_allclose(g.scores, w.scores, atol=1e-5)
    manifest["format_version"] = 3
    (old / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=r"dense bundle format 3, this service reads \[1, 2\]"):
        load_dense_bundle(old)


def test_dense_top_n_equals_sasrec_recommend(engine, sasrec_run, tiny_bundle):
    from training.data import Sequences

    task = sasrec_run[1]
    seqs = tiny_bundle.data.sequences
    histories = [np.asarray(seqs[u][: 2 + u % 15]) for u in range(40)]
    states = engine.encode(histories)
    hits = engine.search(states, np.full(40, N), np.full(40, N), histories)
    hist = Sequences.from_lists([h.tolist() for h in histories])
    offline = task.recommend(hist, N, hist)
    for hit, want, h in zip(hits, offline, histories, strict=True):
        assert hit.items.tolist() == want.tolist()
        assert not set(hit.items.tolist()) & set(h.tolist())
        assert hit.codes.shape == (N, 0) and np.all(np.diff(hit.scores) <= 0)


def test_filters_mask_the_scores_before_the_top_n(engine, tiny_bundle):
    """Brute force: rank every allowed, unseen item by its dot product; a batch mixing two
    masks and an unfiltered request (the all-true row) answers that, n items while n exist."""
    rng = np.random.default_rng(2)
    masks = np.stack([rng.random(90) < 0.3, np.arange(90) % 30 == 0, np.ones(90, bool)])
    of = np.array([0, 1, 2, 0, 1])
    seqs = tiny_bundle.data.sequences
    histories = [np.asarray(seqs[u][:6]) for u in range(len(of))]
    states = engine.encode(histories)
    hits = engine.search(states, np.full(len(of), N), np.full(len(of), N), histories,
                         allowed=masks, allowed_of=of)
    table = np.load(engine.bundle.path / "item_emb.npy")
    for hit, state, h, row in zip(hits, states, histories, of, strict=True):
        scores = table @ state.vector
        keep = [i for i in np.lexsort((np.arange(90), -scores)) if masks[row, i] and i not in h]
        assert hit.items.tolist() == keep[:N]
        assert len(hit.items) == min(N, len(keep))
    assert len(hits[1].items) == 3 - len(set(histories[1].tolist()) & {0, 30, 60})


def test_smoke_check_and_info(engine):
    smoke_check(engine)
    info = engine.info
    assert (info.kind, info.n_items, info.k, info.depth, info.version) == (
        "dense", 90, 0, 0, "dense-v1")


def test_kinds_are_not_interchangeable(dense_path, tiny_bundle):
    with pytest.raises(BundleError, match="is a 'dense' bundle, expected 'seater'"):
        load_seater_bundle(dense_path)
    with pytest.raises(BundleError, match="is a 'seater' bundle, expected 'dense'"):
        load_dense_bundle(tiny_bundle.path)


@pytest.mark.anyio
async def test_the_dense_bundle_is_served_by_the_same_stack(dense_path, engine):
    ids = json.loads((dense_path / "items.json").read_text())["ids"]
    history = [3, 14, 15, 9, 26]
    want = engine.search(engine.encode([np.array(history)]), np.array([N]), np.array([N]),
                         [np.array(history)])[0]
    settings = Settings(artifacts=dense_path, providers="cpu", redis_url=None, max_wait_ms=1,
                        log_json=False)
    async with running(settings, load_engine) as client:
        body = {"history": [ids[i] for i in history], "n": N}
        first = await client.post("/retrieve", json=body)
        await client.app.state.batcher.settle_writes()
        again = await client.post("/retrieve", json=body)
        model = (await client.get("/v1/model")).json()
    assert first.status_code == 200, first.text
    assert [i["id"] for i in first.json()["items"]] == [ids[i] for i in want.items]
    assert all(i["code"] == [] for i in first.json()["items"])
    assert (first.json()["cached"], again.json()["cached"]) == (False, True)
    assert [i["id"] for i in again.json()["items"]] == [i["id"] for i in first.json()["items"]]
    assert model["kind"] == "dense" and model["version"] == "dense-v1"


def test_dense_bundles_are_immutable_and_match_their_catalog(dense_path, sasrec_run):
    from training.sasrec.export import export_sasrec_bundle

    model = sasrec_run[1].model
    with pytest.raises(FileExistsError, match="immutable"):
        export_sasrec_bundle(model, {"ids": [str(i) for i in range(90)]}, dense_path.parent,
                             dense_path.name, "x")
    with pytest.raises(ValueError, match="items.json has 3 ids, the model 90 items"):
        export_sasrec_bundle(model, {"ids": ["a", "b", "c"]}, dense_path.parent, "other", "x")
    assert not (dense_path.parent / "other").exists()
