"""The reference forms of SEATER's losses, sampler and encoder, against hand computations
and against the modules the authors' code uses (``docs/seater_reference.md``)."""

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from indexer import BuildConfig, build_tree
from tests.helpers import toy_nodes
from training.seater.encoder import PostNormBlock, TransformerEncoder
from training.seater.losses import (
    alignment_loss,
    generation_loss,
    ranking_loss,
    sample_negatives,
)
from training.seater.model import Seater, SeaterParams


def sig(v: float) -> float:
    return 1 / (1 + math.exp(-v))


@pytest.fixture(scope="module")
def tree():
    rng = np.random.default_rng(0)
    t, _ = build_tree(rng.normal(size=(81, 4)).astype(np.float32),
                      BuildConfig(k=3, progress=False))
    assert t.max_depth == 4
    return t


def test_generation_loss_mean_over_tokens_by_hand():
    logits = torch.tensor([[[2.0, 0.0], [0.0, 1.0]], [[1.0, 1.0], [5.0, -5.0]]])
    slots = torch.tensor([[0, 1], [1, -1]])
    ce = [-math.log(math.exp(2) / (math.exp(2) + 1)), -math.log(math.e / (math.e + 1)),
          -math.log(0.5)]
    got = generation_loss(logits, slots, reduction="tokens").item()
    assert got == pytest.approx(sum(ce) / 3, rel=1e-5)  # three real tokens
    assert generation_loss(logits, slots).item() == pytest.approx(sum(ce) / 2, rel=1e-5)


def test_alignment_keeps_the_anchors_children_among_negatives_by_hand():
    nodes = toy_nodes()
    c = nodes.c

    def nce(anchor, pos, others):
        return -c(anchor, pos) + math.log(sum(math.exp(c(anchor, j)) for j in others))

    # anchor 1 now also has its child 3 in the denominator
    want = (nce(1, 0, (0, 2, 3)) + nce(2, 0, (0, 1, 3)) + nce(3, 1, (0, 1, 2))) / 3
    args = (nodes.emb, nodes.tokens, nodes.parent, nodes.tau)
    got = alignment_loss(*args, mask_children=False).item()
    assert got == pytest.approx(want, rel=1e-5)
    assert got != pytest.approx(alignment_loss(*args).item(), rel=1e-3)


def test_reference_ranking_loss_by_hand():
    # rows: positive (shares 3), negatives sharing 0, 1, 1; logits z_x . z_y
    z_x = torch.tensor([[1.0, 0.0]])
    z_y = torch.tensor([[[2.0, 0.0], [0.5, 0.0], [1.0, 0.0], [-1.0, 0.0]]])
    shared = torch.tensor([[3, 0, 1, 1]])
    beta = 0.1
    # the reference's list: negatives shallow to deep, then the positive
    s = [sig(0.5), sig(1.0), sig(-1.0), sig(2.0)]
    sh = [0, 1, 1, 3]

    def h(lo, hi, i):
        return max(0.0, s[lo] - s[hi] + beta * i)

    off1 = (h(0, 1, 1) + h(2, 3, 1)) / 2  # (1, 2) share equally: no pair
    off2 = (h(0, 2, 2) + h(1, 3, 2)) / 2
    off3 = h(0, 3, 3)
    assert all(sh[j + 1] > sh[j] for j in (0, 2))
    got = ranking_loss(z_x, z_y, shared, torch.eye(2), beta, form="reference").item()
    assert got == pytest.approx(off1 + off2 + off3, rel=1e-5)


