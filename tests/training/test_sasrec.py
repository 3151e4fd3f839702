import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from training.cli import app
from training.data import Sequences, SyntheticConfig, make_synthetic
from training.evaluate import evaluate
from training.protocols import make_split
from training.sasrec.model import SASRec, SASRecParams
from training.sasrec.task import SASRecTask
from training.trainer import TrainConfig, seed_everything, train

SMALL = SASRecParams(max_len=20, d_model=32, n_layers=1, n_heads=2, dropout=0.1, n_negatives=32)


@pytest.fixture(scope="module")
def data():
    return make_synthetic(SyntheticConfig(n_users=600, n_items=150, n_clusters=6, seed=1))


def test_padding_does_not_change_the_state():
    torch.manual_seed(0)
    model = SASRec(50, SMALL).eval()
    hist = torch.tensor([[3, 7, 9, 11]])
    pad = model.pad_id
    padded = torch.tensor([[pad, pad, pad, 3, 7, 9, 11]])
    a = model.user_states(hist)
    b = model.user_states(padded)
    assert torch.allclose(a, b, atol=1e-5)


RECTOOLS = replace(SMALL, init="xavier", item_dropout=0.2, mask_padded_keys=False)


def test_visible_padding_is_always_padded_to_max_len():
    # with padding visible to attention the state depends on how much of it there is, so
    # the model pads to max_len itself: trimmed or fully padded input, one answer
    torch.manual_seed(0)
    model = SASRec(50, RECTOOLS).eval()
    hist = torch.tensor([[3, 7, 9, 11], [model.pad_id, 5, 6, 8]])
    full = torch.cat([torch.full((2, 16), model.pad_id), hist], 1)
    assert torch.allclose(model.user_states(hist), model.user_states(full), atol=1e-5)
    assert model.encode(hist).shape == (2, 4, SMALL.d_model)
    # ... and the visible padding is a real difference from the masked model
    masked = SASRec(50, replace(RECTOOLS, mask_padded_keys=True)).eval()
    masked.load_state_dict(model.state_dict())
    assert (masked.user_states(hist) - model.user_states(hist)).abs().max() > 1e-3
    # the training loss too: trimmed rows (as SASRecTask cuts them) = rows padded to max_len
    target = torch.tensor([[7, 9, 11, 12], [model.pad_id, 6, 8, 13]])
    full_target = torch.cat([torch.full((2, 16), model.pad_id), target], 1)
    torch.manual_seed(1)
    a = model(hist, target)
    torch.manual_seed(1)
    b = model(full, full_target)
    assert torch.allclose(a, b, atol=1e-5)


def test_catalogue_dropout_drops_scored_items_only_while_training():
    model = SASRec(400, replace(SMALL, item_dropout=0.5))
    w = model.item_emb.weight
    model.train()
    cat = model.catalogue()
    kept = cat[:-1] != 0
    assert 0.45 < kept.float().mean() < 0.55
    assert torch.allclose(cat[:-1][kept], 2 * w[:-1][kept])
    model.eval()
    assert model.catalogue() is w
    # every embedding dropped: inputs and scored items are zero, so every BCE logit is 0
    # and the loss is exactly ln 2
    gone = SASRec(50, replace(SMALL, item_dropout=1.0, loss="bce")).train()
    seq = torch.tensor([[1, 2, 3, 4]])
    assert gone(seq, seq + 1).item() == pytest.approx(np.log(2), abs=1e-6)


def test_xavier_init_starts_items_small_and_unscaled():
    model = SASRec(5000, replace(SMALL, init="xavier"))
    emb = model.item_emb.weight
    assert emb[:-1].std().item() == pytest.approx((2 / (5001 + SMALL.d_model)) ** 0.5, rel=0.05)
    assert torch.all(emb[model.pad_id] == 0)
    assert model.encoder.scale == 1.0
    assert SASRec(5000, SMALL).encoder.scale == pytest.approx(SMALL.d_model**0.5)


def test_visible_padding_exports_with_parity(tmp_path):
    from training.sasrec.export import check_parity, export_encoder

    torch.manual_seed(0)
    model = SASRec(60, RECTOOLS).eval()
    table = model.item_embeddings()
    export_encoder(model, tmp_path / "encoder.onnx", table)
    assert check_parity(model, tmp_path / "encoder.onnx", table) < 1e-4  # T = 1, 4 and max_len


