"""The named SEATER presets: valid configs, a tiny run end to end each, and the default
preset's ranking loss learning (falling below its all-scores-equal value)."""

from dataclasses import fields

import numpy as np
import pytest
import torch

from indexer import BuildConfig, build_tree
from training.config import build, from_dict
from training.data.synthetic import SyntheticConfig, make_synthetic
from training.protocols import make_split
from training.seater.model import Seater, SeaterParams
from training.seater.pipeline import SeaterRun, run_seater
from training.seater.presets import PRESETS
from training.seater.task import LossConfig, SeaterTask

# shrinks the data and the budget only; every model and loss setting is the preset's
TINY = ["dataset=synthetic:n_users=120,n_items=48,seed=2", "tree.ids=random", "tree.k=4",
        "init_from_sasrec=false", "train.epochs=2", "train.patience=2",
        "train.max_batches=6", "train.batch_size=32", "train.threads=1",
        "train.progress=false", "train.max_eval_users=30", "beam_size=12"]


def flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def lookup(cfg, dotted: str):
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return cfg


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_key_names_a_config_field(name):
    cfg = build(SeaterRun, None, {"preset": name}, presets=PRESETS)
    assert cfg.preset == name
    for key, value in flatten(PRESETS[name]).items():
        assert lookup(cfg, key) == value, key


def test_defaults_are_the_earlier_runs_and_presets_sit_under_flags():
    # dataclass defaults unchanged (old checkpoints load, the demo reproduces) ...
    plain = SeaterRun()
    assert not plain.model.rank_heads and plain.losses.rank_negatives == "levels"
    assert plain.model.encoder_block == "sasrec" and plain.losses.gen_reduction == "levels"
    # ... and a flag or --set wins over the preset
    cfg = build(SeaterRun, None, {"preset": "reference", "train.batch_size": 64},
                ["losses.tau=0.5"], presets=PRESETS)
    assert cfg.train.batch_size == 64 and cfg.losses.tau == 0.5
    assert cfg.train.metric == "recall@50" and cfg.model.encoder_block == "transformer"
    yelp = build(SeaterRun, None, {"preset": "reference-yelp"}, presets=PRESETS)
    assert yelp.losses.tau == 0.3 and yelp.model == cfg.model


@pytest.mark.parametrize("name", ["default", "reference"])
def test_a_tiny_run_of_each_preset(name, tmp_path):
    cfg = build(SeaterRun, None, {"preset": name, "out_dir": str(tmp_path)}, TINY,
                presets=PRESETS)
    entries = run_seater(cfg, resume=False)
    assert len(entries) == 1
    test = entries[0]["metrics"]["test"]
    assert 0.0 <= test["recall@10"] <= 1.0 and np.isfinite(test["ndcg@10"])
    recorded = from_dict(SeaterRun, entries[0]["config"])
    assert recorded.preset == name and recorded.model == cfg.model
    assert recorded.losses == cfg.losses


def test_the_default_presets_ranking_loss_learns():
    # a short run: the ranking loss must fall well below the value it takes when every
    # score is equal (the margin sum, where an inert ranking loss stays)
    data = make_synthetic(SyntheticConfig(n_users=600, n_items=256, n_clusters=8, seed=0))
    split = make_split(data, "loo")
    pairs = np.zeros((data.n_items, data.n_items))
    for i in range(len(split.train)):
        s = np.asarray(split.train[i])
        pairs[s[:-1], s[1:]] += 1
    u, sv, _ = np.linalg.svd(pairs + pairs.T)
    tree, _ = build_tree((u[:, :8] * sv[:8]).astype(np.float32),
                         BuildConfig(k=4, progress=False))
    preset = PRESETS["default"]
    names = {f.name for f in fields(SeaterParams)} - set(preset["model"])
    params = from_dict(SeaterParams, {**preset["model"], "d_model": 32, "max_len": 10,
                                      "dropout": 0.3})
    assert names  # the rest keeps the dataclass defaults
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = Seater(tree.n_nodes, tree.max_depth, tree.root, params)
    task = SeaterTask(model, tree, split.train, torch.device("cpu"),
                      from_dict(LossConfig, preset["losses"]))
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    rng = np.random.default_rng(0)
    rank, equal = [], []
    while len(rank) < 240:
        for batch in task.batches(rng, 64):
            loss, parts = task.loss(batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
            rank.append(parts["rank"])
            equal.append(parts["rank_equal"])
            if len(rank) == 240:
                break
    first = sum(rank[:40]) / sum(equal[:40])
    last = sum(rank[-60:]) / sum(equal[-60:])
    assert first > 0.9  # it starts at the all-equal value ...
    assert last < 0.7  # ... and learns (independent dropout masks per row: ~0.8 here)