def test_reference_ranking_loss_means_over_the_batch_and_skips_unsampled_slots():
    torch.manual_seed(0)
    z_x, z_y = torch.randn(2, 3), torch.randn(2, 4, 3)
    w = torch.eye(3)
    full = torch.tensor([[2, 0, 1, -1], [2, 0, 1, -1]])
    # an unsampled slot in front of the list, or at its end, is the same list of three
    moved = torch.tensor([[2, -1, 0, 1], [2, -1, 0, 1]])
    z_moved = z_y[:, [0, 3, 1, 2]]
    a = ranking_loss(z_x, z_y, full, w, 0.1, form="reference")
    b = ranking_loss(z_x, z_moved, moved, w, 0.1, form="reference")
    assert a.item() == pytest.approx(b.item(), rel=1e-6)
    # per offset the mean runs over the valid pairs of the whole batch
    s = torch.sigmoid(torch.einsum("bd,bwd->bw", z_x, z_y))
    lst = torch.stack([s[:, 1], s[:, 2], s[:, 0]], 1)  # shares 0, 1, 2
    want = (torch.relu(lst[:, :-1] - lst[:, 1:] + 0.1).mean()
            + torch.relu(lst[:, 0] - lst[:, 2] + 0.2).mean())
    assert a.item() == pytest.approx(want.item(), rel=1e-5)
    # all scores equal: the margin sum, 0.1 + 0.2
    eq = ranking_loss(torch.zeros(2, 3), z_y, full, w, 0.1, form="reference")
    assert eq.item() == pytest.approx(0.3, rel=1e-6)


def test_subtree_negatives_come_from_each_eligible_ancestor(tree):
    # depth 4: ancestors other than the leaf's parent are the root, p0 and p1, so with
    # q = 4 the first slot stays empty (the reference needs depth >= q + 1)
    rng = np.random.default_rng(0)
    targets = rng.integers(0, tree.n_items, 300)
    items, shared = sample_negatives(tree, targets, 4, rng, mode="subtrees")
    assert (items[:, 0] == -1).all() and (shared[:, 0] == -1).all()
    paths = tree.node_paths
    for t, row, sh in zip(targets, items, shared, strict=True):
        ancestors = [tree.root, paths[t, 0], paths[t, 1]]  # path[:-2][-q:], shallow to deep
        for anc, item, s in zip(ancestors, row[1:], sh[1:], strict=True):
            assert item != t
            assert tree.leaf_lo[anc] <= tree.leaf_pos[item] < tree.leaf_hi[anc]
            common = int((paths[item] == paths[t]).sum())
            assert s == common >= tree.depth[anc]


def test_subtree_negatives_are_uniform_over_the_subtree_without_the_target(tree):
    rng = np.random.default_rng(1)
    target = 5
    items, _ = sample_negatives(tree, np.full(16000, target), 4, rng, mode="subtrees")
    counts = np.bincount(items[:, 1], minlength=tree.n_items)  # the root slot
    assert counts[target] == 0
    others = np.delete(counts, target)
    expected = 16000 / (tree.n_items - 1)  # 200 per item
    assert others.min() > 0.7 * expected and others.max() < 1.3 * expected


def test_no_sibling_levels_never_repeat_the_positives_decoder_input(tree):
    rng = np.random.default_rng(2)
    targets = rng.integers(0, tree.n_items, 300)
    with_sib, sh_sib = sample_negatives(tree, targets, 4, rng, mode="levels")
    items, shared = sample_negatives(tree, targets, 4, rng, mode="levels_no_sibling")
    depth = tree.max_depth
    # the decoder reads root + the first L-1 path nodes: a sibling leaf reads the same
    same_input = (tree.node_paths[with_sib][..., :-1]
                  == tree.node_paths[targets][:, None, :-1]).all(-1)
    assert (same_input == (sh_sib == depth - 1)).all() and same_input.any()
    ok = items >= 0
    assert not ((tree.node_paths[items][..., :-1]
                 == tree.node_paths[targets][:, None, :-1]).all(-1) & ok).any()
    assert (shared[:, -1] == -1).all() and (shared[:, :-1] == np.arange(depth - 1)).all()


