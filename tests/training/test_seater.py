"""SEATER: losses against hand computations, train/inference consistency, search oracle."""

import math

import numpy as np
import pytest
import torch

from indexer import BuildConfig, build_tree, exhaustive_search
from tests.helpers import toy_nodes
from training.data import Sequences
from training.seater.losses import (
    alignment_loss,
    generation_loss,
    ranking_loss,
    sample_negatives,
)
from training.seater.model import Seater, SeaterParams
from training.seater.task import LossConfig, SeaterTask

SMALL = SeaterParams(d_model=16, max_len=8, n_heads=2, enc_heads=1, dropout=0.0)


@pytest.fixture(scope="module")
def tree():
    rng = np.random.default_rng(0)
    t, _ = build_tree(rng.normal(size=(37, 4)).astype(np.float32),
                      BuildConfig(k=3, progress=False))
    return t


@pytest.fixture
def model(tree):
    torch.manual_seed(0)
    return Seater(tree.n_nodes, tree.max_depth, tree.root, SMALL).eval()


def test_generation_loss_by_hand():
    logits = torch.tensor([[[2.0, 0.0], [0.0, 1.0]], [[1.0, 1.0], [5.0, -5.0]]])
    slots = torch.tensor([[0, 1], [1, -1]])  # second example's path is one level shorter
    expected = (
        (-math.log(math.exp(2) / (math.exp(2) + 1)) - math.log(math.e / (math.e + 1)))
        + (-math.log(0.5))
    ) / 2
    assert generation_loss(logits, slots).item() == pytest.approx(expected, rel=1e-5)


def test_alignment_loss_by_hand():
    nodes = toy_nodes()
    c = nodes.c
    # anchor 1: positive root 0; excluded: itself and its child 3; negatives: 2
    l1 = -c(1, 0) + math.log(math.exp(c(1, 0)) + math.exp(c(1, 2)))
    # anchor 2: positive 0; candidates 0, 1, 3
    l2 = -c(2, 0) + math.log(sum(math.exp(c(2, j)) for j in (0, 1, 3)))
    # anchor 3: positive 1; candidates 0, 1, 2
    l3 = -c(3, 1) + math.log(sum(math.exp(c(3, j)) for j in (0, 1, 2)))
    got = alignment_loss(nodes.emb, nodes.tokens, nodes.parent, nodes.tau).item()
    assert got == pytest.approx((l1 + l2 + l3) / 3, rel=1e-5)


def test_ranking_loss_by_hand():
    z_x = torch.tensor([[1.0, 0.0]])
    z_y = torch.tensor([[[2.0, 0.0], [0.5, 0.0], [1.0, 0.0]]])  # rows: +, shares 1, shares 0
    shared = torch.tensor([[2, 1, 0]])
    w = torch.eye(2)
    beta = 0.1
    s = [1 / (1 + math.exp(-v)) for v in (2.0, 0.5, 1.0)]
    expected = (max(0, s[1] - s[0] + beta) + max(0, s[2] - s[0] + 2 * beta)
                + max(0, s[2] - s[1] + beta))
    assert ranking_loss(z_x, z_y, shared, w, beta).item() == pytest.approx(expected, rel=1e-5)
    # an unsampled negative (-1) takes part in no pair
    masked = ranking_loss(z_x, z_y, torch.tensor([[2, 1, -1]]), w, beta).item()
    assert masked == pytest.approx(max(0, s[1] - s[0] + beta), rel=1e-5)


def test_negatives_share_exactly_the_asked_prefix(tree):
    rng = np.random.default_rng(1)
    targets = rng.integers(0, tree.n_items, size=200)
    items, shared = sample_negatives(tree, targets, tree.max_depth, rng)
    paths = tree.node_paths
    for t, row, sh in zip(targets, items, shared, strict=True):
        for item, level in zip(row, sh, strict=True):
            if item < 0:
                continue
            common = 0
            while common < tree.max_depth and paths[item, common] == paths[t, common]:
                common += 1
            assert common == level and item != t


def test_step_equals_last_position_of_teacher_forcing(tree, model):
    history = torch.tensor([[-1, -1, 3, 5], [1, 2, 3, 4]])
    mem = model.memory(*model.encode(history))
    paths = torch.from_numpy(tree.node_paths[[[4, 9], [20, 33]]])  # (B=2, W=2, L)
    prefix = torch.cat([torch.full((2, 2, 1), tree.root), paths[..., :-1]], dim=-1)
    full = model.decode(prefix, *mem)  # (B, W, L, d)
    children = torch.from_numpy(tree.children.astype(np.int64))
    for t in range(1, prefix.shape[-1] + 1):
        last = model.decode(prefix[..., :t], *mem, last_only=True)[:, :, 0]
        assert torch.allclose(last, full[:, :, t - 1], atol=1e-5)
        step = model.step(prefix[..., :t], *mem, children)
        ref = torch.log_softmax(model.child_logits(full[:, :, t - 1], prefix[..., t - 1],
                                                   children), -1)
        assert torch.allclose(step, ref, atol=1e-5)


def test_memory_ignores_left_padding(model):
    a = model.memory(*model.encode(torch.tensor([[7, 8, 9]])))
    b = model.memory(*model.encode(torch.tensor([[-1, -1, 7, 8, 9]])))
    assert torch.allclose(a[0], b[0][:, :, :, 2:], atol=1e-5)
    assert torch.allclose(a[1], b[1][:, :, :, 2:], atol=1e-5)
    assert (b[2][0, :2] < -1e8).all() and (b[2][0, 2:] == 0).all()


