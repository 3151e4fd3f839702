"""Distillation from a SASRec folded onto the tree: soft child targets against an oracle
that reads subtrees off the node paths, the loss by hand, and a training step with it."""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from tests.helpers import random_tree
from training.cli import app
from training.config import ConfigError
from training.data.sequences import Sequences
from training.sasrec.model import SASRec, SASRecParams
from training.sasrec.pipeline import SASRecRun
from training.seater.distill import TreeTeacher, distillation_loss, load_teacher
from training.seater.losses import generation_loss
from training.seater.model import Seater, SeaterParams
from training.seater.task import LossConfig, SeaterTask

N_ITEMS = 11  # k = 3: an uneven last level, so some child slots are empty


@pytest.fixture(scope="module")
def tree():
    return random_tree(N_ITEMS, k=3, seed=1)


def oracle(tree, probs: np.ndarray, target: int) -> np.ndarray:
    """Per level, the mass under each child of the path's node, from node_paths alone."""
    paths = tree.node_paths
    out = np.zeros((tree.max_depth, tree.k))
    parent = tree.root
    for level, node in enumerate(paths[target]):
        if node < 0:
            break
        for slot, child in enumerate(tree.children[parent]):
            if child >= 0:
                out[level, slot] = probs[(paths == child).any(axis=1)].sum()
        out[level] /= out[level].sum()
        parent = node
    return out


@pytest.fixture(scope="module")
def teacher(tree):
    torch.manual_seed(0)
    sasrec = SASRec(N_ITEMS, SASRecParams(max_len=6, d_model=8, dropout=0.0))
    return TreeTeacher(sasrec, tree, temperature=1.0, device=torch.device("cpu"))


def test_child_targets_are_the_mass_under_each_child(tree, teacher):
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(N_ITEMS), size=4)
    targets = np.array([0, 5, 9, 10])
    got = teacher.child_targets(torch.tensor(probs, dtype=torch.float32), targets).numpy()
    for b, target in enumerate(targets):
        np.testing.assert_allclose(got[b], oracle(tree, probs[b], target), atol=1e-6)
    # several targets per row: each as if alone
    pairs = np.stack([targets, targets[::-1]], axis=1)  # [B, 2]
    both = teacher.child_targets(torch.tensor(probs, dtype=torch.float32), pairs).numpy()
    for b, row in enumerate(pairs):
        for r, target in enumerate(row):
            np.testing.assert_allclose(both[b, r], oracle(tree, probs[b], target), atol=1e-6)
    empty = tree.children[tree.node_paths[targets][:, :-1]] < 0  # slots with no child
    assert (got[:, 1:][empty] == 0).all()


def test_a_teacher_sure_of_the_target_gives_the_generation_loss(tree, teacher):
    targets = np.array([2, 7, 3])
    probs = torch.zeros(3, N_ITEMS)
    probs[torch.arange(3), torch.from_numpy(targets)] = 1.0
    soft = teacher.child_targets(probs, targets)
    logits = torch.randn(3, tree.max_depth, tree.k)
    slots = torch.from_numpy(np.where(tree.node_paths[targets] >= 0,
                                      tree.slot[np.maximum(tree.node_paths[targets], 0)], -1)
                             .astype(np.int64))
    assert distillation_loss(logits, soft).item() == pytest.approx(
        generation_loss(logits, slots).item(), rel=1e-6)


def test_distillation_loss_by_hand():
    logits = torch.tensor([[[0.0, 1.0], [2.0, 0.0]]])  # one example, two levels, k = 2
    soft = torch.tensor([[[0.25, 0.75], [0.5, 0.5]]])
    lse0, lse1 = np.log(1 + np.e), np.log(np.e ** 2 + 1)
    want = -(0.25 * (0 - lse0) + 0.75 * (1 - lse0)) - (0.5 * (2 - lse1) + 0.5 * (0 - lse1))
    assert distillation_loss(logits, soft).item() == pytest.approx(want, rel=1e-6)


def test_item_probs_are_the_sasrecs_softmax(teacher):
    hist = Sequences.from_lists([[1, 2, 3], [4]])
    probs = teacher.item_probs(hist)
    seq = torch.tensor([[N_ITEMS] * 3 + [1, 2, 3], [N_ITEMS] * 5 + [4]])
    want = torch.softmax(teacher.sasrec.scores(seq), dim=-1)
    assert torch.allclose(probs, want, atol=1e-6) and torch.allclose(probs.sum(1), torch.ones(2))