@pytest.mark.parametrize("loss", ["ss", "ce", "bce"])
def test_each_loss_trains_above_popularity(data, loss, tmp_path):
    seed_everything(0)
    split = make_split(data, "loo")
    model = SASRec(data.n_items, replace(SMALL, loss=loss))
    task = SASRecTask(model, split.train, torch.device("cpu"))
    cfg = TrainConfig(epochs=6, batch_size=64, lr=3e-3, patience=6, progress=False)
    train(task, split.valid, cfg, tmp_path, resume=False)
    res = evaluate(task, split.test, ks=(10,), progress=False)

    class Popular:
        def recommend(self, h, k, exclude):
            counts = np.bincount(split.train.values, minlength=data.n_items).astype(float)
            scores = np.tile(counts, (len(h), 1))
            scores[exclude.row_ids(), exclude.values] = -np.inf
            from training.metrics import topk_indices
            return topk_indices(scores, k)

    pop = evaluate(Popular(), split.test, ks=(10,), progress=False)
    # the synthetic chains make the next item predictable: a trained model must beat
    # popularity by a wide margin (observed ~0.5 vs ~0.1)
    assert res.metrics["recall@10"] > 2 * pop.metrics["recall@10"]


def test_resume_reproduces_an_uninterrupted_run(data, tmp_path):
    split = make_split(data, "loo")

    def run(folder, epochs, resume):
        seed_everything(0)
        model = SASRec(data.n_items, SMALL)
        task = SASRecTask(model, split.train, torch.device("cpu"))
        # one thread: multi-threaded CPU kernels may sum in a different order when the
        # machine is busy, which moves weights by more than the tolerance below
        cfg = TrainConfig(epochs=epochs, batch_size=64, patience=99, progress=False,
                          threads=1)
        train(task, split.valid, cfg, folder, resume=resume)
        return json.loads((folder / "metrics.jsonl").read_text().splitlines()[-1]), model

    threads = torch.get_num_threads()
    try:
        straight, m1 = run(tmp_path / "a", 3, False)
        run(tmp_path / "b", 2, False)
        resumed, m2 = run(tmp_path / "b", 3, True)
    finally:
        torch.set_num_threads(threads)
    assert len((tmp_path / "b" / "metrics.jsonl").read_text().splitlines()) == 3
    assert resumed["loss_total"] == pytest.approx(straight["loss_total"], rel=1e-6)
    last = torch.load(tmp_path / "b" / "last.pt", weights_only=False)
    ref = torch.load(tmp_path / "a" / "last.pt", weights_only=False)
    for k, v in ref["model"].items():
        assert torch.allclose(v, last["model"][k], atol=1e-6), k


def test_recommend_excludes_history(data):
    model = SASRec(data.n_items, SMALL)
    task = SASRecTask(model, data.sequences, torch.device("cpu"))
    hist = Sequences.from_lists([[1, 2, 3], [4]])
    ranked = task.recommend(hist, 20, hist)
    assert ranked.shape == (2, 20)
    assert not set(ranked[0]) & {1, 2, 3} and 4 not in ranked[1]
    assert all(len(set(r)) == 20 for r in ranked)


def test_cli_trains_exports_and_reports(tmp_path):
    cfg = tmp_path / "sasrec.yaml"
    cfg.write_text("model:\n  d_model: 16\n  max_len: 10\n  n_negatives: 16\n"
                   "train:\n  epochs: 2\n  batch_size: 64\n  progress: false\n")
    res = CliRunner().invoke(app, [
        "train", "sasrec", "-c", str(cfg), "-d", "synthetic:n_users=200,n_items=60,seed=1",
        "--out", str(tmp_path / "runs"), "--refit", "--set", "train.patience=2",
        "--reports-dir", str(tmp_path / "reports"),
    ])
    assert res.exit_code == 0, res.output
    run = tmp_path / "runs" / "synthetic" / "sasrec-loo"
    assert f"run folder: {run}" in res.output
    assert (run / "fit" / "curves.png").is_file() and (run / "refit" / "curves.png").is_file()
    assert (run / "fit" / "item_emb.npy").is_file()  # the early-stopped fit, for the tree
    emb = np.load(run / "item_emb.npy")
    assert emb.shape == (60, 16)
    assert len(json.loads((run / "items.json").read_text())["ids"]) == 60
    report = json.loads((tmp_path / "reports" / "quality" / "synthetic.json").read_text())
    keys = sorted(r["key"] for r in report["runs"])
    # a budgeted run is keyed apart from the converged one it must never overwrite
    assert keys == ["sasrec/loo/ss-d16-L1-h1-len10-neg16-sequence-ep2",
                    "sasrec/loo/ss-d16-L1-h1-len10-neg16-sequence-ep2-refit"]
    entry = report["runs"][0]
    assert {"commit", "machine", "seed", "protocol", "metrics", "throughput"} <= set(entry)
    readme = (tmp_path / "reports" / "quality" / "README.md").read_text()
    assert readme.count("| sasrec/") == 4
    links = [line for line in readme.splitlines() if line.startswith("- sasrec/")]
    assert len(links) == 2  # the fit's and the refit's curve, linked relative to the README
    target = links[0].rsplit("](", 1)[1].rstrip(")")
    assert (tmp_path / "reports" / "quality" / target).is_file()


def test_cli_bad_config_is_a_clear_error(tmp_path):
    res = CliRunner().invoke(app, ["train", "sasrec", "--set", "model.d_modle=3"])
    assert res.exit_code == 2
    assert "unknown key(s) ['d_modle']" in res.output
