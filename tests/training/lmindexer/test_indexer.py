"""Semantic indexer (LMIndexer): losses by hand, straight-through gradients, the
progressive schedule, capacity-aware assignment and the codes it produces."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from indexer import from_codes
from tests.training.lmindexer.helpers import FAST, TINY, tiny_corpus
from training.lmindexer.assign import (
    auto_levels,
    capacity_assign,
    group_caps,
    group_ids,
    hard_capacity,
)
from training.lmindexer.config import AssignParams
from training.lmindexer.losses import (
    commitment_loss,
    prefix_contrastive_loss,
    reconstruction_loss,
)
from training.lmindexer.model import SemanticIndexer
from training.lmindexer.stats import collisions, diff_ratio, macro_f1, perplexity
from training.lmindexer.text import Vocabulary, tokenize
from training.lmindexer.train import (
    all_h,
    assign_level,
    batches,
    hint_split,
    kmeans_init,
    prefix_argmax,
    run_phase,
    train_indexer,
)


# ----------------------------------------------------------------------------- losses
def test_reconstruction_loss_by_hand():
    logits = torch.zeros(2, 4)
    target = torch.tensor([[1.0, 1.0, 0, 0], [0, 0, 0, 0]])  # 2nd item: no target, skipped
    assert reconstruction_loss(logits, target).item() == pytest.approx(math.log(4))
    logits = torch.tensor([[math.log(3), 0.0, 0.0, 0.0]])
    target = torch.tensor([[1.0, 0, 0, 0]])
    assert reconstruction_loss(logits, target).item() == pytest.approx(-math.log(3 / 6))


def test_prefix_contrastive_loss_by_hand():
    s = 1 / math.sqrt(2)
    h = torch.tensor([[1.0, 0.0], [s, s], [0.0, 1.0]])
    prefix = torch.tensor([0, 0, 1])  # item 2 has no partner: it contributes nothing
    tau = 0.5
    cos01 = s
    one = -math.log(math.exp(1 / tau) / (math.exp(1 / tau) + math.exp(cos01 / tau)))
    assert prefix_contrastive_loss(h, prefix, tau).item() == pytest.approx(one, rel=1e-6)
    assert prefix_contrastive_loss(h, torch.tensor([0, 1, 2]), tau).item() == 0.0
    # apart is better than together
    apart = prefix_contrastive_loss(torch.tensor([[1.0, 0.0], [-1.0, 0.0]]),
                                    torch.tensor([0, 0]), tau)
    together = prefix_contrastive_loss(torch.tensor([[1.0, 0.0], [1.0, 0.0]]),
                                       torch.tensor([0, 0]), tau)
    assert apart.item() < together.item()
    assert together.item() == pytest.approx(math.log(2))


def test_commitment_loss_value_and_gradients_by_hand():
    h = torch.tensor([[1.0, 0.0]], requires_grad=True)
    e = torch.tensor([[0.0, 1.0]], requires_grad=True)
    beta = 0.25
    loss = commitment_loss(h, e, beta)
    assert loss.item() == pytest.approx(2.0 + beta * 2.0)
    loss.backward()
    # d/dh: only the commitment term (beta * 2 (h - e)); d/de: only the codebook term
    assert torch.allclose(h.grad, beta * 2 * torch.tensor([[1.0, -1.0]]))
    assert torch.allclose(e.grad, 2 * torch.tensor([[-1.0, 1.0]]))


# ----------------------------------------------------------------------------- model
def test_straight_through_forwards_the_code_and_backpropagates_to_the_encoder():
    torch.manual_seed(0)
    model = SemanticIndexer(TINY, n_vocab=12)
    x = torch.randn(5, TINY.d_text)
    h = model.encode(x, torch.zeros(5, 0, dtype=torch.long))
    qz = model.quantize(h, 0)
    assert torch.allclose(qz.q, model.codebook(0)[qz.codes], atol=1e-6)  # forward = hard code
    assert torch.equal(qz.codes, qz.scores.argmax(-1))
    logits = model.reconstruct(torch.zeros(5, 0, dtype=torch.long), qz.q, torch.zeros(5, 12))
    (logits * torch.randn_like(logits)).sum().backward()
    head_grad = sum(p.grad.abs().sum() for p in model.heads[0].parameters())
    assert head_grad > 0  # would be 0 with a plain argmax lookup
    assert model.codebooks[0].grad.abs().sum() > 0


def test_later_positions_condition_on_earlier_codes():
    torch.manual_seed(0)
    model = SemanticIndexer(TINY, n_vocab=12).eval()
    x = torch.randn(1, TINY.d_text).repeat(2, 1)
    h = model.encode(x, torch.tensor([[0], [1]]))
    assert not torch.allclose(h[0], h[1])
    codes = model.greedy_codes(torch.randn(6, TINY.d_text))
    assert codes.shape == (6, 2) and codes.dtype == torch.long


# ----------------------------------------------------------------------------- schedule
def test_hint_split_partitions_each_bag():
    bags = torch.tensor([[0, 1, 2, 3], [4, 5, -1, -1], [6, -1, -1, -1]])
    hints, target = hint_split(bags, 0.5, 8, torch.Generator().manual_seed(0))
    assert torch.equal(hints + target, torch.zeros(3, 8).scatter_(
        1, bags.clamp(min=0), (bags >= 0).float()))
    assert hints.sum(1).tolist() == [2, 1, 0] and target.sum(1).tolist() == [2, 1, 1]


def test_batches_cover_every_item_once_and_keep_prefix_runs():
    groups = np.repeat(np.arange(5), 20)
    rng = np.random.default_rng(0)
    out = batches(100, groups, 32, 8, rng)
    flat = np.concatenate(out)
    assert sorted(flat.tolist()) == list(range(100))
    same = sum(int((groups[b][:, None] == groups[b][None]).sum()) - len(b) for b in out)
    assert same > 100  # far more same-prefix pairs than random batches of 5 groups give


def test_progressive_schedule_freezes_earlier_codes():
    corpus = tiny_corpus()
    torch.manual_seed(0)
    rng, gen = np.random.default_rng(0), torch.Generator().manual_seed(0)
    model = SemanticIndexer(TINY, corpus.n_vocab)
    codes = np.zeros((len(corpus), 2), np.int64)
    run_phase(model, corpus, codes, 0, "recon", 1, FAST, rng, gen, False)
    run_phase(model, corpus, codes, 0, "warmup", 1, FAST, rng, gen, False)
    kmeans_init(model, all_h(model, corpus.x, codes[:, :0]), 0, rng)
    run_phase(model, corpus, codes, 0, "full", 2, FAST, rng, gen, False)
    codes[:, 0], _ = assign_level(model, corpus.x, codes, 0, AssignParams(max_collision=3))
    model.freeze_level(0)
    head0 = {k: v.clone() for k, v in model.heads[0].state_dict().items()}
    book0 = model.codebooks[0].detach().clone()
    level0 = codes[:, 0].copy()

    run_phase(model, corpus, codes, 1, "warmup", 2, FAST, rng, gen, False)
    kmeans_init(model, all_h(model, corpus.x, codes[:, :1]), 1, rng)
    run_phase(model, corpus, codes, 1, "full", 2, FAST, rng, gen, False)

    assert all(torch.equal(head0[k], v) for k, v in model.heads[0].state_dict().items())
    assert torch.equal(book0, model.codebooks[0].detach())
    assert np.array_equal(codes[:, 0], level0)
    new0, _ = assign_level(model, corpus.x, codes, 0, AssignParams(max_collision=3))
    assert np.array_equal(new0, level0)  # re-coding gives the stored level-1 codes


def test_train_indexer_gives_fixed_length_codes_within_the_collision_cap():
    corpus = tiny_corpus()
    out = train_indexer(corpus, TINY, FAST, AssignParams(max_collision=3, slack=math.inf))
    assert out.codes.shape == (40, 2) and out.codes.dtype == np.int64
    assert out.codes.min() >= 0 and out.codes.max() < TINY.k
    assert collisions(out.codes)["max_group"] <= 3
    assert len(out.levels) == 2 and {"recon_macro_f1", "reassigned"} <= out.levels[0].keys()
    phases = [(r["phase"], r["level"]) for r in out.history]
    assert phases[0] == ("recon", 0) and phases[-1] == ("full", 2)
    assert all(not p.requires_grad for p in out.model.heads.parameters())
    # level 1 groups the four topics: items of one topic mostly share their first code
    topic = np.arange(40) % 4
    purity = np.mean([np.bincount(out.codes[topic == c, 0]).max() / 10 for c in range(4)])
    assert purity >= 0.7
    tree, report = from_codes(out.codes)
    tree.validate("balanced")
    assert tree.max_depth == 2 + report.added_level


def test_train_indexer_refuses_codes_that_cannot_fit():
    with pytest.raises(ValueError, match="do not fit"):
        train_indexer(tiny_corpus(), replace(TINY, levels=1), FAST, AssignParams())


# ----------------------------------------------------------------------------- assignment
def test_capacity_assign_keeps_argmax_when_codes_have_room():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(30, 4))
    codes = capacity_assign(scores, np.zeros(30, np.int64), np.array([30]))
    assert np.array_equal(codes, scores.argmax(1))


def test_capacity_assign_respects_caps_and_moves_the_weakest():
    # everyone prefers code 0; it keeps its best asker, the others take their next choice
    scores = np.array([[0.9, 0.1, 0.0], [0.8, 0.7, 0.0], [0.7, 0.0, 0.6]])
    codes = capacity_assign(scores, np.zeros(3, np.int64), np.array([1]))
    assert codes.tolist() == [0, 1, 2]
    codes = capacity_assign(scores, np.zeros(3, np.int64), np.array([2]))
    assert codes.tolist() == [0, 0, 2]  # the weakest of the three askers moves


def test_capacity_assign_is_per_group_and_collision_free_at_cap_one():
    rng = np.random.default_rng(1)
    groups = np.repeat(np.arange(6), 4)
    scores = rng.normal(size=(24, 4)) + 3 * (np.arange(4) == 0)  # everyone wants code 0
    codes = capacity_assign(scores, groups, np.ones(6, np.int64))
    cells = groups * 4 + codes
    assert len(np.unique(cells)) == 24
    with pytest.raises(ValueError, match="infeasible"):
        capacity_assign(scores, np.zeros(24, np.int64), np.array([5]))


def test_group_caps_levels_and_hard_capacity():
    assert auto_levels(12101, 16, 1) == 4 and auto_levels(256, 16, 1) == 2
    assert auto_levels(257, 16, 1) == 3 and auto_levels(4096, 16, 16) == 2
    assert hard_capacity(16, 4, 0, 1) == 4096 and hard_capacity(16, 4, 3, 2) == 2
    caps = group_caps(np.array([80, 10, 64]), k=4, hard_cap=20, slack=1.5)
    assert caps.tolist() == [20, 4, 20]  # min(hard, ceil(1.5 * size / 4)), >= ceil(size / 4)
    assert group_caps(np.array([100]), 4, 30, math.inf).tolist() == [30]
    assert group_caps(np.array([100]), 4, 30, 1.0).tolist() == [25]
    with pytest.raises(ValueError, match="cannot fit"):
        group_caps(np.array([100]), 4, 20, 2.0)


def test_group_ids_and_code_stats():
    codes = np.array([[0, 1], [0, 1], [0, 2], [1, 0]])
    assert group_ids(codes[:, :0]).tolist() == [0, 0, 0, 0]
    assert len(set(group_ids(codes).tolist())) == 3
    assert collisions(codes) == {"collision_rate": 0.5, "max_group": 2, "unique_codes": 3}
    assert perplexity(np.array([5, 5, 5, 5])) == pytest.approx(4.0)
    assert perplexity(np.array([9, 0, 0])) == pytest.approx(1.0)
    # pairs sharing c_<2 = (0,1),(0,2),(1,2) among items 0..2; differing at 2: 2 of 3
    assert diff_ratio(codes, 1) == pytest.approx(2 / 3)


def test_macro_f1_by_hand():
    logits = torch.tensor([[3.0, 2.0, 0.0], [0.0, 1.0, 2.0]])
    target = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    macro, micro = macro_f1(logits, target)
    # item 0 predicts {0}: right; item 1 predicts {2, 1}: right -> perfect
    assert (macro, micro) == (pytest.approx(1.0), pytest.approx(1.0))
    macro, micro = macro_f1(torch.tensor([[0.0, 3.0, 0.0]]), torch.tensor([[1.0, 0.0, 0.0]]))
    assert (macro, micro) == (0.0, 0.0)


def test_vocabulary_keeps_frequent_informative_words():
    texts = ["OPI Nail Polish, Red 0.5 oz", "OPI nail polish blue", "Shampoo for dry hair",
             "Hair shampoo 2-pack", "beauty"]
    assert tokenize("OPI Nail Lacquer, 0.5-Fluid Ounce") == ["opi", "nail", "lacquer", "fluid",
                                                             "ounce"]
    vocab = Vocabulary.build(texts, size=10, min_df=2, max_df=0.5)
    assert set(vocab.words) == {"opi", "nail", "polish", "shampoo", "hair"}
    bags = vocab.bags(texts)
    assert bags.shape[0] == 5 and (bags[4] == -1).all()
    with pytest.raises(ValueError, match="min_df"):
        Vocabulary.build(["a b", "c d"], size=5, min_df=2, max_df=0.5)


def test_prefix_argmax_matches_the_training_record():
    corpus = tiny_corpus()
    out = train_indexer(corpus, TINY, FAST, AssignParams(max_collision=3))
    np.testing.assert_array_equal(prefix_argmax(out.model, corpus.x, out.codes), out.argmax)