def test_a_task_with_a_teacher_trains_on_it_and_one_without_refuses_the_weight(tree, teacher):
    train = Sequences.from_lists([[0, 1, 2, 3], [4, 5, 6], [7, 8, 9, 10, 1]])
    torch.manual_seed(0)
    model = Seater(tree.n_nodes, tree.max_depth, tree.root,
                   SeaterParams(d_model=8, max_len=6, n_heads=2, dropout=0.0))
    losses = LossConfig(lambda_distill=0.5)
    task = SeaterTask(model, tree, train, torch.device("cpu"), losses, teacher=teacher)
    batch = next(task.batches(np.random.default_rng(0), 8))
    total, logs = task.loss(batch)
    want = logs["gen"] + 0.05 * logs["align"] + 0.05 * logs["rank"] + 0.5 * logs["distill"]
    assert logs["distill"] > 0 and total.item() == pytest.approx(want, rel=1e-5)
    total.backward()
    assert teacher.sasrec.item_emb.weight.grad is None  # the teacher stays frozen
    with pytest.raises(ValueError, match="needs a teacher"):
        SeaterTask(model, tree, train, torch.device("cpu"), losses)
    for bad, message in ((LossConfig(distill_top=4), "needs losses.lambda_distill > 0 as well"),
                         (LossConfig(lambda_distill=1.0, distill_top=-1), "must be >= 0")):
        with pytest.raises(ValueError, match=message):
            SeaterTask(model, tree, train, torch.device("cpu"), bad, teacher=teacher)


@pytest.mark.parametrize(("setting", "message"), [
    ("losses.distill_top=4", "losses.distill_top=4 distils more of the teacher's paths: it "
                             "needs losses.lambda_distill > 0 as well"),
    ("losses.lambda_distill=-1", "losses.lambda_distill must be >= 0, got -1.0"),
    ("losses.distill_temperature=0", "losses.distill_temperature must be > 0, got 0.0"),
])
def test_unusable_loss_settings_are_refused_before_the_data_is_read(tmp_path, monkeypatch,
                                                                    setting, message):
    """The dataset does not exist: the loss settings' error comes first, as one line."""
    monkeypatch.setenv("SEATER_DATA_DIR", str(tmp_path / "nodata"))
    res = CliRunner().invoke(app, ["train", "seater", "-d", "nosuch", "--set", setting,
                                   "--out", str(tmp_path / "runs")])
    assert res.exit_code == 2
    assert res.output.strip() == f"error: {message}"
    assert not (tmp_path / "runs").exists()


def sasrec_folder(path, refit: bool):
    """A SASRec run folder as `seater train sasrec` leaves it: fit/model.pt, and model.pt
    (the refit after --refit, else the fit again), with other weights in each."""
    params = SASRecParams(max_len=6, d_model=8, dropout=0.0)
    cfg = SASRecRun(model=params, refit=refit)
    (path / "fit").mkdir(parents=True)
    (path / "config.json").write_text(json.dumps(asdict(cfg)))
    models = {}
    for seed, file in ((1, path / "fit" / "model.pt"), (2, path / "model.pt")):
        torch.manual_seed(seed)
        models[file.parent.name] = SASRec(N_ITEMS, params)
        torch.save({"model": models[file.parent.name].state_dict()}, file)
    return models["fit"], models[path.name]


def test_the_refit_is_taught_by_the_sasrecs_refit_and_needs_one(tree, tmp_path):
    fit, refit = sasrec_folder(tmp_path / "with", refit=True)
    cpu = torch.device("cpu")
    for stage, want in (("fit", fit), ("refit", refit)):
        got = load_teacher(tmp_path / "with", tree, 1.0, cpu, stage).sasrec.state_dict()
        assert all(torch.equal(got[k], v) for k, v in want.state_dict().items()), stage
    sasrec_folder(tmp_path / "without", refit=False)
    load_teacher(tmp_path / "without", tree, 1.0, cpu, "fit")
    with pytest.raises(ConfigError, match="trained without --refit: retrain it with --refit"):
        load_teacher(tmp_path / "without", tree, 1.0, cpu, "refit")


def test_loading_a_teacher_leaves_the_random_stream_alone(tree, tmp_path):
    """The teacher is built inside the seeded task builder: drawing from the global
    generator there would change every later dropout mask and shuffle."""
    sasrec_folder(tmp_path, refit=False)
    torch.manual_seed(5)
    want = torch.rand(3)
    torch.manual_seed(5)
    load_teacher(tmp_path, tree, 1.0, torch.device("cpu"))
    assert torch.equal(torch.rand(3), want)