def test_post_norm_block_is_torchs_transformer_encoder_layer():
    torch.manual_seed(0)
    d, heads = 16, 2
    ours = PostNormBlock(d, heads, ff_mult=4, dropout=0.0).eval()
    ref = torch.nn.TransformerEncoderLayer(d, heads, dim_feedforward=4 * d, dropout=0.0,
                                           activation="gelu", batch_first=True).eval()
    with torch.no_grad():
        ref.self_attn.in_proj_weight.copy_(ours.attn.qkv.weight)
        ref.self_attn.in_proj_bias.copy_(ours.attn.qkv.bias)
        ref.self_attn.out_proj.weight.copy_(ours.attn.out.weight)
        ref.self_attn.out_proj.bias.copy_(ours.attn.out.bias)
        for mine, theirs in [(ours.fc1, ref.linear1), (ours.fc2, ref.linear2),
                             (ours.ln_attn, ref.norm1), (ours.ln_ff, ref.norm2)]:
            theirs.weight.copy_(mine.weight)
            theirs.bias.copy_(mine.bias)
    x = torch.randn(3, 5, d)
    pad = torch.tensor([[True, True, False, False, False]] + [[False] * 5] * 2)
    allowed = (~pad)[:, None, None, :] | torch.eye(5, dtype=torch.bool)
    with torch.no_grad():
        got = ours(x, allowed)
        want = ref(x, src_key_padding_mask=pad)
    real = ~pad
    assert torch.allclose(got[real], want[real], atol=1e-5)


def test_reference_encoder_is_bidirectional_and_ignores_left_padding():
    torch.manual_seed(0)
    p = SeaterParams(d_model=16, max_len=8, enc_heads=2, enc_ff_mult=4, dropout=0.0,
                     encoder_causal=False, encoder_block="transformer", scale_input=False,
                     emb_init_std=1.0)
    model = Seater(40, 3, 30, p).eval()
    assert isinstance(model.encoder, TransformerEncoder)
    with torch.no_grad():
        a, _ = model.encode(torch.tensor([[7, 8, 9]]))
        b, _ = model.encode(torch.tensor([[-1, -1, 7, 8, 9]]))
        c, _ = model.encode(torch.tensor([[7, 8, 10]]))
    assert torch.allclose(a, b[:, 2:], atol=1e-5)
    assert not torch.allclose(a[:, 0], c[:, 0], atol=1e-3)  # the first item sees the last
    assert model.node_emb.weight.std().item() == pytest.approx(1.0, rel=0.15)


def test_shared_row_dropout_gives_identical_rows_identical_states(tree):
    torch.manual_seed(0)
    base = SeaterParams(d_model=16, max_len=8, dropout=0.3)
    history = torch.from_numpy(tree.item_leaf[[[1, 2, 3], [4, 5, 6]]].astype(np.int64))
    paths = torch.from_numpy(tree.node_paths[[[7] * 4, [9] * 4]])  # 4 copies of one path
    children = torch.from_numpy(tree.children.astype(np.int64))
    spread = {}
    for shared in (False, True):
        torch.manual_seed(1)
        model = Seater(tree.n_nodes, tree.max_depth, tree.root,
                       replace(base, dec_dropout_shared_rows=shared)).train()
        with torch.no_grad():
            _, _, z_y = model(history, paths, children)  # (B, W, d)
        spread[shared] = float((z_y - z_y[:, :1]).abs().max())
    assert spread[True] == 0.0 and spread[False] > 0.01


def test_the_reference_architecture_exports_to_onnx_with_parity(tree, tmp_path):
    from training.seater.export import check_parity, export_graphs
    from training.seater.presets import REFERENCE

    torch.manual_seed(0)
    p = replace(SeaterParams(**REFERENCE["model"]), d_model=16, max_len=6)
    model = Seater(tree.n_nodes, tree.max_depth, tree.root, p).eval()
    export_graphs(model, tree, tmp_path)
    worst = check_parity(model, tree, tmp_path)  # raises beyond 1e-4
    assert set(worst) == {"memory_k", "memory_v", "memory_bias", "child_logp"}
