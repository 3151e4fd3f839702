"""SEATER built on a RecTools-style (tuned) SASRec: the encoder takes its weights only under
the input conventions they were trained with (no input scaling, visible left padding)."""

from __future__ import annotations

import json
from dataclasses import asdict, replace

import numpy as np
import pytest
import torch

from tests.helpers import random_tree
from training.config import ConfigError
from training.sasrec.model import SASRec, SASRecParams
from training.sasrec.pipeline import SASRecRun
from training.seater.model import Seater, SeaterParams
from training.seater.pipeline import init_from_sasrec

N_ITEMS = 30
TUNED = SASRecParams(max_len=8, d_model=16, n_layers=1, n_heads=1, dropout=0.0,
                     init="xavier", mask_padded_keys=False)
SEATER = SeaterParams(d_model=16, max_len=8, n_heads=2, enc_heads=1, dropout=0.0)
MATCHING = replace(SEATER, scale_input=False, mask_padded_keys=False)


@pytest.fixture(scope="module")
def tree():
    return random_tree(N_ITEMS, k=3, seed=0)


@pytest.fixture(scope="module")
def sasrec_run(tmp_path_factory):
    """A SASRec run folder as `seater train sasrec` leaves it (config, fit/model.pt)."""
    torch.manual_seed(3)
    model = SASRec(N_ITEMS, TUNED).eval()
    folder = tmp_path_factory.mktemp("sasrec")
    (folder / "fit").mkdir()
    cfg = SASRecRun(model=TUNED)
    (folder / "config.json").write_text(json.dumps(asdict(cfg)))
    torch.save({"model": model.state_dict(), "config": asdict(cfg)}, folder / "fit" / "model.pt")
    return folder, model


def test_visible_padding_is_padded_to_max_len_inside_encode(tree):
    torch.manual_seed(0)
    model = Seater(tree.n_nodes, tree.max_depth, tree.root, MATCHING).eval()
    leaves = torch.from_numpy(tree.item_leaf[[3, 7, 9]].astype(np.int64))[None]
    trimmed = model.memory(*model.encode(leaves))
    padded = model.memory(*model.encode(torch.cat([torch.full((1, 4), -1), leaves], 1)))
    for a, b in zip(trimmed[:2], padded[:2], strict=True):
        assert torch.allclose(a, b[..., 4:, :], atol=1e-5)
    masked = Seater(tree.n_nodes, tree.max_depth, tree.root,
                    replace(MATCHING, mask_padded_keys=True)).eval()
    masked.load_state_dict(model.state_dict())
    assert (masked.encode(leaves)[0] - model.encode(leaves)[0]).abs().max() > 1e-3


def test_a_tuned_sasrec_is_refused_under_other_input_conventions(tree, sasrec_run):
    folder, sasrec = sasrec_run
    emb = sasrec.item_embeddings()
    model = Seater(tree.n_nodes, tree.max_depth, tree.root, SEATER)
    with pytest.raises(ConfigError, match="scale_input: SASRec False, SEATER True"):
        init_from_sasrec(model, tree, folder, emb)


def test_with_matching_conventions_the_encoder_is_sasrecs(tree, sasrec_run):
    """Same weights, same inputs: SEATER's encoder states are SASRec's, position by position,
    for trimmed and for padded histories alike."""
    folder, sasrec = sasrec_run
    model = Seater(tree.n_nodes, tree.max_depth, tree.root, MATCHING).eval()
    init_from_sasrec(model, tree, folder, sasrec.item_embeddings())
    items = torch.tensor([[3, 7, 9, 11], [sasrec.pad_id, 5, 6, 8]])
    leaves = torch.where(items == sasrec.pad_id, -1,
                         torch.from_numpy(tree.item_leaf.astype(np.int64))[
                             items.clamp(max=N_ITEMS - 1)])
    with torch.no_grad():
        want = sasrec.encode(items)
        got, real = model.encode(leaves)
    assert torch.allclose(got[real], want[real], atol=1e-5)


@pytest.mark.slow
def test_visible_padding_exports_with_parity(tree, tmp_path):
    from training.seater.export import export_bundle

    torch.manual_seed(1)
    model = Seater(tree.n_nodes, tree.max_depth, tree.root, MATCHING).eval()
    items = {"ids": [str(i) for i in range(tree.n_items)]}
    path = export_bundle(model, tree, items, tmp_path, "v1", "synthetic")
    manifest = json.loads((path / "manifest.json").read_text())
    assert max(manifest["parity_max_abs_diff"].values()) <= 1e-4


def test_seater_at_its_defaults_takes_the_sasrecs_input_conventions(sasrec_run, tmp_path):
    from training.seater.pipeline import SeaterRun, follow_sasrec_conventions

    folder, _ = sasrec_run
    adopted = follow_sasrec_conventions(SeaterRun(model=SEATER), folder).model
    assert (adopted.scale_input, adopted.mask_padded_keys) == (False, False)
    # not initialised from it: nothing to follow
    scratch = follow_sasrec_conventions(SeaterRun(model=SEATER, init_from_sasrec=False), folder)
    assert scratch.model == SEATER
    # a plain SASRec: SEATER's flags set against it stay as set, and init refuses them
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "config.json").write_text(json.dumps(asdict(SASRecRun(model=replace(
        TUNED, init="sasrec", mask_padded_keys=True)))))
    asked = SeaterRun(model=MATCHING)
    assert follow_sasrec_conventions(asked, plain) == asked
