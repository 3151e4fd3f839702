"""The `seater` protocol's user split is its own setting, not the training seed: seeds then
vary the model on one set of test users, and a SEATER never builds on a SASRec that trained
on its test users."""

from __future__ import annotations

import json
from dataclasses import asdict, replace

import pytest

from training.config import ConfigError
from training.data import SyntheticConfig, make_synthetic
from training.sasrec.model import SASRecParams
from training.sasrec.pipeline import SASRecRun, run_sasrec
from training.seater.pipeline import SeaterRun, check_same_split, sasrec_embeddings, split_of
from training.trainer import TrainConfig


def test_a_training_seed_leaves_the_user_split_alone(tmp_path):
    data = make_synthetic(SyntheticConfig(n_users=60, n_items=30, n_clusters=3, seed=1))
    train = TrainConfig(epochs=1, max_batches=1, batch_size=16, progress=False, threads=1)
    base = SASRecRun(dataset=data.name, protocol="seater", out_dir=str(tmp_path),
                     model=replace(SASRecParams(), d_model=8, max_len=6), train=train)
    seeded = run_sasrec(replace(base, name="seed1", train=replace(train, seed=1)), data=data)
    assert seeded[0]["protocol"]["split_seed"] == 0
    split2 = run_sasrec(replace(base, name="split2", split_seed=2), data=data)
    assert split2[0]["protocol"]["split_seed"] == 2
    # and a SEATER on the seed-1 SASRec, same split, reads it; on split 2 it refuses it
    seater = SeaterRun(dataset=data.name, protocol="seater", out_dir=str(tmp_path),
                       sasrec_run=str(tmp_path / data.name / "seed1"))
    emb, _ = sasrec_embeddings(replace(seater, train=replace(train, seed=1)), data)
    assert emb.shape == (data.n_items, 8)
    with pytest.raises(ConfigError, match="split seed 0, this run evaluates under seater "
                                          "with split seed 2"):
        sasrec_embeddings(replace(seater, split_seed=2), data)


@pytest.mark.parametrize(("sasrec", "seater", "same"), [
    ({"protocol": "seater", "split_seed": 0}, {"protocol": "seater", "split_seed": 0}, True),
    ({"protocol": "seater", "split_seed": 0}, {"protocol": "seater", "split_seed": 1}, False),
    # loo trains on every user's sequence but its last two items: SEATER's test users too
    ({"protocol": "loo", "split_seed": 0}, {"protocol": "seater", "split_seed": 0}, False),
    # loo has one split whatever the seed
    ({"protocol": "loo", "split_seed": 3}, {"protocol": "loo", "split_seed": 0}, True),
    # a run from before split_seed split the users by its training seed
    ({"protocol": "seater", "train": {"seed": 1}}, {"protocol": "seater", "split_seed": 1},
     True),
    ({"protocol": "seater", "train": {"seed": 1}}, {"protocol": "seater", "split_seed": 0},
     False),
])
def test_seater_needs_the_sasrecs_split(tmp_path, sasrec, seater, same):
    cfg = SeaterRun(protocol=seater["protocol"], split_seed=seater["split_seed"])
    (tmp_path / "config.json").write_text(json.dumps(sasrec))
    if same:
        check_same_split(cfg, tmp_path, sasrec)
        assert split_of(sasrec) == split_of(asdict(cfg))
    else:
        with pytest.raises(ConfigError, match="trained on users this run tests on"):
            check_same_split(cfg, tmp_path, sasrec)