def test_padded_child_slots_are_masked(tree, model):
    h = torch.randn(1, SMALL.d_model)
    short = int(np.flatnonzero(tree.n_children[: tree.n_nodes] == 1)[0]) \
        if (tree.n_children == 1).any() else None
    node = torch.tensor([tree.root if short is None else short])
    logits = model.child_logits(h, node, torch.from_numpy(tree.children.astype(np.int64)))
    invalid = torch.from_numpy(tree.children[node.numpy()] < 0)
    assert (logits[invalid] < -1e8).all()


def test_beam_search_equals_exhaustive_oracle(tree, model):
    task = SeaterTask(model, tree, Sequences.from_lists([[0, 1]]), torch.device("cpu"),
                      LossConfig(), beam_size=tree.n_items)
    hist = Sequences.from_lists([[1, 2, 3], [30], [5, 6, 7, 8, 9, 10, 11, 12, 13]])
    got = task.search(hist, 10, hist)
    h = torch.from_numpy(task.history_tokens(hist))
    mem = model.memory(*model.encode(h))
    children = torch.from_numpy(tree.children.astype(np.int64))

    def scorer(prefix):
        with torch.no_grad():
            return model.step(torch.from_numpy(prefix), *mem, children).numpy()

    want = exhaustive_search(tree, scorer, 3, 10, exclude=[list(r) for r in hist])
    assert np.array_equal(got.items, want.items)
    assert np.allclose(got.scores, want.scores, atol=1e-4)
    assert all(not set(r) & set(h_) for r, h_ in zip(got.items, hist, strict=True))


def test_every_prefix_is_an_example(tree, model):
    train = Sequences.from_lists([[4, 5, 6], [7, 8], [9]])
    task = SeaterTask(model, tree, train, torch.device("cpu"), LossConfig())
    pairs = sorted(zip(task.ex_row.tolist(), task.ex_pos.tolist(), task.ex_target.tolist(),
                       strict=True))
    assert pairs == [(0, 1, 5), (0, 2, 6), (1, 1, 8)]


def test_training_step_reduces_loss_and_touches_every_part(tree):
    torch.manual_seed(0)
    model = Seater(tree.n_nodes, tree.max_depth, tree.root, SMALL)
    rng = np.random.default_rng(0)
    train = Sequences.from_lists([rng.integers(0, tree.n_items, 6) for _ in range(40)])
    task = SeaterTask(model, tree, train, torch.device("cpu"), LossConfig())
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    batch = next(task.batches(rng, 64))
    first, parts = task.loss(batch)
    assert set(parts) == {"gen", "align", "rank", "rank_equal", "total"}
    for _ in range(30):
        loss, _ = task.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.7 * first.item()
    assert model.rank_w.grad is not None and model.rank_w.grad.abs().sum() > 0


def test_beam_narrower_than_k_returns_beam_items(tree, model):
    task = SeaterTask(model, tree, Sequences.from_lists([[0, 1]]), torch.device("cpu"),
                      LossConfig(), beam_size=5)
    hist = Sequences.from_lists([[1, 2, 3], [4]])
    ranked = task.recommend(hist, 12, hist)
    assert ranked.shape == (2, 12)
    assert (ranked[:, :5] >= 0).all() and (ranked[:, 5:] == -1).all()
    wide = task.recommend(hist, 12, hist, beam_size=20)
    assert (wide >= 0).all()


def test_ranking_scores_start_in_the_sigmoids_responsive_range(tree):
    # σ(pᵀ W_s q) on mean-pooled states: with W_s = I the dot products of 64-d
    # layer-normed states are tens (30-250 on Beauty), σ' ≈ 0 and the ranking loss sits
    # at its margin sum without a gradient; W_s starts at I/d
    torch.manual_seed(0)
    paper_size = SeaterParams(d_model=64, max_len=8, n_heads=2, enc_heads=1, dropout=0.0)
    model = Seater(tree.n_nodes, tree.max_depth, tree.root, paper_size)
    with torch.no_grad():  # trained layer-norm gains: pooled state norms ~10-17 on Beauty
        for mod in model.modules():
            if isinstance(mod, torch.nn.LayerNorm):
                mod.weight.mul_(2.0)
    rng = np.random.default_rng(0)
    targets = rng.integers(0, tree.n_items, 64)
    neg, _ = sample_negatives(tree, targets, 3, rng)
    paths = torch.from_numpy(tree.node_paths[np.concatenate([targets[:, None],
                                                             np.maximum(neg, 0)], 1)])
    history = torch.from_numpy(tree.item_leaf[rng.integers(0, tree.n_items, (64, 8))]
                               .astype(np.int64))
    children = torch.from_numpy(tree.children.astype(np.int64))
    with torch.no_grad():
        _, z_x, z_y = model(history, paths, children)
        raw = torch.einsum("bd,de,bwe->bw", z_x, model.rank_w, z_y)
    slope = torch.sigmoid(raw) * (1 - torch.sigmoid(raw))
    assert slope.median() > 0.1  # σ' is at most 0.25 (at 0)


def test_cosine_ranking_score_does_not_saturate_as_states_grow():
    torch.manual_seed(0)
    z_x, z_y = torch.randn(3, 8), torch.randn(3, 4, 8)
    shared = torch.tensor([[3, 0, 1, 2]] * 3)
    w = torch.eye(8) / 8

    def grad(scale: float, **kw) -> float:
        x = (z_x * scale).requires_grad_()
        ranking_loss(x, z_y * scale, shared, w, 0.01, **kw).backward()
        return float(x.grad.abs().sum())

    cosine = [float(ranking_loss(z_x * c, z_y * c, shared, w, 0.01, cosine_scale=5))
              for c in (1, 100)]
    assert cosine[0] == pytest.approx(cosine[1], rel=1e-5)  # scale-free
    assert grad(1) > 0 and grad(1000) == 0  # the paper's score saturates: no gradient left
    assert grad(1000, cosine_scale=5) > 0