@pytest.mark.parametrize("top", [0, 2])
def test_soft_targets_are_computed_once_per_example_and_equal_fresh_ones(tree, teacher,
                                                                         monkeypatch, top):
    from training.seater import task as task_module

    train = Sequences.from_lists([[0, 1, 2, 3], [4, 5, 6], [7, 8, 9, 10, 1], [2, 4, 6, 8]])
    calls = []
    original = teacher.item_probs
    monkeypatch.setattr(teacher, "item_probs", lambda h: calls.append(len(h)) or original(h))
    model = Seater(tree.n_nodes, tree.max_depth, tree.root,
                   SeaterParams(d_model=8, max_len=6, n_heads=2, dropout=0.0))
    losses = LossConfig(lambda_distill=1.0, distill_top=top)
    task = SeaterTask(model, tree, train, torch.device("cpu"), losses, teacher=teacher)
    n = task.ex_row.size
    rng = np.random.default_rng(0)
    for _ in range(3):  # three epochs, batches of 4 in a new order each time
        for batch in task.batches(rng, 4):
            hist = train.take(task.ex_row[batch.idx]).head(task.ex_pos[batch.idx])
            items, got = task.soft_targets(batch.idx, hist, task.ex_target[batch.idx])
            assert items.shape == (len(batch.idx), 1 + top) and got.shape[1] == 1 + top
            assert np.array_equal(items[:, 0], task.ex_target[batch.idx])
            for row, seen in zip(items[:, 1:], hist, strict=True):  # the search excludes seen items
                assert not set(row) & set(seen)
            probs = original(hist)
            for r in range(1 + top):
                fresh = teacher.child_targets(probs, items[:, r])
                torch.testing.assert_close(got[:, r], fresh)
    assert sum(calls) == n  # each example's teacher pass ran once, in the first epoch
    monkeypatch.setattr(task_module, "SOFT_CACHE_BYTES", 0)  # too big to keep: recomputed
    calls.clear()
    fresh_task = SeaterTask(model, tree, train, torch.device("cpu"), losses, teacher=teacher)
    for _ in range(2):
        for batch in fresh_task.batches(rng, 4):
            fresh_task.loss(batch)
    assert sum(calls) == 2 * n


def test_top_items_are_the_teachers_most_likely_unseen_others(teacher):
    probs = torch.tensor([[0.30, 0.05, 0.20, 0.01, 0.10, 0.02, 0.12, 0.03, 0.07, 0.06, 0.04],
                          [0.01, 0.40, 0.02, 0.25, 0.03, 0.04, 0.05, 0.06, 0.07, 0.03, 0.04]])
    seen = Sequences.from_lists([[2, 9], [3]])  # left out where the search excludes them
    targets = np.array([0, 7])
    assert teacher.top_items(probs, targets, 3, seen).tolist() == [[6, 4, 8], [1, 8, 6]]
    assert teacher.top_items(probs, targets, 3).tolist() == [[2, 6, 4], [1, 3, 8]]


def test_the_teachers_top_paths_are_decoded_and_distilled_at_the_paths_weight(tree, teacher):
    train = Sequences.from_lists([[0, 1, 2, 3], [4, 5, 6], [7, 8, 9, 10, 1]])
    model = Seater(tree.n_nodes, tree.max_depth, tree.root,
                   SeaterParams(d_model=8, max_len=6, n_heads=2, dropout=0.0))
    losses = LossConfig(lambda_distill=0.5, distill_top=2)
    task = SeaterTask(model, tree, train, torch.device("cpu"), losses, teacher=teacher)
    batch = next(task.batches(np.random.default_rng(0), 8))
    total, logs = task.loss(batch)
    want = (logs["gen"] + 0.05 * logs["align"] + 0.05 * logs["rank"]
            + 0.5 * (logs["distill"] + logs["distill_top"]))
    assert total.item() == pytest.approx(want, rel=1e-5)
    # by hand: each top item's path decoded alone, its loss against the teacher's targets
    idx = batch.idx
    hist = train.take(task.ex_row[idx]).head(task.ex_pos[idx])
    items, soft = task.soft_targets(idx, hist, task.ex_target[idx])
    history = torch.from_numpy(task.history_tokens(hist))
    per_row = []
    for r in (1, 2):
        paths = torch.from_numpy(task.paths[items[:, r]])[:, None]  # (B, 1, L)
        logits, _, _ = model(history, paths, task.children)
        per_row.append(distillation_loss(logits[:, 0], soft[:, r]).item())
    assert logs["distill_top"] == pytest.approx(np.mean(per_row), rel=1e-5)
    # the ranking loss still sees only the target and its negatives
    plain = SeaterTask(model, tree, train, torch.device("cpu"),
                       LossConfig(lambda_distill=0.5), teacher=teacher)
    assert plain.loss(batch)[1]["rank"] == pytest.approx(logs["rank"], rel=1e-5)
